"""The findings' labels, Holm's family-wise levels, per-setting primaries and the integrity checks (issue 17).

Each test fabricates result.json files (no training) whose numbers say what the finding should find, and
names in its docstring the behaviour of the earlier analysis it failed on. Cell means are exact: three
seeds per cell, a seed effect shared by every cell and a noise pattern that sums to zero over the seeds.
"""

import json
import subprocess
import sys

import pytest
from test_analysis import REPO, write_run

from analysis import aggregate, cells, findings, integrity, report, selection, stats

P, OP, A, U, N = stats.PRESENT, stats.OPPOSITE, stats.ABSENT, stats.UNDECIDED, stats.UNTESTED
SEED_EFFECT = [-0.5, 0.2, 0.3]
PATTERN = [
    (0.6, -1.0, 0.4),
    (-0.8, 0.3, 0.5),
    (0.2, 0.7, -0.9),
    (-0.4, -0.2, 0.6),
    (0.9, -0.5, -0.4),
    (-0.3, 0.8, -0.5),
]
DRAWS = 20_000  # enough for labels far from their boundaries; the Holm test uses the report's own number


def line3(root, accuracy_by_T, noise=0.3, seeds=(0, 1, 2), **setting):
    """Three seeds per T: mean exactly a, a seed effect, and a noise pattern of size `noise`."""
    for i, (T, a) in enumerate(accuracy_by_T.items()):
        for s in seeds:
            write_run(root, a + SEED_EFFECT[s] + noise * PATTERN[i % len(PATTERN)][s], T=T, seed=s, **setting)


def labels3(root, accuracy, noise=0.3, **setting):
    """A student on labels alone (three seeds, mean exactly `accuracy`)."""
    for s in range(3):
        write_run(root, accuracy + SEED_EFFECT[s] + noise * PATTERN[0][s], T=None, seed=s, method="labels",
                  signal=None, **setting)  # fmt: skip


def temps(*values, Ts=(1.0, 2.0, 8.0, 16.0)):
    return dict(zip(Ts, values))


def decide(root, draws=DRAWS, expected=None):
    rows = aggregate.distill_rows(aggregate.load_results(root)[0])
    return findings.evaluate(rows, expected, draws=draws)


LONG = dict(teacher="synth-fine-ft8", teacher_epochs=8)


# ---------------------------------------------------------------------------------------------
# 1. labels from one symmetric table around m


def test_labels_are_symmetric_around_zero_and_the_margin():
    """Failed on stats.verdict: (+0.41, +0.90) was 'reproduced' with no word on its size, the same interval
    0.45 lower 'contradicted', and an opposite sign and an equivalence were both 'contradicted'."""
    assert stats.label(0.41, 0.90) == (P, stats.BELOW)
    assert stats.label(-0.04, 0.45) == (A, "")  # inside -m..+m: no effect of m or more
    assert stats.label(-0.90, -0.41) == (OP, stats.BELOW)  # the mirror of the first
    assert stats.label(1.2, 3.0) == (P, stats.AT_LEAST) and stats.label(-3.0, -1.2) == (OP, stats.AT_LEAST)
    assert stats.label(0.6, 1.8) == (P, "") and stats.label(-0.6, 1.8) == (U, "")
    assert stats.label(None, None) == (U, "")
    assert stats.label(-0.04, 0.45, margin=stats.MARGIN / 2) == (A, "")
    assert stats.label(-0.04, 0.75, margin=stats.MARGIN / 2) == (U, "")  # m/2: the same interval is too wide
    assert stats.MARGIN == 1.0


def test_an_opposite_and_an_equivalent_result_get_two_labels(tmp_path):
    """Failed on stats.verdict: finding 12's opposite sign and finding 13's equivalence were both
    'contradicted' (and bolded alike in the README)."""
    line3(tmp_path, temps(70.0, 70.0, 70.2, 70.2))  # the briefly fine-tuned teacher: trend +0.2
    line3(tmp_path, temps(73.0, 73.0, 73.2, 73.2), **LONG)  # the long one: 3 points better, the same trend
    decided = decide(tmp_path)
    accuracy, catch_up = findings.by_id(decided, 12), findings.by_id(decided, 13)
    assert accuracy["estimate"] == pytest.approx(-3.0) and (accuracy["label"], accuracy["size"]) == (OP, stats.AT_LEAST)
    assert catch_up["estimate"] == pytest.approx(0.0) and catch_up["label"] == A
    assert catch_up["label_double_margin"] == A and accuracy["label_half_margin"] == OP


# ---------------------------------------------------------------------------------------------
# 2. Holm over the findings of one report


def test_holm_levels_and_adjusted_p_values():
    """Failed before: every finding was tested at 95% on its own, whatever the number of findings."""
    levels, adjusted = stats.holm([0.01, 0.04, 0.03])
    # sorted: 0.01 at 0.05/3 (rejected), 0.03 at 0.05/2 (not rejected), so 0.04 also at 0.05/2
    assert levels == pytest.approx([0.05 / 3, 0.025, 0.025])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.001, 0.002]) == ([0.025, 0.05], [0.002, 0.002])


def test_the_holm_adjusted_interval_is_wider_and_decides_the_label(tmp_path):
    """Failed before: finding 3 would be 'reproduced' on a raw 95% interval above 0 that does not survive
    the family's adjustment."""
    line3(tmp_path, {1.0: 70.0, 4.0: 70.0, 20.0: 70.5})  # AdamW: T=20 ahead by 0.5 (raw p about 0.04)
    line3(tmp_path, {2.0: 70.0, 8.0: 70.0}, opt="sgd")  # SGD: no difference (finding 4, p about 1)
    decided = decide(tmp_path, draws=stats.DRAWS)
    f3, f4 = findings.by_id(decided, 3), findings.by_id(decided, 4)
    assert f3["low"] > 0 and stats.label(f3["low"], f3["high"])[0] == P  # the raw interval excludes 0
    assert f3["level"] == pytest.approx(0.025) and f3["p_adj"] > 0.05 > f3["p"] > f3["level"]
    assert f3["low_adj"] < f3["low"] and f3["high_adj"] > f3["high"] and f3["low_adj"] < 0
    assert f3["label"] == U  # from the adjusted interval
    assert f4["level"] == pytest.approx(0.025)  # the first not rejected fixes the level of every later one
    for f in decided:  # the adjusted interval excludes 0 exactly when Holm rejects
        if f["level"] is not None:
            assert (f["low_adj"] > 0 or f["high_adj"] < 0) == (f["p"] <= f["level"])


# ---------------------------------------------------------------------------------------------
# 3. budgets in steps and epochs


def test_the_crossover_reports_every_budget_in_epochs_and_steps(tmp_path):
    """Failed before: the cross-over's budgets were epochs only, and only the shortest and the longest."""
    for epochs, acc in ((16, temps(75, 75, 70, 70)), (48, temps(75, 75, 73, 73)), (128, temps(75, 75, 74, 74))):
        line3(tmp_path, acc, opt="sgd", epochs=epochs, steps_per_epoch=7)
    crossover = findings.by_id(decide(tmp_path), 6)
    assert [(b["epochs"], b["steps"]) for b in crossover["budgets"]] == [(16, 112), (48, 336), (128, 896)]
    assert [b["trend"] for b in crossover["budgets"]] == pytest.approx([-5.0, -2.0, -1.0])
    assert all(b["low"] < b["trend"] < b["high"] for b in crossover["budgets"])
    assert crossover["estimate"] == pytest.approx(-1.0) and crossover["label"] == OP  # no cross-over by 896 steps
    halves = [s for s in crossover["secondary"] if s["kind"] == "part"]
    assert [h["estimate"] for h in halves] == pytest.approx([5.0, -1.0]) and "128 epochs = 896 steps" in halves[1][
        "setting"
    ]


# ---------------------------------------------------------------------------------------------
# 4, 10. primaries at the setting the sentence names; other settings on their own


def test_the_primary_at_batch_64_is_not_pooled_with_batch_16(tmp_path):
    """Failed before: lab-full's finding 4 averaged batch 16 (+0.53) with batch 64 (-1.09) into -0.28 and
    called it contradicted."""
    Ts = (1.0, 2.0, 4.0, 8.0, 16.0, 40.0)
    line3(tmp_path, dict(zip(Ts, (72.0, 72.5, 72.0, 71.41, 71.2, 71.0))), noise=0.1, opt="sgd", epochs=128)
    line3(tmp_path, dict(zip(Ts, (70.0, 70.2, 70.3, 70.83, 70.5, 70.4))), noise=0.1, opt="sgd", epochs=128, bs=16)
    sgd = findings.by_id(decide(tmp_path), 4)
    assert "bs64" in sgd["primary"] and sgd["estimate"] == pytest.approx(-1.09) and sgd["label"] == OP
    other = next(s for s in sgd["secondary"] if s["kind"] == "setting")
    assert "bs16" in other["setting"] and other["estimate"] == pytest.approx(0.53) and other["label"] == P
    assert sgd["settings_agree"] is False and any("disagree" in n for n in sgd["notes"])


def test_short_sgd_budgets_do_not_flip_kd_against_labels_alone(tmp_path):
    """Failed before: on a real image folder the 16-epoch SGD cells (labels alone 57.3 against KD's 45-55) were
    pooled with the 128-epoch ones and finding 1 came out contradicted (-1.89)."""
    line3(tmp_path, temps(65.6, 65.8, 66.0, 66.1), noise=0.1, epochs=128)
    labels3(tmp_path, 65.0, noise=0.1, epochs=128)
    line3(tmp_path, temps(55.0, 53.0, 47.0, 45.0), noise=0.1, opt="sgd", epochs=16)
    labels3(tmp_path, 57.3, noise=0.1, opt="sgd", epochs=16)
    line3(tmp_path, temps(66.0, 66.2, 66.3, 66.3), noise=0.1, opt="sgd", epochs=128)
    labels3(tmp_path, 65.0, noise=0.1, opt="sgd", epochs=128)
    kd = findings.by_id(decide(tmp_path), 1)
    assert "adamw bs64 128 ep" in kd["primary"] and kd["estimate"] == pytest.approx(0.875) and kd["label"] == P
    by_setting = {s["setting"].split(" · ")[2]: s for s in kd["secondary"]}
    assert by_setting["sgd bs64 16 ep"]["label"] == OP and by_setting["sgd bs64 128 ep"]["label"] == P
    assert kd["settings_agree"] is False


# ---------------------------------------------------------------------------------------------
# 5. noise from each contrast's own cells, per group; a cell counted once


def test_a_noisy_group_does_not_widen_another_groups_contrast():
    """Failed on stats.interval: one sigma from every cell passed, so noisy SGD cells widened an AdamW
    difference."""
    adamw = {"a": {0: 70.0, 1: 71.0, 2: 69.5}, "b": {0: 68.0, 1: 69.2, 2: 67.9}}
    sgd = {"c": {0: 60.0, 1: 66.0, 2: 58.0}, "d": {0: 65.0, 1: 59.0, 2: 64.0}}

    def difference(m):
        return m["a"] - m["b"]

    alone = stats.interval(adamw, difference)
    grouped = stats.interval({"adamw": adamw, "sgd": sgd}, difference)
    pooled = stats.interval({**adamw, **sgd}, difference)
    assert grouped[1:3] == pytest.approx(alone[1:3], rel=1e-9)
    assert pooled[2] - pooled[1] > 5 * (alone[2] - alone[1])
    with pytest.raises(ValueError):
        stats.bootstrap({"x": adamw, "y": {"a": adamw["a"], "c": sgd["c"]}}, difference)  # a cell in two groups


def test_adamw_robustness_has_noise_per_optimizer(tmp_path):
    """Failed before: finding 5 took one sigma for the AdamW and the SGD cells together."""
    line3(tmp_path, temps(70.0, 70.5, 71.0, 71.0), noise=0.1)
    line3(tmp_path, temps(70.0, 68.0, 66.0, 65.0), noise=1.0, opt="sgd")
    robust = findings.by_id(decide(tmp_path), 5)
    assert robust["estimate"] == pytest.approx(5.0 - 1.0) and set(robust["sigma"]) == {"adamw", "sgd"}
    assert robust["sigma"]["sgd"] == pytest.approx(10 * robust["sigma"]["adamw"])


def test_a_labels_only_cell_is_used_once(tmp_path):
    """Failed before: finding 1 entered one labels-only cell once per teacher, as if three independent cells,
    and pooled the teachers."""
    line3(tmp_path, temps(70.0, 71.0, 72.0, 73.0))
    line3(tmp_path, temps(74.0, 74.0, 74.0, 74.0), **LONG)
    line3(tmp_path, temps(66.0, 65.0, 64.0, 63.0), teacher="synth-fine-scratch", teacher_epochs=10, scratch=True)
    labels3(tmp_path, 60.0)
    kd = findings.by_id(decide(tmp_path), 1)
    assert kd["estimate"] == pytest.approx(71.5 - 60.0) and "synth-fine-ft1" in kd["primary"]
    assert len(kd["runs"]) == len(set(kd["runs"])) == (4 + 1) * 3  # four temperatures and the reference, 3 seeds
    assert sum("labels" in r for r in kd["runs"]) == 3
    assert sorted(s["estimate"] for s in kd["secondary"]) == pytest.approx([4.5, 14.0])


# ---------------------------------------------------------------------------------------------
# 6. statistics that test the sentences


def test_large_T_must_beat_T_4_too(tmp_path):
    """Failed before: finding 3 compared T >= 8 with T <= 2 only, so a line where T = 4 is best counted as
    large T winning."""
    line3(tmp_path, temps(70.0, 70.0, 75.0, 72.0, 72.0, Ts=(1.0, 2.0, 4.0, 8.0, 16.0)))
    large_T = findings.by_id(decide(tmp_path), 3)
    assert large_T["estimate"] == pytest.approx(-3.0) and large_T["label"] == OP
    old_trend = large_T["secondary"][0]
    assert old_trend["kind"] == "part" and old_trend["estimate"] == pytest.approx(2.0) and old_trend["label"] == P


def test_the_novel_targets_own_trend_is_tested(tmp_path):
    """Failed before: finding 17 tested only the difference of trends, so large T helping the novel target
    (less than the overlapping one) counted as the novel target preferring small T."""
    line3(tmp_path, temps(70.0, 70.0, 76.0, 76.0))
    line3(tmp_path, temps(70.0, 70.0, 72.0, 72.0), dataset="synth-novel", teacher="synth-novel-ft1")
    novel = findings.by_id(decide(tmp_path), 17)
    assert novel["estimate"] == pytest.approx(-2.0) and novel["label"] == OP
    parts = {s["setting"]: s for s in novel["secondary"]}
    assert parts["minus the trend on the novel target"]["label"] == OP
    assert parts["trend on the overlapping minus trend on the novel target"]["estimate"] == pytest.approx(4.0)


def test_large_T_must_help_every_initialisation(tmp_path):
    """Failed before: finding 15 tested only 'random gains more than pretrained', not that every
    initialisation gains."""
    line3(tmp_path, temps(70.0, 70.0, 75.0, 75.0))
    line3(tmp_path, temps(80.0, 80.0, 77.0, 77.0), student_init="FT")
    every = findings.by_id(decide(tmp_path), 15)
    assert every["estimate"] == pytest.approx(-3.0) and every["label"] == OP
    parts = [(s["setting"], s["estimate"]) for s in every["secondary"]]
    assert [e for _, e in parts] == pytest.approx([8.0, 5.0, -3.0])  # random minus pretrained, then each init


def test_no_method_beats_kd_needs_two_settings_and_compares_best_temperatures(tmp_path):
    """Failed before: finding 2 was 'contradicted' from one setting, and compared means over T."""
    line3(tmp_path, temps(70.0, 72.0, 74.0, 73.0))
    line3(tmp_path, temps(76.0, 77.0, 77.0, 76.0), method="dkd")
    one = findings.by_id(decide(tmp_path), 2)
    assert one["label"] == N and one["missing"] == "one setting: consistency needs two or more"
    assert [(s["kind"], s["label"]) for s in one["secondary"]] == [("part", P)]  # still computed and listed
    line3(tmp_path, temps(60.0, 62.0, 64.0, 63.0), opt="sgd")
    line3(tmp_path, temps(66.0, 67.0, 67.0, 66.0), opt="sgd", method="dkd")
    two = findings.by_id(decide(tmp_path), 2)
    assert two["estimate"] == pytest.approx(-3.0) and two["label"] == OP  # DKD's best T beats KD's in both


def test_a_method_better_on_average_but_not_at_its_best_T_does_not_beat_kd(tmp_path):
    """Failed before: finding 2 compared each method's mean over T with KD's, so a method that is flat over T
    'beat' a KD whose best T is better."""
    for opt in ("adamw", "sgd"):
        line3(tmp_path, temps(60.0, 64.0, 80.0, 76.0), opt=opt)  # mean 70, best 80
        line3(tmp_path, temps(75.0, 75.0, 75.0, 75.0), opt=opt, method="dist")  # mean 75, best 75
    methods = findings.by_id(decide(tmp_path), 2)
    assert methods["estimate"] == pytest.approx(5.0) and methods["label"] == P


# ---------------------------------------------------------------------------------------------
# 7. single teachers


def test_teacher_comparisons_state_their_scope(tmp_path):
    """Failed before: findings that compare one checkpoint per kind of teacher did not say so."""
    decided = decide(tmp_path)
    one_teacher = {f["id"] for f in decided if "one teacher of each kind" in f["scope"]}
    assert one_teacher == {11, 12, 13, 14, 16, 17}


# ---------------------------------------------------------------------------------------------
# 8. silent data hazards


def test_a_duplicate_configuration_and_seed_is_an_error(tmp_path):
    """Failed on seed_values: a second run of one configuration and seed silently overwrote the first."""
    line3(tmp_path, temps(70.0, 70.0, 72.0, 72.0))
    write_run(tmp_path, 71.0, T=8.0, seed=1, suffix="-stale", lr=0.1)
    run = subprocess.run(
        [sys.executable, "analysis/report.py", str(tmp_path)], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert run.stderr.startswith("report.py: error: two runs of one configuration and seed: synth-fine/")
    assert "(their configs differ in: lr); move one out of the results folder" in run.stderr
    assert not any((tmp_path / name).exists() for name in ("REPORT.md", "results.csv", "findings.json", "figures"))
    assert aggregate.main([str(tmp_path)]) == 2 and not (tmp_path / "results.csv").exists()


def test_two_teachers_of_one_name_in_one_setting_are_an_error(tmp_path):
    """Failed before: two checkpoints of one name (fine-tuned 1 and 2 epochs) were one teacher to the findings."""
    line3(tmp_path, temps(70.0, 70.0, 72.0, 72.0))
    write_run(tmp_path, 71.0, T=8.0, seed=0, teacher_epochs=2, suffix="-other")
    rows = aggregate.distill_rows(aggregate.load_results(tmp_path)[0])
    with pytest.raises(aggregate.AnalysisError, match=r"two configurations at T=8.0 in one setting: .*teacher_target_"):
        findings.evaluate(rows, draws=DRAWS)


def test_runs_of_two_data_sizes_are_split_and_listed(tmp_path):
    """Failed before: SETTING lacked the built-in data's sizes, so runs of two sizes were averaged."""
    big, small = {"test_per_class": 300}, {"test_per_class": 100}
    line3(tmp_path, temps(70.0, 70.0, 74.0, 74.0, 74.0, Ts=(1.0, 2.0, 4.0, 8.0, 16.0)), synth=big)
    line3(tmp_path, temps(70.0, 70.0, 66.0, 66.0), synth=small)
    rows = aggregate.distill_rows(aggregate.load_results(tmp_path)[0])
    keys = integrity.data_keys(rows)
    assert [(datasets, synth) for _, datasets, synth in keys] in (
        [({"synth-fine": 15}, big), ({"synth-fine": 12}, small)],
        [({"synth-fine": 12}, small), ({"synth-fine": 15}, big)],
    )
    large_T = findings.by_id(findings.evaluate(rows, draws=DRAWS), 3)
    big_key = aggregate.data_key({"synth": big, "aug": None, "data_id": None})
    assert large_T["primary"].endswith(f"data {big_key}") and large_T["estimate"] == pytest.approx(0.0)
    assert [s["estimate"] for s in large_T["secondary"] if s["kind"] == "setting"] == pytest.approx([-4.0])
    text = "\n".join(report.integrity_section(rows, None))
    assert all(f"`{key}`" in text for key, _, _ in keys) and "test_per_class=100" in text


def test_a_shorter_longest_budget_is_noted(tmp_path):
    """Failed on longest(): a group whose longest budget was shorter than the folder's was used silently."""
    line3(tmp_path, temps(70.0, 70.0, 72.0, 72.0), epochs=16)
    line3(tmp_path, temps(70.0, 70.0, 73.0, 73.0), epochs=48)
    line3(tmp_path, temps(75.0, 75.0, 75.0, 75.0), epochs=128, **LONG)
    large_T = findings.by_id(decide(tmp_path), 3)
    assert large_T["estimate"] == pytest.approx(3.0)  # at 48 epochs, the brief teacher's longest
    assert any(n.endswith("longest budget here is 48 epochs, not 128") for n in large_T["notes"])


def test_expected_runs_without_a_result_and_mixed_code_are_listed(tmp_path):
    """Failed before: a preset's missing runs and runs of several code versions in one panel went unsaid."""
    line3(tmp_path, {1.0: 70.0, 2.0: 70.0, 8.0: 72.0}, seeds=(0, 1))
    write_run(tmp_path, 72.0, T=16.0, seed=0)
    write_run(tmp_path, 72.0, T=16.0, seed=1, code_version="def456")
    expected = [dict(dataset="synth-fine", teacher="synth-fine-ft1", student="resnet10t", student_init="random",
                     method="kd", signal="teacher", k=None, opt="adamw", bs=64, epochs=10, T=T, seed=s)
                for T in (1, 2, 8, 16) for s in (0, 1, 2)]  # fmt: skip
    (tmp_path / "manifest").mkdir()
    (tmp_path / "manifest" / "expected.json").write_text(json.dumps(expected))
    rows = aggregate.distill_rows(aggregate.load_results(tmp_path)[0])
    missing = integrity.missing_runs(integrity.read_expected(tmp_path), rows)
    assert [(e["T"], e["seed"]) for e in missing] == [(1, 2), (2, 2), (8, 2), (16, 2)]
    large_T = findings.by_id(findings.evaluate(rows, expected, draws=DRAWS), 3)
    assert sum(n.startswith("expected but not finished: ") for n in large_T["notes"]) == 4
    assert "runs of several code versions: abc123 (7 runs), def456 (1 run)" in large_T["notes"]
    assert "Expected runs: 4 of 12 without a finished result:" in report.integrity_section(rows, expected)
    done = [e for e in expected if e not in missing]
    assert "Expected runs: all 8 expected runs finished." in report.integrity_section(rows, done)


def test_one_definition_of_the_temperature_ranges():
    """Failed before: selection.LARGE_T = 10 contradicted the findings' 8."""
    assert not hasattr(selection, "LARGE_T")
    ln = {T: T for T in (1.0, 2.0, 4.0, 5.0, 8.0, 40.0)}
    assert (cells.small(ln), cells.usual(ln), cells.large(ln)) == ([1.0, 2.0], [1.0, 2.0, 4.0, 5.0], [8.0, 40.0])


# ---------------------------------------------------------------------------------------------
# 9. flatness relative to 1/K


def test_flatness_at_T_40_is_relative_to_the_class_count(tmp_path):
    """Failed on the absolute 0.01: a 10-class teacher as flat relative to 1/K as the lab's (13 % around 1/K)
    failed, while 24-class teachers passed."""
    ten = [0.109, 0.104, 0.103, 0.101, 0.100, 0.099, 0.098, 0.097, 0.0965, 0.096]
    write_run(tmp_path, 70.0, T=40.0, softmax=ten)
    write_run(tmp_path, 70.0, T=40.0, teacher="synth-fine-ft8", softmax=[0.0445] + [0.0415] * 22 + [0.0400])
    flat = findings.by_id(decide(tmp_path), 8)
    assert flat["label"] == P and "the largest K (p_1 - p_K) is 0.130" in flat["summary"]
    write_run(tmp_path, 70.0, T=40.0, teacher="synth-fine-scratch", softmax=[0.15] + [0.095] * 9 + [0.10])
    assert findings.by_id(decide(tmp_path), 8)["label"] == OP  # 10 x (0.15 - 0.10) = 0.5


# ---------------------------------------------------------------------------------------------
# findings.json and the summary table


def test_findings_json_has_every_key_and_the_summary_table_follows_it(tmp_path):
    """Failed before: there was no findings.json for README's table to be checked against."""
    line3(tmp_path, temps(70.0, 70.0, 72.0, 72.0), epochs=16, steps_per_epoch=7)
    line3(tmp_path, temps(70.0, 70.0, 73.0, 73.0), epochs=48, steps_per_epoch=7)
    line3(tmp_path, temps(72.0, 71.0, 70.0, 70.0), epochs=16, opt="sgd", steps_per_epoch=7)
    line3(tmp_path, temps(70.0, 70.0, 71.0, 71.5), epochs=48, opt="sgd", steps_per_epoch=7)
    report.write_report(tmp_path)
    decided = json.loads((tmp_path / "findings.json").read_text())
    keys = {"id", "claim", "source", "setting", "statistic", "estimate", "low", "high", "low_adj", "high_adj", "level",
            "p", "p_adj", "margin", "label", "size", "label_half_margin", "label_double_margin", "seeds", "sigma",
            "runs", "scope", "notes", "settings_agree", "secondary", "budgets"}  # fmt: skip
    assert all(keys <= set(f) for f in decided) and [f["id"] for f in decided] == list(range(1, 18))
    crossover = findings.by_id(decided, 6)
    assert {"setting", "estimate", "low", "high", "label"} <= set(crossover["secondary"][0])
    assert [set(b) for b in crossover["budgets"]] == [{"epochs", "steps", "trend", "low", "high"}] * 2
    assert crossover["runs"] == sorted(crossover["runs"]) and len(crossover["runs"]) == 2 * 4 * 3
    table = report.summary_table(decided)
    assert len(table) == 2 + 17
    for f, row in zip(decided, table[2:]):
        cells_ = row.split(" | ")
        assert cells_[0] == f"| {f['id']}" and cells_[3] == report.label_text(f)
        if f["low_adj"] is not None:
            assert f"{f['estimate']:+.2f} ({f['low_adj']:+.2f} to {f['high_adj']:+.2f})" in row
