"""The scripts against a hostile user (issue 14, "Run folders and tapes that cannot lie"): untrusted run
files, failed runs, tapes, hyperparameters, concurrent commands, signals and odd flags. Each test names
the problem of the issue it checks (P1-P10), or "probe" for a bad input found while probing the scripts.
All of them but one case (distill.py --parallel 0, refused already) failed on the code before the issue
(commit 25b69e5); the probes failed on its first fix too (commit 77c78a9)."""

import json
import signal
import subprocess
import time

import pytest
import torch

import cli
import distill
import models
import train_teacher
from analysis import advise
from helpers import TINY, distill_args, main_error, results_in, run_script, teacher_args

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


def test_an_untrusted_teacher_result_is_retrained(tmp_path, capsys):
    """P1 through train_teacher.py (a refused command with other flags changes nothing: test_bad_input.py)."""
    out = tmp_path / "t.pt"
    assert train_teacher.main(teacher_args(out)) == 0
    result = out.with_suffix(".run") / "result.json"
    result.write_text('{"foo": 1}')
    capsys.readouterr()
    assert train_teacher.main(teacher_args(out)) == 0
    assert "redoing the run" in capsys.readouterr().err and json.loads(result.read_text())["status"] == "ok"
    assert result.with_suffix(".json.invalid").read_text() == '{"foo": 1}'
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
    (truncated), is recomputed with one line, and the run ends with the curve of a run without a tape."""
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


# ------------------------------------------------------------------------------------------------- P5


def test_one_process_per_run_folder_and_the_lock_dies_with_its_holder(teacher, tmp_path, capsys):
    """P5: a second identical command on a run being trained exits at once naming the holder, and the first
    ends with a clean log (the lock of a SIGKILLed holder is released: test_faults.py's resumes)."""
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


def test_a_second_synth_flag_adds_to_the_first(teacher, capsys):
    """probe: advise.py's second --synth replaced the first."""
    half = len(SYNTH) // 2
    assert advise.main(["--teacher", str(teacher), "--synth", *SYNTH[:half], "--synth", *SYNTH[half:], "--T", "1"]) == 0
    assert "measured on 36 synth-fine train images" in capsys.readouterr().out


def test_a_tape_that_cannot_be_written_is_said_and_training_goes_on(teacher, tmp_path, capsys):
    """probe: an epoch file that could not be written (here a folder in its place; a full disk alike) ended
    the run in a traceback."""
    tape = tmp_path / "tape"
    (tape / "epoch-0001.pt").mkdir(parents=True)
    assert distill.main(distill_args(teacher, tmp_path / "a", "--T", "2", "--teacher-tape", str(tape))) == 0
    err = capsys.readouterr().err
    assert f"teacher tape: cannot write {tape / 'epoch-0001.pt'}" in err
    assert (tape / "epoch-0002.pt").is_file() and read_result(only_folder(tmp_path / "a"))["status"] == "ok"


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
