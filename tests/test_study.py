"""bash run_all.sh study: the lab's protocol on a user's image folder and teacher, end to end at a tiny size, and its
dry run (runs and an estimated wall time); its refusals of bad input are rows of test_bad_input.py."""

import json
from pathlib import Path

import pytest

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
    assert [f["id"] for f in json.loads((out / "findings.json").read_text())] == list(range(1, 18))  # all, in order
