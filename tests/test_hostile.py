"""The scripts against a hostile user (issue 14, "Run folders and tapes that cannot lie"): untrusted run
files, failed runs, tapes, hyperparameters, concurrent commands, signals and odd flags. Each test names
the problem of the issue it checks (P1-P10), or "probe" for a bad input found while probing the scripts.
All of them but one case (distill.py --parallel 0, refused already) failed on the code before the issue
(commit 25b69e5); the probes failed on its first fix too (commit 77c78a9)."""

import json
import shutil
import signal
import subprocess
import time

import pytest
import torch

import cli
import data
import distill
import models
import train_teacher
from analysis import advise
from helpers import TINY, distill_args, main_error, results_in, run_script, teacher_args, without_synth

SYNTH = TINY[1 : TINY.index("--data-root")]  # the KEY=VALUE sizes of TINY, for advise.py


def only_folder(out):
    (folder,) = out.iterdir()
    return folder


def read_result(folder):
    return json.loads((folder / "result.json").read_text())


def epochs_logged(folder):
    return [json.loads(line)["epoch"] for line in (folder / "log.jsonl").read_text().splitlines()]


def same_training(a, b):
    """Two results trained alike: the same losses per epoch and the same final metrics (speed aside)."""
    assert [r["train_loss"] for r in a["curve"]] == [r["train_loss"] for r in b["curve"]]
    assert {**a["final"], "img_per_s": 0} == {**b["final"], "img_per_s": 0}


def start_distill(args):
    """distill.py in a subprocess, stdout and stderr merged into one pipe."""
    return run_script("distill.py", *args, background=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_first_epoch(p):
    """Read p's output until its first epoch is logged (its checkpoint is saved by then)."""
    seen = []
    for line in p.stdout:
        seen.append(line)
        if "epoch 1/" in line:
            return "".join(seen)
    raise AssertionError("the run ended before its first epoch:\n" + "".join(seen))


def error_output(main, args, capsys):
    """stderr of a script's main() that must refuse `args` with exit code 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit, match="^2$"):
        main(args)
    return capsys.readouterr().err


def checkpoint_dict(teacher, **changes):
    ckpt = torch.load(teacher, weights_only=True)
    ckpt.update(changes)
    return ckpt


# ------------------------------------------------------------------------------------------------- P1


BAD_RESULTS = {
    "empty": "",
    "truncated": '{"status": "ok", "run_id": "te',
    "garbage": "\x00\x01 not json",
    "foreign": '{"foo": 1}',
    "a list": "[1, 2]",
}


def test_an_untrusted_result_json_is_set_aside_and_the_run_redone(teacher, tmp_path, capsys):
    """P1: a result.json that is empty, truncated, garbage or names no run is not 'done': it is moved
    aside as result.json.invalid (said in one line) and the run is done again."""
    args = distill_args(teacher, tmp_path, "--T", "2", "--epochs", "1")
    assert distill.main(args) == 0
    run = only_folder(tmp_path)
    good = read_result(run)
    for what, text in BAD_RESULTS.items():
        (run / "result.json").write_text(text)
        capsys.readouterr()
        assert distill.main(args) == 0, what
        err = capsys.readouterr().err
        assert "already done" not in err and "redoing the run (the file is kept as result.json.invalid)" in err, what
        assert (run / "result.json.invalid").read_text() == text
        same_training(read_result(run), good)
        assert epochs_logged(run) == [1]


def test_an_untrusted_teacher_result_is_retrained_and_a_refused_command_changes_nothing(tmp_path, capsys):
    """P1 through train_teacher.py; and (probe) a command with other flags on the same --out, refused, used
    to move the finished run's result.json aside first, so that the original command trained it again."""
    out = tmp_path / "t.pt"
    assert train_teacher.main(teacher_args(out)) == 0
    result = out.with_suffix(".run") / "result.json"
    result.write_text('{"foo": 1}')
    capsys.readouterr()
    assert train_teacher.main(teacher_args(out)) == 0
    assert "redoing the run" in capsys.readouterr().err and json.loads(result.read_text())["status"] == "ok"
    good = result.read_text()
    err = main_error(train_teacher.main, teacher_args(out, "--epochs", "2"), capsys)
    assert "keys that differ: epochs" in err
    assert result.read_text() == good and result.with_suffix(".json.invalid").read_text() == '{"foo": 1}'
    assert train_teacher.main(teacher_args(out)) == 0
    assert "already done" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- P2


def test_a_failed_run_stays_failed_until_retry_failed(teacher, tmp_path, capsys):
    """P2: a diverged run is not 'already done': the same command exits non-zero with the reason until
    --retry-failed starts it again from scratch; its reason claims only a checkpoint that exists."""
    args = distill_args(teacher, tmp_path, "--T", "1", "--lr", "1e30", "--clip", "0", "--epochs", "1")
    assert distill.main(args) == cli.EXIT_FAILED
    run = only_folder(tmp_path)
    failed = (run / "result.json").read_text()
    reason = json.loads(failed)["reason"]
    assert reason == "non-finite training loss in epoch 1; no checkpoint" and not (run / "ckpt.pt").exists()
    capsys.readouterr()
    assert distill.main(args) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert "already done" not in err and reason in err and "--retry-failed" in err and "epoch 1/" not in err
    assert (run / "result.json").read_text() == failed
    assert distill.main([*args, "--retry-failed"]) == cli.EXIT_FAILED  # it diverges again, from scratch
    err = capsys.readouterr().err
    assert "starting" in err and "again from scratch" in err and "FAILED: non-finite training loss" in err


def test_a_failed_teacher_run_stays_failed_until_retry_failed(tmp_path, capsys):
    """P2 through train_teacher.py: no checkpoint is written for a diverged teacher, and re-running says why."""
    out = tmp_path / "t.pt"
    args = teacher_args(out, "--lr", "1e30")
    assert train_teacher.main(args) == cli.EXIT_FAILED and not out.exists()
    capsys.readouterr()
    assert train_teacher.main(args) == cli.EXIT_FAILED
    assert "non-finite training loss in epoch 1; no checkpoint); pass --retry-failed" in capsys.readouterr().err
    assert train_teacher.main([*args, "--retry-failed"]) == cli.EXIT_FAILED
    assert "again from scratch" in capsys.readouterr().err and not out.exists()


def test_a_failed_run_does_not_block_the_rest_of_its_sweep(teacher, tmp_path, capsys):
    """P2 (probe): one failed temperature of a sweep made the whole command refuse, so an interrupted
    sweep could not finish its other runs without retrying the failed one."""
    args = distill_args(teacher, tmp_path, "--T", "2", "4", "--epochs", "1")
    assert distill.main(args) == 0
    t2, t4 = sorted(tmp_path.iterdir())
    failed = dict(read_result(t4), status="failed", reason="non-finite training loss in epoch 1; no checkpoint")
    (t4 / "result.json").write_text(json.dumps(failed))
    (t2 / "result.json").unlink()  # T=2 still has work to do
    capsys.readouterr()
    assert distill.main(args) == cli.EXIT_FAILED
    assert f"run '{t4}' failed (non-finite training loss" in capsys.readouterr().err
    assert read_result(t2)["status"] == "ok" and read_result(t4) == failed


# ------------------------------------------------------------------------------------------------- P3


def test_swapped_or_truncated_tape_files_are_recomputed_not_replayed(teacher, tmp_path, capsys):
    """P3: a tape epoch file that does not hold its own key and epoch (two files swapped), or does not load
    (truncated), is recomputed with one line, and the run ends with the curve of a run without a tape.
    A broken key.json is one error line naming the file."""
    tape = tmp_path / "tape"

    def run(out):
        assert distill.main(distill_args(teacher, tmp_path / out, "--T", "2", "--teacher-tape", str(tape))) == 0
        (result,) = results_in(tmp_path / out).values()
        return result, capsys.readouterr().err

    expected, _ = run("recorded")  # it ran the teacher: what a run without a tape gives
    first, second = tape / "epoch-0001.pt", tape / "epoch-0002.pt"
    first.rename(tmp_path / "swap")
    second.rename(first)
    (tmp_path / "swap").rename(second)
    got, err = run("swapped")
    assert err.count("was not recorded for this key and epoch; recomputing this epoch") == 2
    same_training(got, expected)
    first.write_bytes(first.read_bytes()[:500])
    got, err = run("truncated")
    assert f"teacher tape: {first} cannot be loaded" in err and "3 steps replayed, 3 computed" in err
    same_training(got, expected)
    (tape / "key.json").write_text('{"dataset": ')
    err = main_error(distill.main, distill_args(teacher, tmp_path / "broken", "--teacher-tape", str(tape)), capsys)
    assert str(tape / "key.json") in err and "--teacher-tape" in err
    assert not (tmp_path / "broken").exists()


# ------------------------------------------------------------------------------------------------- P4


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--method", "dkd", "--hp", "warmup=-1"], "--hp: dkd hyperparameter warmup"),
        (["--hp", "T=8"], "--hp T: set it with --T"),
        (["--hp", "ce_weight=0.5"], "--hp ce_weight: set it with --ce-weight"),
        (["--T", "1e-30"], "--T: temperatures must be in [0.5, 100]"),
        (["--T", "101"], "--T: temperatures must be in [0.5, 100]"),
        (["--method", "dkd", "--hp", "beta=abc"], "--hp: dkd hyperparameter beta: expected a finite number"),
        (["--method", "dkd", "--hp", "beta=nan"], "--hp: dkd hyperparameter beta: expected a finite number"),
        (["--method", "dkd", "--hp", "warmup=0"], "--hp: dkd hyperparameter warmup"),
        (["--method", "dkd", "--hp", "warmup=2.5"], "--hp: dkd hyperparameter warmup: expected an integer"),
        (["--method", "ctkd", "--hp", "ramp_epochs=0"], "--hp: ctkd hyperparameter ramp_epochs"),
        (["--method", "eakd", "--hp", "h_ub=0"], "--hp: eakd hyperparameter h_ub"),
        (["--method", "mlkd", "--hp", "temperatures=4,0.1"], "--hp: mlkd hyperparameter temperatures"),
        (["--hp", "t2=1"], "--hp: kd hyperparameter t2: expected true or false"),
        (["--hp", "kd_weight=-1"], "--hp: kd hyperparameter kd_weight"),
    ],
)
def test_bad_hyperparameters_are_one_line_naming_the_flag(teacher, tmp_path, capsys, flags, needle):
    """P4: every hyperparameter has a declared type and range; T and ce_weight have their own flags."""
    out = tmp_path / "runs"
    err = main_error(distill.main, distill_args(teacher, out, *flags), capsys)
    assert err.startswith(f"distill.py: error: {needle}"), err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------- P5


def test_one_process_per_run_folder_and_the_lock_dies_with_its_holder(teacher, tmp_path, capsys):
    """P5: a second identical command on a run being trained exits at once naming the holder, and the first
    ends with a clean log; the lock of a SIGKILLed holder is released, so a third command resumes."""
    args = distill_args(teacher, tmp_path / "a", "--T", "2", "--epochs", "4")
    first = start_distill(args)
    wait_for_first_epoch(first)
    first.send_signal(signal.SIGSTOP)  # it holds the lock, and trains no further while the second one tries
    try:
        t0 = time.time()
        err = main_error(distill.main, args, capsys)
        assert f"is being written by pid {first.pid} on" in err and time.time() - t0 < 10
    finally:
        first.send_signal(signal.SIGCONT)
    output = first.communicate(timeout=120)[0]
    assert first.returncode == 0, output
    assert epochs_logged(only_folder(tmp_path / "a")) == [1, 2, 3, 4]

    args = distill_args(teacher, tmp_path / "b", "--T", "2", "--epochs", "4", "--ckpt-every-min", "0")  # per epoch
    killed = start_distill(args)
    wait_for_first_epoch(killed)
    killed.kill()
    killed.communicate(timeout=60)
    capsys.readouterr()
    assert distill.main(args) == 0
    assert "resuming at epoch" in capsys.readouterr().err
    assert epochs_logged(only_folder(tmp_path / "b")) == [1, 2, 3, 4]


# ------------------------------------------------------------------------------------------------- P6


def test_run_all_options_refuse_a_missing_value_or_another_option(tmp_path):
    """P6: `--out --dry-run` took --dry-run as the results folder; `--out` alone failed on an unbound variable."""
    for args in (["--out", "--dry-run", "--out", str(tmp_path / "o"), "--dry-run"], ["--out"]):
        r = run_script("run_all.sh", "demo-tiny", *args, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.startswith("run_all.sh: error: --out: expected a value"), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------- P7


BAD_FLAGS = [
    (["--workers", "-1"], "--workers"),
    (["--eval-every", "-1"], "--eval-every"),
    (["--image-size", "0"], "--image-size"),
    (["--randaug-n", "1000000"], "--randaug-n"),  # probe: accepted, then every image took a million operations
    (["--synth", "groups=0"], "--synth groups"),
    (["--synth", "foo=1"], "--synth: unknown key 'foo'"),
    (["--synth", "groups=abc"], "--synth groups"),
    (["--synth", "fine_groups=5"], "--synth: sizes out of range"),  # probe: named no flag (fine_groups > groups)
    (["--bs", "1000"], "--bs"),  # probe: the message did not name the flag
    (["--device", "meta"], "--device"),  # probe: a torch device that failed mid-run with a traceback
]


@pytest.mark.parametrize("script", ["distill", "train_teacher"])
@pytest.mark.parametrize("flags, needle", BAD_FLAGS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_flags_are_one_line_naming_the_flag(teacher, tmp_path, capsys, script, flags, needle):
    """P7: these ended in a traceback or exit 1, or named no flag; one line, exit 2, nothing left behind."""
    out = tmp_path / "out"
    if script == "distill":
        err = main_error(distill.main, distill_args(teacher, out, *flags), capsys)
    else:
        err = main_error(train_teacher.main, teacher_args(out / "t.pt", *flags), capsys)
    assert err.split(": error: ", 1)[1].startswith(needle), err
    assert not out.exists()


def test_synth_flags_with_a_real_dataset_are_refused(teacher, tmp_path, capsys):
    """P7: --synth with a real --dataset."""
    args = without_synth(distill_args(teacher, tmp_path / "out")) + ["--dataset", "cifar100", "--synth", "groups=2"]
    assert "--synth: applies to the built-in synth-* datasets only" in main_error(distill.main, args, capsys)
    assert not (tmp_path / "out").exists()


def test_an_empty_checkpoint_in_a_run_folder_is_one_line(teacher, tmp_path, capsys):
    """P7: an empty ckpt.pt (a full disk) in an unfinished run folder."""
    args = distill_args(teacher, tmp_path, "--T", "2", "--epochs", "1")
    assert distill.main(args) == 0
    run = only_folder(tmp_path)
    (run / "result.json").unlink()
    (run / "ckpt.pt").write_bytes(b"")
    err = main_error(distill.main, args, capsys)
    assert str(run) in err and "ckpt.pt cannot be loaded safely" in err


def broken_checkpoint(teacher, what):
    """The teacher's checkpoint with metadata that does not match its weights."""
    if what == "another arch":
        return checkpoint_dict(teacher, arch="resnet10t")
    if what == "no normalization":
        ckpt = checkpoint_dict(teacher)
        del ckpt["normalization"]
        return ckpt
    ckpt = checkpoint_dict(teacher)
    del ckpt["state_dict"]["fc.weight"]  # the head
    return ckpt


@pytest.mark.parametrize("what", ["another arch", "no normalization", "no head tensor"])
def test_checkpoints_whose_metadata_do_not_match_their_weights(teacher, tmp_path, capsys, what):
    """P7: distill.py and advise.py refuse them in one line naming the file."""
    path = tmp_path / "broken.pt"
    torch.save(broken_checkpoint(teacher, what), path)
    out = tmp_path / "new" / "runs"
    err = main_error(distill.main, distill_args(path, out), capsys)
    assert f"checkpoint '{path}'" in err
    assert not (tmp_path / "new").exists()
    assert f"checkpoint '{path}'" in main_error(advise.main, ["--teacher", str(path), "--synth", *SYNTH], capsys)


def make_classes(root, images_per_class):
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(images_per_class):
            (root / name / f"{i}.png").write_bytes(b"")


@pytest.mark.parametrize("case", ["no source", "output not empty", "small classes", "--n-train 0"])
def test_fewshot_refusals_are_one_line_with_exit_2(tmp_path, capsys, case):
    """P7 (fixed in data.py's main): `python data.py fewshot` refusals exited 1 with a bare 'error:' line."""
    src, out = tmp_path / "src", tmp_path / "out"
    make_classes(src, 5)
    args = ["fewshot", str(src), str(out), "--n-train", "3", "--n-test", "2"]
    if case == "no source":
        args[1] = str(tmp_path / "missing")
    elif case == "output not empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "small classes":
        args[-1] = "3"
    else:
        args[4] = "0"
    err = main_error(data.main, args, capsys)
    assert err.startswith("data.py: error: ")
    assert not out.exists() or [p.name for p in out.iterdir()] == ["keep.txt"]


# ------------------------------------------------------------------------------------------------- P8


def test_broken_run_files_and_teacher_paths_are_named(teacher, tmp_path, capsys):
    """P8: a broken config.json printed only the JSON parser's message; --teacher pointing at a folder or
    at /dev/null said 'does not exist'; refusals left an empty --out behind."""
    args = distill_args(teacher, tmp_path / "runs", "--T", "2", "--epochs", "1")
    assert distill.main(args) == 0
    run = only_folder(tmp_path / "runs")
    (run / "result.json").unlink()
    config = run / "config.json"
    for text in ('{"identity": ', '{"identity": 5}'):  # the second (probe) was a TypeError traceback
        config.write_text(text)
        assert str(config) in main_error(distill.main, args, capsys)
    for path, kind in ((tmp_path, "is a folder"), ("/dev/null", "is not a regular file")):
        err = main_error(distill.main, distill_args(path, tmp_path / "new" / "runs"), capsys)
        assert f"checkpoint '{path}' {kind}" in err and "does not exist" not in err
    ckpt = checkpoint_dict(teacher)
    for name in ("fc.weight", "fc.bias"):  # a head of zeros: one class for every image, near chance
        ckpt["state_dict"][name] = torch.zeros_like(ckpt["state_dict"][name])
    torch.save(ckpt, tmp_path / "weak.pt")
    weak = distill_args(tmp_path / "weak.pt", tmp_path / "new" / "runs")
    weak.remove("--allow-weak-teacher")  # refused after the run folder is claimed
    assert "near chance" in main_error(distill.main, weak, capsys)
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------------------- P9


def test_the_teachers_resolution_is_the_default_and_another_one_is_said(tmp_path, capsys):
    """P9: a teacher trained at 24 px is distilled and measured at 24 px unless told otherwise, and an
    explicit other --image-size is said in a note."""
    t24 = tmp_path / "t24.pt"
    assert train_teacher.main(teacher_args(t24, "--image-size", "24")) == 0
    assert models.trained_image_size(models.load_checkpoint(t24)) == 24
    assert distill.main(distill_args(t24, tmp_path / "a", "--T", "2", "--epochs", "1")) == 0
    (result,) = results_in(tmp_path / "a").values()
    assert result["config"]["aug"]["image_size"] == 24
    capsys.readouterr()
    assert distill.main(distill_args(t24, tmp_path / "b", "--T", "2", "--epochs", "1", "--image-size", "32")) == 0
    assert "distill.py: note: --image-size 32: the teacher was trained at 24 px" in capsys.readouterr().err
    assert advise.main(["--teacher", str(t24), "--synth", *SYNTH, "--T", "1"]) == 0
    assert "24 px)" in capsys.readouterr().out.splitlines()[0]


# ------------------------------------------------------------------------------------------------ P10


def test_ctrl_c_checkpoints_and_the_same_command_resumes(teacher, tmp_path, capsys):
    """P10: SIGINT mid-run ended in a KeyboardInterrupt traceback; it is SIGTERM's checkpoint and exit 75."""
    args = distill_args(teacher, tmp_path, "--T", "2", "--epochs", "20")  # room to interrupt on a loaded machine
    p = start_distill(args)
    wait_for_first_epoch(p)
    p.send_signal(signal.SIGINT)
    output = p.communicate(timeout=120)[0]
    assert p.returncode == cli.EXIT_PREEMPTED and "Traceback" not in output, output
    assert "SIGINT: checkpoints saved at" in output.strip().splitlines()[-1]
    capsys.readouterr()
    assert distill.main(args) == 0
    assert "resuming at epoch" in capsys.readouterr().err
    assert epochs_logged(only_folder(tmp_path)) == list(range(1, 21))


def test_ctrl_c_before_training_is_one_line_and_leaves_nothing(teacher, tmp_path, capsys, monkeypatch):
    """probe: Ctrl-C while the teacher was measured (minutes on a real dataset) was a traceback, and left
    the claimed run folder behind."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "predict", interrupted)
    capsys.readouterr()
    try:
        distill.main(distill_args(teacher, tmp_path / "runs"))
    except KeyboardInterrupt:  # caught here: it would stop the whole pytest session
        pytest.fail("the KeyboardInterrupt escaped (a traceback)")
    except SystemExit as e:
        assert e.code == cli.EXIT_PREEMPTED
    else:
        pytest.fail("distill.py did not stop")
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("distill.py: SIGINT before training started")
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------------------------- probes


def test_a_checkpoint_of_another_run_is_refused_not_resumed(teacher, tmp_path, capsys):
    """probe: a ckpt.pt copied from another run folder was resumed silently (a T=4 run continued T=2's
    weights), or, from another student, ended in a state_dict traceback."""
    for T, student in (("2", "test_resnet"), ("4", "test_resnet"), ("4", "resnet10t")):
        assert (
            distill.main(
                distill_args(
                    teacher, tmp_path / student, "--T", T, "--epochs", "2", "--student", student, "--keep-ckpt"
                )
            )
            == 0
        )
    t2, t4 = sorted((tmp_path / "test_resnet").iterdir())
    other = only_folder(tmp_path / "resnet10t")
    for run, student in ((t4, "test_resnet"), (other, "resnet10t")):
        shutil.copy(t2 / "ckpt.pt", run / "ckpt.pt")
        (run / "result.json").unlink()
        args = distill_args(teacher, tmp_path / student, "--T", "4", "--epochs", "2", "--student", student)
        err = main_error(distill.main, args, capsys)
        assert str(run) in err and "ckpt.pt was written for another run" in err


def test_a_teacher_with_non_finite_weights_is_refused(teacher, tmp_path, capsys):
    """probe: distill.py recorded every student as a failed (diverged) run, exit 3; advise.py read the NaN
    entropies as a 'structured tail' and gave its favourable advice."""
    ckpt = checkpoint_dict(teacher)
    ckpt["state_dict"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    path = tmp_path / "nan.pt"
    torch.save(ckpt, path)
    err = main_error(distill.main, distill_args(path, tmp_path / "runs"), capsys)
    assert "--teacher" in err and "non-finite logits" in err and not (tmp_path / "runs").exists()
    err = main_error(advise.main, ["--teacher", str(path), "--synth", *SYNTH, "--T", "1"], capsys)
    assert "--teacher" in err and "non-finite logits" in err


def test_a_teacher_of_other_class_names_is_said(teacher, tmp_path, capsys):
    """probe: a teacher whose class names are not the dataset's (same count) was distilled silently; its
    outputs are matched to the labels by index, which is only right if the names merely differ: said."""
    path = tmp_path / "other.pt"
    torch.save(checkpoint_dict(teacher, classes=["cat", "dog", "bird"]), path)
    capsys.readouterr()
    assert distill.main(distill_args(path, tmp_path / "runs", "--epochs", "1")) == 0
    assert (
        f"distill.py: note: --teacher: '{path}' names other classes than synth-fine (class 0: 'cat' vs "
        "'g0-red/t0-wide')"
    ) in capsys.readouterr().err


def test_ctkd_with_several_temperatures_is_said(teacher, tmp_path, capsys):
    """probe: --method ctkd --T 1 2 trained one run (CTKD learns its temperature) without saying so."""
    capsys.readouterr()
    assert (
        distill.main(distill_args(teacher, tmp_path / "runs", "--epochs", "1", "--method", "ctkd", "--T", "1", "2"))
        == 0
    )
    assert (
        "note: --method ctkd learns its temperature (--hp T_start, T_range): --T 1 2 trains one run"
        in capsys.readouterr().err
    )
    assert len(results_in(tmp_path / "runs")) == 1


def test_a_bad_image_size_is_refused_before_any_note(teacher, tmp_path, capsys):
    """probe: a note about --image-size 0 ('the teacher was trained at 32 px') came before the error."""
    err = error_output(distill.main, distill_args(teacher, tmp_path / "runs", "--image-size", "0"), capsys)
    assert err.startswith("distill.py: error: --image-size") and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_advise_checks_its_flags_before_any_note(teacher, capsys):
    """probe: advise.py printed a note about --image-size 0 before refusing it; --device meta was a traceback;
    a second --synth replaced the first."""
    err = error_output(advise.main, ["--teacher", str(teacher), "--synth", *SYNTH, "--image-size", "0"], capsys)
    assert err.startswith("advise.py: error: --image-size") and err.count("\n") == 1, err
    err = main_error(advise.main, ["--teacher", str(teacher), "--synth", *SYNTH, "--device", "meta"], capsys)
    assert err.startswith("advise.py: error: --device")
    half = len(SYNTH) // 2
    assert advise.main(["--teacher", str(teacher), "--synth", *SYNTH[:half], "--synth", *SYNTH[half:], "--T", "1"]) == 0
    assert "measured on 36 synth-fine train images" in capsys.readouterr().out


@pytest.mark.parametrize("blocked", ["ckpt.pt", "log.jsonl"])
def test_a_folder_in_place_of_a_run_file_is_one_line(teacher, tmp_path, capsys, blocked):
    """probe: a folder named ckpt.pt or log.jsonl in a run folder was a traceback in the middle of training."""
    args = distill_args(teacher, tmp_path, "--T", "2", "--epochs", "1")
    assert distill.main(args) == 0
    run = only_folder(tmp_path)
    (run / "result.json").unlink()
    (run / blocked).unlink(missing_ok=True)
    (run / blocked).mkdir()
    assert f"'{run / blocked}' is not a file" in main_error(distill.main, args, capsys)


def test_a_tape_that_cannot_be_written_is_said_and_training_goes_on(teacher, tmp_path, capsys):
    """probe: an epoch file that could not be written (here a folder in its place; a full disk alike) ended
    the run in a traceback; key.json as a folder was an OSError line that named no flag."""
    tape = tmp_path / "tape"
    (tape / "epoch-0001.pt").mkdir(parents=True)
    assert distill.main(distill_args(teacher, tmp_path / "a", "--T", "2", "--teacher-tape", str(tape))) == 0
    err = capsys.readouterr().err
    assert f"teacher tape: cannot write {tape / 'epoch-0001.pt'}" in err
    assert (tape / "epoch-0002.pt").is_file() and read_result(only_folder(tmp_path / "a"))["status"] == "ok"
    (tmp_path / "tape2" / "key.json").mkdir(parents=True)
    err = main_error(
        distill.main, distill_args(teacher, tmp_path / "b", "--teacher-tape", str(tmp_path / "tape2")), capsys
    )
    assert err.startswith("distill.py: error: --teacher-tape:") and "key.json" in err


def test_train_teacher_refuses_to_overwrite_its_own_init_or_a_file_in_place_of_its_run_folder(tmp_path, capsys):
    """probe: --init X --out X overwrote its own initialisation (and then refused every re-run); a file named
    like the run folder (<out>.run) gave a bare '[Errno 17] File exists'."""
    init = tmp_path / "init.pt"
    assert train_teacher.main(teacher_args(init)) == 0
    before = init.read_bytes()
    err = main_error(train_teacher.main, teacher_args(init, "--init", str(init)), capsys)
    assert err.startswith("train_teacher.py: error: --init:") and init.read_bytes() == before
    (tmp_path / "blocked.run").write_text("not a folder")
    err = main_error(train_teacher.main, teacher_args(tmp_path / "blocked.pt"), capsys)
    assert f"run folder '{tmp_path / 'blocked.run'}' is a file" in err


@pytest.mark.parametrize(
    "flag, needle",
    [
        ("--out", "--out: expected a folder, got an empty string"),
        ("--teacher-tape", "--teacher-tape: expected a folder"),
        ("--teacher", "checkpoint path is empty"),
    ],
)
def test_an_empty_path_is_refused(teacher, tmp_path, capsys, monkeypatch, flag, needle):
    """probe: --out '' filled the current folder with run folders, --teacher-tape '' recorded no tape without
    a word, --teacher '' said that '.' is a folder."""
    monkeypatch.chdir(tmp_path)
    args = distill_args(teacher, tmp_path / "runs", "--epochs", "1", flag, "")
    assert needle in main_error(distill.main, args, capsys)
    assert not any(tmp_path.iterdir())


def test_a_teacher_trained_at_another_resolution_on_another_dataset_is_said(tmp_path, capsys):
    """probe (P9): a teacher trained at 24 px on synth-src, measured or distilled on synth-coarse (the same
    classes), ran at synth-coarse's 32 px without a word."""
    t24 = tmp_path / "src24.pt"
    assert train_teacher.main([*teacher_args(t24, "--image-size", "24"), "--dataset", "synth-src"]) == 0
    note = "note: synth-coarse runs at its default 32 px; the teacher was trained at 24 px on synth-src"
    capsys.readouterr()
    args = distill_args(t24, tmp_path / "runs", "--T", "2", "--epochs", "1", "--dataset", "synth-coarse")
    assert distill.main(args) == 0
    assert f"distill.py: {note}" in capsys.readouterr().err
    assert advise.main(["--teacher", str(t24), "--dataset", "synth-coarse", "--synth", *SYNTH, "--T", "1"]) == 0
    assert f"advise.py: {note}" in capsys.readouterr().err
