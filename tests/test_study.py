"""bash run_all.sh study: the lab's protocol on a user's image folder and teacher, end to end at a tiny size, its
dry run (runs and an estimated wall time), and its refusals of bad input (one line, exit 2, nothing written)."""

import json
import os
from pathlib import Path

import pytest

import grid
from helpers import run_script, write_image_folder

ROOT = Path(__file__).resolve().parent.parent
TINY_RUNS = ["--image-size", "32", "--budgets", "1", "--T", "1", "4", "--student", "test_resnet"]


def study(*args, timeout=900):
    return run_script("run_all.sh", "study", *args, timeout=timeout)


def test_the_dry_run_counts_the_runs_and_estimates_the_time(teacher, tmp_path):
    folder = write_image_folder(tmp_path / "pets", ["a", "b", "c"], 4)
    r = study("--data-root", folder, "--teacher", teacher, *TINY_RUNS, "--seeds", "2", "--dry-run")
    assert r.returncode == 0, r.stderr
    # (2 temperatures + a labels-only student) x 2 optimizers x 1 budget x 2 seeds
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("study:"))
    assert line.startswith("study: 12 distillation runs, estimated ") and " h on " in line
    assert not (tmp_path / "results").exists() and "note: --teacher names other classes" in r.stderr


@pytest.mark.slow
def test_the_study_runs_end_to_end_on_a_folder_without_a_teacher(tmp_path):
    """The teacher the study makes (pretrained on a source folder, fine-tuned briefly and long, and one from
    scratch): every expected run finishes, the report leads with the which-T table and writes findings.json.
    (With a given teacher the study is the same distillation stage, its commands checked in tests/test_grid.py;
    the built-in data exported to a folder trains as the built-in data: tests/test_own_data.py.)"""
    source = write_image_folder(tmp_path / "source", ["p", "q", "r", "s"], 6, seed=1)
    target = write_image_folder(tmp_path / "target", ["x", "y", "z"], 6, seed=2)
    out = tmp_path / "made"
    r = study("--out", out, "--data-root", target, "--source", source, "--teacher-arch", "test_resnet",
              "--image-size", "16", "--budgets", "1", "--T", "1", "4", "--student", "test_resnet", "--seeds", "1",
              "--extra", "--bs 6 --device cpu")  # colours a teacher learns: no --allow-weak-teacher  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    teachers = sorted(p.name for p in (out / "teachers").glob("*.pt"))
    assert teachers == ["target-ft32.pt", "target-ft4.pt", "target-scratch.pt"]
    results = [json.loads(p.read_text()) for p in out.glob("runs/*/result.json")]
    origins = {r["teacher"]["origination"]["from_scratch"] for r in results if r["teacher"]}
    assert origins == {True, False} and len(results) == len(
        json.loads((out / "manifest" / "expected.json").read_text())
    )
    report = (out / "REPORT.md").read_text()
    assert report.index("Which T") < report.index("## Findings")
    assert {f["id"] for f in json.loads((out / "findings.json").read_text())} >= {1, 3, 4, 5, 6}


@pytest.mark.parametrize(
    "problem, needle",
    [
        ("no test split", "test not found"),
        ("a class without images", "no valid file"),
        ("other classes than the teacher's", "--teacher: "),
        ("--source with --teacher", "--source"),
        ("a budget over --max-hours", "--budgets: the study is estimated at"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(teacher, tmp_path, capsys, problem, needle):
    classes = ["a", "b", "c", "d"] if problem == "other classes than the teacher's" else ["a", "b", "c"]
    folder = write_image_folder(tmp_path / "folder", classes, 2)  # the teacher has 3 classes
    args = ["study", "--out", str(tmp_path / "out"), "--data-root", str(folder), "--teacher", str(teacher), *TINY_RUNS]
    if problem == "no test split":
        os.rename(folder / "test", tmp_path / "moved")
    elif problem == "a class without images":
        for p in (folder / "train" / "b").iterdir():
            p.unlink()
    elif problem == "--source with --teacher":
        args += ["--source", str(folder)]
    else:
        args += ["--max-hours", "0.000001"]
    assert grid.main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert needle in lines[-1] and lines[-1].startswith("grid.py: error: "), lines
    assert not (tmp_path / "out").exists()


def test_run_all_leaves_no_folder_behind_when_the_study_is_refused(teacher, tmp_path):
    folder = write_image_folder(tmp_path / "folder", ["a", "b", "c", "d"], 2)  # 4 classes, the teacher 3
    r = study("--out", tmp_path / "out", "--data-root", folder, "--teacher", teacher, *TINY_RUNS)
    assert r.returncode == 2 and "--teacher: " in r.stderr.strip().splitlines()[-1], r.stderr
    assert not (tmp_path / "out").exists()
