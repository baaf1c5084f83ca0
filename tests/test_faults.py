"""What happens when things go wrong (docs/FAILURES.md): bad input, untrusted files, kills, failing
writes, divergence and the network. Rows covered elsewhere name their test there."""

import json
import os
import shutil
import signal
import subprocess

import pytest
import torch

import cli
import data
import distill
import engine
import models
import runs
import train_teacher
from helpers import (
    FAST,
    TINY,
    distill_args,
    main_error,
    results_in,
    run_script,
    teacher_args,
    without_synth,
)


class Exploit:
    """Pickles to a call of os.system: loading it without weights_only=True would run the command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoints_with_pickled_code_are_refused_and_never_run(teacher, tmp_path, capsys):
    marker = tmp_path / "EXECUTED"
    evil = tmp_path / "evil.pt"
    torch.save({"format": models.CHECKPOINT_FORMAT, "arch": "test_resnet", "payload": Exploit(marker)}, evil)
    err = main_error(distill.main, distill_args(evil, tmp_path / "a", "--T", "1"), capsys)
    assert "weights_only" in err and str(evil) in err
    err = main_error(
        distill.main, distill_args(teacher, tmp_path / "b", "--T", "1", "--student-init", str(evil)), capsys
    )
    assert "weights_only" in err
    err = main_error(
        train_teacher.main,
        [
            "--dataset",
            "synth-fine",
            *TINY,
            "--arch",
            "test_resnet",
            "--init",
            str(evil),
            "--out",
            str(tmp_path / "t.pt"),
            *FAST,
        ],
        capsys,
    )
    assert "weights_only" in err
    # a run folder's ckpt.pt replaced by the exploit: the resume is refused, nothing runs
    args = distill_args(teacher, tmp_path / "c", "--T", "1", "--epochs", "1")
    assert distill.main(args) == 0
    (run,) = (tmp_path / "c").iterdir()
    (run / "result.json").unlink()
    shutil.copy(evil, run / "ckpt.pt")
    err = main_error(distill.main, args, capsys)
    assert "ckpt.pt cannot be loaded safely" in err and "delete it" in err
    assert not marker.exists()


def test_missing_dataset_and_unwritable_out(teacher, tmp_path, capsys):
    err = main_error(
        distill.main,
        without_synth(
            distill_args(
                teacher, tmp_path / "r", "--T", "1", "--dataset", "cifar100", "--data-root", str(tmp_path / "nowhere")
            )
        ),
        capsys,
    )
    assert "cifar100" in err and "nowhere" in err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    err = main_error(distill.main, distill_args(teacher, blocker / "runs", "--T", "1"), capsys)
    assert err.startswith("distill.py: error: --out:") and "not writable" in err


def test_a_write_that_fails_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    run = runs.RunDir(tmp_path / "run", {"x": 1})
    run.start({})
    run.save_state({"position": 1, "weights": torch.ones(3)})

    def full_disk(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        run.save_state({"position": 2, "weights": torch.zeros(3)})
    monkeypatch.undo()
    state = run.load_state()
    assert state["position"] == 1 and torch.equal(state["weights"], torch.ones(3))
    assert [p.name for p in run.path.iterdir() if p.name.endswith(".tmp")] == []  # no temp files left behind
    with pytest.raises(OSError, match="I/O error"):
        monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(5, "I/O error")))
        runs.write_json({"status": "ok"}, run.file("result.json"))
    assert not run.file("result.json").exists()


FULL_DISK = """
import sys
from pathlib import Path
import runs
real_write = runs.atomic_write
def full_disk(path, data):  # every checkpoint of a run folder fails, as on a full disk
    if Path(path).name == "ckpt.pt":
        raise OSError(28, "No space left on device")
    return real_write(path, data)
runs.atomic_write = full_disk
script = __import__(sys.argv[1])
sys.exit(script.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("script", ["distill", "train_teacher"])
def test_a_full_disk_during_training_is_one_line_exit_75_and_the_same_command_resumes(teacher, tmp_path, script):
    out = tmp_path / "out"
    every_epoch = ["--ckpt-every-min", "0"]  # the default timer would write no checkpoint in so short a run
    args = (
        distill_args(teacher, out, *every_epoch)
        if script == "distill"
        else teacher_args(out / "t.pt", "--epochs", "2", *every_epoch)
    )
    r = run_script("-c", FULL_DISK, script, *args)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == cli.EXIT_PREEMPTED and "No space left on device" in last and "resume" in last, r.stderr
    assert "Traceback" not in r.stderr
    main = {"distill": distill.main, "train_teacher": train_teacher.main}[script]
    assert main(args) == 0  # the same command with the disk fixed (in this process: 3 s less)
    assert results_in(out) if script == "distill" else (out / "t.pt").is_file()


class Diverging:
    """An objective that turns NaN in epoch 2 (1-indexed), after a good first epoch."""

    def __call__(self, logits, batch, teacher_logits, epoch, step):
        loss = engine.label_smoothed_cross_entropy(logits, batch["y_soft"])
        return loss * float("nan") if epoch == 2 else loss


def test_divergence_stops_the_run_keeps_the_last_good_checkpoint_and_says_why(tmp_path):
    split = data.load_split(
        "synth-fine", "train", "unused", synth=cli.parse_key_values(TINY[1 : TINY.index("--data-root")], "--synth")
    )
    aug = data.aug_config_for("synth-fine")
    model = models.create_model("test_resnet", len(split.classes))[0]
    run = runs.RunDir(tmp_path / "run", {"what": "diverges"})
    run.start({})
    m = engine.Member(name="nan", run=run, model=model, objective=Diverging(), norm=models.normalization(model))
    recipe = engine.Recipe(epochs=3, opt="adamw", lr=1e-3, wd=0.0)
    results = engine.train(
        [m],
        data.TrainStream(split, aug, batch_size=12, seed=0),
        (data.eval_images(split, aug), split.labels, None),
        recipe,
        log=lambda s: None,
    )
    assert results == []
    r = json.loads(run.file("result.json").read_text())
    assert r["status"] == "failed" and r["final"] is None
    assert r["reason"] == "non-finite training loss in epoch 2; its last checkpoint (ckpt.pt) is kept"
    state = run.load_state()  # the checkpoint of epoch 1, still loadable
    assert state["position"] == 3 and len(state["curve"]) == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_diverging_cli_run_exits_3_with_a_failed_result(teacher, tmp_path):
    r = run_script(
        "distill.py", *distill_args(teacher, tmp_path, "--T", "1", "--lr", "1e30", "--clip", "0", "--epochs", "1")
    )
    assert r.returncode == cli.EXIT_FAILED and "FAILED: non-finite training loss" in r.stderr
    (res,) = results_in(tmp_path).values()
    assert res["status"] == "failed"


@pytest.mark.slow
def test_sigterm_and_sigkill_at_reported_moments_resume_bit_identically(teacher, tmp_path):
    """One run stopped four times, each at a moment it reports, and resumed each time: by SIGTERM once epoch 1 is
    reported (checkpoint, one line, exit 75, no result), by SIGKILL once the teacher is measured (the run
    folder claimed, nothing trained), once an epoch is reported, and once a resume is announced; its final metrics
    and weights equal those of an uninterrupted run."""
    args = distill_args(
        teacher, tmp_path / "run", "--T", "3", "--epochs", "6", "--keep-ckpt", "--synth", "target_train_per_class=40"
    )
    ref = run_script("distill.py", *[a if a != str(tmp_path / "run") else str(tmp_path / "ref") for a in args])
    assert ref.returncode == 0
    (expected,) = results_in(tmp_path / "ref").values()

    for sig, moment in [(signal.SIGTERM, "epoch 1/"), (signal.SIGKILL, "test top-1"), (signal.SIGKILL, " epoch ")]:
        p = run_script(
            "distill.py", *args, background=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        next(line for line in p.stderr if moment in line)
        p.send_signal(sig)
        err = p.communicate(timeout=120)[1]
        if sig == signal.SIGTERM:
            assert p.returncode == cli.EXIT_PREEMPTED and "checkpoints saved at" in err.splitlines()[-1], err
            assert next((tmp_path / "run").glob("*/ckpt.pt")).is_file() and not results_in(tmp_path / "run")
        else:
            assert p.returncode == -signal.SIGKILL
    p = run_script("distill.py", *args, background=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    next(line for line in p.stderr if "resuming at epoch" in line)
    p.kill()
    p.communicate()
    final = run_script("distill.py", *args)
    assert final.returncode == 0 and "resuming at epoch" in final.stderr, final.stderr
    (got,) = results_in(tmp_path / "run").values()
    assert got["final"]["top1"] == expected["final"]["top1"]
    assert got["final"]["agreement"] == expected["final"]["agreement"]
    assert [r["epoch"] for r in got["curve"]] == [1, 2, 3, 4, 5, 6]
    a = torch.load(next((tmp_path / "run").glob("*/ckpt.pt")), weights_only=True)["model"]
    b = torch.load(next((tmp_path / "ref").glob("*/ckpt.pt")), weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # the final weights, bit for bit


def test_the_network_is_never_needed(tmp_path, capsys):
    """Sockets are blocked for the whole suite (conftest.py); in1k weights are the one thing that
    tries to go online, and without --pretrained-file the error says what to do."""
    import socket

    with pytest.raises(OSError, match="blocked"):
        socket.create_connection(("93.184.215.14", 443), timeout=1)  # an IP: no DNS needed
    r = run_script("train_teacher.py", *teacher_args(tmp_path / "t.pt", "--init", "in1k"), env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and "--pretrained-file" in r.stderr.strip().splitlines()[-1], r.stderr
    assert not (tmp_path / "t.run").exists()


def test_run_all_slurm_without_sbatch(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname",):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    r = run_script("run_all.sh", "demo", "--slurm", "--out", tmp_path / "o", env={"PATH": str(bin_dir)})
    assert r.returncode == 2 and "--slurm: sbatch not found" in r.stderr


def test_download_is_the_one_flag_that_goes_online_and_it_says_so(teacher, tmp_path, capsys):
    err = main_error(
        distill.main,
        without_synth(
            distill_args(
                teacher,
                tmp_path / "r",
                "--T",
                "1",
                "--dataset",
                "cifar100",
                "--data-root",
                str(tmp_path / "data"),
                "--download",
            )
        ),
        capsys,
    )
    assert "cifar100: download into" in err and "failed" in err


class Killed(Exception):
    """Stands for a SIGKILL: the training loop stops where it is, with nothing saved."""


class TimedStream:
    """A stream that advances a fake clock one minute per step, and dies (Killed) before step `kill_at` (global)."""

    def __init__(self, stream, clock, kill_at=None):
        self.stream, self.clock, self.kill_at = stream, clock, kill_at
        self.steps_per_epoch, self.views, self.split = stream.steps_per_epoch, stream.views, stream.split

    def epoch(self, epoch, start_step=0):
        for step, batch in self.stream.epoch(epoch, start_step):
            if epoch * self.steps_per_epoch + step == self.kill_at:
                raise Killed
            self.clock[0] += 60.0
            yield step, batch


def test_checkpoints_follow_the_timer_and_a_kill_between_them_resumes_bit_identically(tmp_path, monkeypatch):
    """--ckpt-every-min: a checkpoint every N minutes (mid-epoch too), not every epoch; killed between two of them,
    the run resumes from the last one and ends bit-identical to an uninterrupted run."""
    split = data.load_split(
        "synth-fine", "train", "unused", synth=cli.parse_key_values(TINY[1 : TINY.index("--data-root")], "--synth")
    )
    aug = data.aug_config_for("synth-fine")
    clock = [0.0]
    monkeypatch.setattr(engine, "clock", lambda: clock[0])
    saved = []
    real_save = runs.RunDir.save_state
    monkeypatch.setattr(
        runs.RunDir, "save_state", lambda run, state: saved.append(state["position"]) or real_save(run, state)
    )

    def train(folder, kill_at=None):
        torch.manual_seed(0)
        model = models.create_model("test_resnet", len(split.classes))[0]
        run = runs.RunDir(tmp_path / folder, {"what": "timer"})
        run.start({})
        objective = lambda logits, batch, t, e, s: engine.label_smoothed_cross_entropy(logits, batch["y_soft"])
        m = engine.Member(name=folder, run=run, model=model, objective=objective, norm=models.normalization(model))
        recipe = engine.Recipe(epochs=4, opt="adamw", lr=1e-3, wd=0.0, ckpt_every_s=5 * 60, keep_ckpt=True)
        stream = TimedStream(data.TrainStream(split, aug, batch_size=12, seed=0), clock, kill_at)
        engine.train([m], stream, (data.eval_images(split, aug), split.labels, None), recipe, log=lambda s: None)
        return run.load_state()

    ref = train("ref")  # 3 steps per epoch, 12 in all: checkpoints at minutes 5 and 10, and the kept last one
    assert saved == [5, 10, 12]
    saved.clear()
    with pytest.raises(Killed):
        train("run", kill_at=8)  # between the checkpoints of steps 5 and 10
    assert saved == [5] and runs.RunDir(tmp_path / "run", {"what": "timer"}).load_state()["position"] == 5
    got = train("run")  # resumes at step 5
    assert got["curve"] == [{**r, "img_per_s": g["img_per_s"]} for r, g in zip(ref["curve"], got["curve"])]
    assert all(torch.equal(got["model"][k], ref["model"][k]) for k in ref["model"])


def test_sigterm_to_the_process_group_with_loader_workers_exits_75_and_resumes(teacher, tmp_path):
    """Slurm signals the whole process group, DataLoader workers included: the command still checkpoints, says so in
    one line and exits 75 (no RuntimeError from a killed worker), and the same command resumes."""
    args = distill_args(teacher, tmp_path, "--T", "3", "--epochs", "12", "--workers", "2", "--augment-on", "workers")
    # forkserver (Python 3.14's default): a forked worker would inherit the main process's SIGTERM handler
    forkserver = (
        "import multiprocessing as mp, runpy, sys; mp.set_start_method('forkserver'); sys.argv[0] = 'distill.py'; "
    )
    forkserver += "runpy.run_path('distill.py', run_name='__main__')"
    p = run_script("-c", forkserver, *args, background=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   text=True, start_new_session=True)  # fmt: skip
    next(line for line in p.stderr if "epoch 2/" in line)
    os.killpg(p.pid, signal.SIGTERM)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == cli.EXIT_PREEMPTED and "checkpoints saved" in err.strip().splitlines()[-1], err
    assert "Traceback" not in err and "RuntimeError" not in err
    final = run_script("distill.py", *args)
    assert final.returncode == 0 and "resuming at epoch" in final.stderr, final.stderr
