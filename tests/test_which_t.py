"""Which T (analysis/which_t.py and the first table of REPORT.md): the best temperature of each setting, the
temperatures as good within m, and what KD adds over labels alone, on fabricated results with a planted best T.

The cell means are exact (test_findings' line3: a seed effect and a noise pattern that sum to zero over three
seeds), so the best T, its mean and KD's gain are known; only the intervals depend on the noise.
"""

import json

import pytest
from test_findings import labels3, line3

from analysis import aggregate, report, stats, which_t

DRAWS = 20_000
PLANTED = {1.0: 71.0, 2.0: 72.0, 4.0: 73.0, 8.0: 76.0, 16.0: 75.7, 40.0: 73.0}  # T=8 best by 3, 16 within 0.3


def decide(root):
    return which_t.which_t(aggregate.distill_rows(aggregate.load_results(root)[0]), draws=DRAWS)


def table_rows(lines):
    """The which-T table's data rows, each as a list of cell texts."""
    header = next(i for i in range(lines.index("## Which T"), len(lines)) if lines[i].startswith("| teacher"))
    end = next((i for i in range(header, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[header + 2 : end]]


def test_a_planted_best_T_is_found_with_the_temperatures_within_m(tmp_path):
    line3(tmp_path, PLANTED, noise=0.3, epochs=128, steps_per_epoch=7)
    labels3(tmp_path, 65.0, noise=0.3, epochs=128, steps_per_epoch=7)
    (entry,) = decide(tmp_path)
    assert entry["best_T"] == 8 and entry["best_mean"] == pytest.approx(76.0)
    assert entry["within_m"] == [8, 16]  # T=4 and T=40 (3 points worse) and below are shown at least m worse
    assert entry["gaps"]["16"]["estimate"] == pytest.approx(0.3) and entry["gaps"]["16"]["low"] < stats.MARGIN
    assert entry["gaps"]["4"]["low"] >= stats.MARGIN and entry["gaps"]["1"]["estimate"] == pytest.approx(5.0)
    gain = entry["kd_gain"]
    assert gain["estimate"] == pytest.approx(11.0) and 10.0 < gain["low"] < 11.0 < gain["high"] < 12.0
    assert entry["labels_only"]["mean"] == pytest.approx(65.0) and entry["labels_only"]["n"] == 3
    assert (entry["teacher"], entry["teacher_top1"], entry["opt"], entry["bs"]) == ("synth-fine-ft1", 90.0, "adamw", 64)
    assert (entry["epochs"], entry["steps"], entry["seeds"]) == (128, 896, [0, 1, 2]) and len(entry["runs"]) == 18

    (row,) = table_rows(which_t.section([entry]))
    teacher, opt, budget, best, within, kd_gain, labels = row
    assert (teacher, opt, budget) == ("synth-fine-ft1 (90.00)", "adamw", "128 ep = 896 steps")
    assert best == f"8 (76.00 ± {entry['best_std']:.2f})" and within == "8, 16"
    assert kd_gain == f"+11.00 ({gain['low']:+.2f} to {gain['high']:+.2f})" and labels.startswith("65.00 ± ")


def test_large_noise_excludes_no_temperature(tmp_path):
    line3(tmp_path, {1.0: 73.0, 2.0: 74.0, 8.0: 75.0, 16.0: 74.5}, noise=4.0)
    (entry,) = decide(tmp_path)
    assert entry["best_T"] == 8 and entry["within_m"] == [1, 2, 8, 16]
    assert entry["gaps"]["1"]["estimate"] == pytest.approx(2.0) and entry["gaps"]["1"]["low"] < stats.MARGIN
    assert entry["kd_gain"] is None and entry["labels_only"] is None


def test_a_T_is_dropped_only_when_its_whole_gap_interval_is_at_or_above_m():
    gaps = {
        1.0: {"estimate": 2.0, "low": 1.0, "high": 3.0},  # at least m worse: dropped
        2.0: {"estimate": 1.8, "low": 0.99, "high": 2.6},  # not shown: kept
        4.0: {"estimate": 3.0, "low": None, "high": None},  # no interval (one seed): kept
        8.0: {"estimate": 0.0, "low": 0.0, "high": 0.0},  # the best
    }
    assert which_t.within_margin(gaps) == [2.0, 4.0, 8.0]
    assert which_t.within_margin(gaps, margin=2.0) == [1.0, 2.0, 4.0, 8.0]


def test_settings_are_rows_by_teacher_optimizer_and_budget(tmp_path):
    line3(tmp_path, {1.0: 70.0, 8.0: 72.0}, opt="sgd", epochs=48)
    line3(tmp_path, {1.0: 74.0, 8.0: 70.0}, opt="sgd", epochs=16)
    line3(tmp_path, {1.0: 70.0, 8.0: 71.0}, epochs=16)
    line3(tmp_path, {1.0: 70.0, 8.0: 73.0}, epochs=16, teacher="synth-fine-ft0", bs=16)
    line3(tmp_path, {4.0: 70.0}, epochs=16, teacher="synth-fine-ft9")  # one temperature: no row
    entries = decide(tmp_path)
    keys = [(e["teacher"], e["opt"], e["epochs"], e["best_T"]) for e in entries]
    assert keys == [
        ("synth-fine-ft0", "adamw", 16, 8),
        ("synth-fine-ft1", "adamw", 16, 8),
        ("synth-fine-ft1", "sgd", 16, 1),
        ("synth-fine-ft1", "sgd", 48, 8),
    ]
    first = table_rows(which_t.section(entries))[0]
    assert first[0] == "synth-fine-ft0 (90.00) · bs16"  # the batch size differs between rows: it is named


def test_the_report_opens_with_the_which_T_table_and_writes_which_t_json(tmp_path):
    line3(tmp_path, PLANTED, noise=0.3, epochs=128, steps_per_epoch=7)
    labels3(tmp_path, 65.0, noise=0.3, epochs=128, steps_per_epoch=7)
    path = report.write_report(tmp_path)[0]
    lines = path.read_text().splitlines()
    sections = [ln for ln in lines if ln.startswith("## ")]
    assert sections[:2] == ["## Which T", "## Largest temperature effect"] and "## Findings" in sections
    (row,) = table_rows(lines)
    (saved,) = json.loads((tmp_path / "which_t.json").read_text())
    assert saved["best_T"] == 8 and saved["within_m"] == [8, 16] and row[4] == "8, 16"
    keys = {"setting", "teacher", "teacher_top1", "opt", "bs", "epochs", "steps", "best_T", "best_mean", "best_std",
            "within_m", "gaps", "kd_gain", "labels_only", "seeds", "runs"}  # fmt: skip
    assert set(saved) == keys
    assert set(saved["gaps"]) == {"1", "2", "4", "8", "16", "40"} and set(saved["kd_gain"]) == {
        "estimate",
        "low",
        "high",
    }
