"""What happens when things go wrong (docs/FAILURES.md): kills and resumes, failing writes, divergence and the
network (bad input and untrusted files: test_bad_input.py). Rows covered elsewhere name their test there."""

import json
import os
import re
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
from helpers import TINY, distill_args, intra_op_threads, results_in, run_script, teacher_args


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


def test_the_network_is_never_needed():
    """Sockets are blocked for the whole suite (conftest.py); in1k weights, the one thing that tries to go online,
    are refused offline with what to do (test_bad_input.py)."""
    import socket

    with pytest.raises(OSError, match="blocked"):
        socket.create_connection(("93.184.215.14", 443), timeout=1)  # an IP: no DNS needed


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


# Interrupted runs, resumed by the same command: (script, flags, interruptions, each: how, and the line of output
# it waits for). SIGTERM/SIGINT (Slurm's preemption, Ctrl-C) and a full disk end the command with one line and exit
# 75, SIGKILL at once; whatever the moment, the finished run equals an uninterrupted one bit for bit.
RESUMES = {
    "distill: SIGTERM, SIGKILL before training, SIGINT, SIGKILL mid-training and while resuming": (
        "distill", [], [("SIGTERM", "epoch 1/"), ("SIGKILL", "test top-1"), ("SIGINT", "epoch 2/"),
                        ("SIGKILL", " epoch "), ("SIGKILL", "resuming at epoch")]),
    # Slurm signals the whole process group, DataLoader workers included (started by forkserver, Python 3.14's
    # default, they do not inherit the SIGTERM handler): no RuntimeError from a killed worker or forkserver
    "distill: SIGTERM to the process group with loader workers": (
        "distill", ["--workers", "2", "--augment-on", "workers"], [("SIGTERM group", "epoch 2/")]),
    "distill: a full disk": ("distill", ["--ckpt-every-min", "0"], [("full disk", None)]),
    "train_teacher: a full disk": ("train_teacher", ["--ckpt-every-min", "0"], [("full disk", None)]),
    "train_teacher: SIGTERM": ("train_teacher", [], [("SIGTERM", "epoch 1/")]),
}  # fmt: skip
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
FORKSERVER = """
import multiprocessing, sys
multiprocessing.set_start_method("forkserver")
sys.exit(__import__(sys.argv[1]).main(sys.argv[2:]))
"""


def resume_args(script, teacher, out, flags):
    if script == "distill":
        return distill_args(teacher, out, "--T", "3", "--epochs", "6", "--keep-ckpt", "--synth",
                            "target_train_per_class=40", *flags)  # fmt: skip
    return teacher_args(out / "t.pt", "--epochs", "3", *flags)


def outcome(script, out):
    """A finished run's curve and final metrics (speed aside) and its final weights."""
    folder = out / "t.run" if script == "train_teacher" else next(out.iterdir())
    result = json.loads((folder / "result.json").read_text())
    weights = torch.load(out / "t.pt", weights_only=True)["state_dict"] if script == "train_teacher" else (
        torch.load(folder / "ckpt.pt", weights_only=True)["model"])  # fmt: skip
    no_speed = lambda row: {k: v for k, v in row.items() if k != "img_per_s"}
    return [no_speed(row) for row in result["curve"]], no_speed(result["final"]), weights


@pytest.fixture(scope="module")
def uninterrupted(teacher, tmp_path_factory):
    """outcome(script, flags) of an uninterrupted run, each run once."""
    done = {}

    def get(script, flags):
        if (script, *flags) not in done:
            out = tmp_path_factory.mktemp("uninterrupted")
            with intra_op_threads(1):  # as the interrupted subprocesses run
                assert {"distill": distill.main, "train_teacher": train_teacher.main}[script](
                    resume_args(script, teacher, out, flags)) == 0  # fmt: skip
            done[(script, *flags)] = outcome(script, out)
        return done[(script, *flags)]

    return get


def interrupt(script, args, out, how, moment):
    """Run the command and interrupt it (how) once it writes the line `moment`; check what it said."""
    if how == "full disk":
        r = run_script("-c", FULL_DISK, script, *args)
        code, err = r.returncode, r.stderr
    else:
        group = how.endswith("group")
        command = ("-c", FORKSERVER, script) if group else (f"{script}.py",)
        p = run_script(*command, *args, background=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, start_new_session=group)  # fmt: skip
        assert next((line for line in p.stderr if moment in line), None), f"the run ended before '{moment}'"
        sig = signal.Signals[how.split()[0]]
        os.killpg(p.pid, sig) if group else p.send_signal(sig)
        err = p.communicate(timeout=120)[1]
        code = p.returncode
        if sig == signal.SIGKILL:
            assert code == -signal.SIGKILL
            return
    last = err.strip().splitlines()[-1]
    assert code == cli.EXIT_PREEMPTED and "Traceback" not in err and "RuntimeError" not in err, err
    if how == "full disk":
        assert "No space left on device" in last and "resume" in last, err
    else:
        said = (
            rf"{how.split()[0]}: checkpoints saved at (epoch \d+ step \d+|the end of epoch \d+); run the same command"
        )
        assert re.search(said + " again to resume$", last) and list(out.rglob("ckpt.pt")), err
    assert not list(out.rglob("result.json")), "an interrupted run wrote a result"


@pytest.mark.slow
@pytest.mark.parametrize("case", RESUMES)
def test_an_interrupted_run_resumed_by_the_same_command_equals_an_uninterrupted_one(uninterrupted, teacher, tmp_path,
                                                                                   capsys, case):  # fmt: skip
    script, flags, interruptions = RESUMES[case]
    args = resume_args(script, teacher, tmp_path, flags)
    for how, moment in interruptions:
        interrupt(script, args, tmp_path, how, moment)
    capsys.readouterr()
    with intra_op_threads(1):
        assert {"distill": distill.main, "train_teacher": train_teacher.main}[script](args) == 0
    assert ("resuming at epoch" in capsys.readouterr().err) == (how != "full disk")  # no checkpoint was written
    curve, final, weights = outcome(script, tmp_path)
    expected_curve, expected_final, expected_weights = uninterrupted(script, flags)
    assert curve == expected_curve and final == expected_final
    assert weights.keys() == expected_weights.keys()
    assert all(torch.equal(weights[k], expected_weights[k]) for k in weights), "the final weights differ"
