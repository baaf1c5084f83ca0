"""analysis/: result.json files -> the table of runs, findings, which T, REPORT.md, figures.

Each test writes result.json files the way distill.py does (no training) with planted top-1 values: a seed
effect per line and a noise pattern that sums to zero over the seeds, so cell means are exact.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import kd
from analysis import figures, findings, report, stats, table

REPO = Path(__file__).resolve().parent.parent
NOISE = [(0.3, -0.5, 0.2), (-0.4, 0.1, 0.3), (0.1, 0.4, -0.5), (-0.2, -0.1, 0.3), (0.5, -0.3, -0.2)]
TEMPS = (1.0, 2.0, 4.0, 8.0, 40.0)


def write_run(root, top1, *, T=4.0, seed=0, teacher="synth-fine-ft4", teacher_epochs=4, scratch=False, method="kd",
              signal="teacher", k=None, opt="adamw", bs=64, epochs=128, init="random", dataset="synth-fine", synth=None,
              lr=1e-3, teacher_lr=1e-3, teacher_seed=None, code_version="c1", h_rel=(0.5, 0.8), folder=""):  # fmt: skip
    """One distillation result.json as distill.py writes it (the keys the analysis reads). The teacher has a recipe
    (train_teacher.py's identity) with its seed (default: the student's) and weights named by recipe and seed."""
    teacher_seed = seed if teacher_seed is None else teacher_seed
    recipe = {"dataset": dataset, "epochs": teacher_epochs, "lr": teacher_lr, "init": "random" if scratch else "src",
              "seed": teacher_seed}  # fmt: skip
    config = {"kind": "distill", "dataset": dataset, "data_id": None, "synth": synth, "aug": {"size": 32},
              "student": "test_resnet", "student_init": init, "method": method, "signal": signal, "k": k, "opt": opt,
              "lr": lr, "bs": bs, "epochs": epochs, "seed": seed, "T": T,
              "teacher_weights_sha1": table.short_hash([recipe, folder])}  # fmt: skip
    softmax = [0.2, 0.2, 0.2, 0.2, 0.2] if T == 40 else [0.6, 0.1, 0.1, 0.1, 0.1]
    result = {
        "status": "ok", "kind": "distill", "config": config, "run_id": None, "T": T, "seed": seed,
        "final": {"top1": top1, "top5": 99.0, "agreement": 50.0}, "code_version": code_version,
        "device": "cpu", "versions": {"torch": "2.5"}, "student_origination": {"init": init},
        "teacher": {"path": f"teachers/{teacher}-t{teacher_seed}.pt", "top1": 90.0, "recipe": recipe,
                    "origination": {"from_scratch": scratch, "target_epochs": teacher_epochs},
                    "statistics": {"T": T, "H_rel": h_rel[0], "H_rel_without_max": h_rel[1],
                                   "mean_sorted_softmax": softmax}},
    }  # fmt: skip
    if method == "labels":
        result["teacher"] = result["T"] = config["T"] = config["signal"] = None
        config.pop("teacher_weights_sha1")
    name = f"{teacher}-{method}{signal}{k}-{opt}{bs}-{epochs}-{init}-{dataset}-T{T}-s{seed}-lr{lr}{folder}"
    path = Path(root) / "runs" / name.replace("None", "x")
    path.mkdir(parents=True)
    (path / "result.json").write_text(json.dumps(result))


def write_line(root, means, seeds=(0, 1, 2), noise=1.0, **setting):
    """A KD line: {T: mean} at every seed, a seed effect shared by the line and noise * NOISE; seeds 3-5 mirror
    seeds 0-2, so means over seeds 0-2 or 0-5 are exact."""
    for i, (T, mean) in enumerate(means.items()):
        for s in seeds:
            sign = 1 if s < 3 else -1
            value = mean + sign * ((0.0, 1.0, -1.0)[s % 3] + noise * NOISE[i % 5][s % 3])
            write_run(root, value, T=T, seed=s, **setting)


def write_labels(root, mean, seeds=(0, 1, 2), **setting):
    for s in seeds:
        write_run(
            root,
            mean + (1 if s < 3 else -1) * (0.6, -0.2, -0.4)[s % 3],
            T=None,
            seed=s,
            method="labels",
            signal=None,
            **setting,
        )


def trend_line(slope, level=70.0):
    """{T: mean} with a trend (mean at T > 5 minus at T <= 5) of exactly `slope`."""
    return {T: level + slope * (T > 5) for T in TEMPS}


def decide(root, expected=()):
    return {f["id"]: f for f in findings.decide_all(table.load_table(root)[0], expected)}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A small lab of 6 seeds: the brief teacher (AdamW: trend +3, mean 71.2; SGD: +0.02, at 16 epochs -4),
    labels-only students at 60, a long teacher at 68 and flat, a scratch teacher preferring small T (-2), controls
    at 66 (7 below the teacher at T > 5)."""
    root, six = tmp_path_factory.mktemp("lab"), dict(seeds=range(6), noise=0.2)
    write_line(root, trend_line(3.0), **six)
    write_line(root, trend_line(0.02), opt="sgd", **six)
    write_line(root, trend_line(-4.0), opt="sgd", epochs=16, **six)
    write_labels(root, 60.0, seeds=range(6))
    write_line(root, trend_line(0.0, 68.0), teacher="synth-fine-ft32", teacher_epochs=32, h_rel=(0.4, 0.9), **six)
    write_line(root, trend_line(-2.0), teacher="synth-fine-scratch", teacher_epochs=100, scratch=True, **six)
    for signal, k in (("smooth-global", None), ("smooth-instance", None), ("bottomk", 1)):
        write_line(root, {8.0: 66.0, 40.0: 66.0}, signal=signal, k=k, **six)
    return root


# ---------------------------------------------------------------------------------------------
# Loading


def test_the_loader_reports_bad_files_and_keeps_good_ones(tmp_path):
    write_run(tmp_path, 70.0)
    for name, text in {"truncated": '{"status": "ok", "ki', "empty": "", "list": "[1]", "foreign": '{"a": 1}'}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(text)
    done, rows, trained, problems = table.load_table(tmp_path)
    reasons = {Path(p).parent.name: why for p, why in problems}
    assert set(reasons) == {"truncated", "empty", "list", "foreign"}
    assert "truncated" in reasons["truncated"] and "not a run result" in reasons["list"]
    assert [r["teacher"] for r in done] == ["synth-fine-ft4"] and done[0]["teacher_seed"] == 0


def test_results_csv_has_exact_means_over_seeds(lab, tmp_path):
    path = table.write_results_csv(table.load_table(lab)[0], tmp_path / "results.csv")
    with open(path, newline="") as f:
        by = {(r["teacher"], r["opt"], r["epochs"], r["signal"], r["T"]): r for r in csv.DictReader(f)}
    row = by[("synth-fine-ft4", "adamw", "128", "teacher", "8.0")]
    assert float(row["top1_mean"]) == pytest.approx(73.0) and row["n"] == "6" and row["seeds"] == "0 1 2 3 4 5"


# ---------------------------------------------------------------------------------------------
# Labels


def test_planted_effects_get_their_labels_and_scope(lab):
    found = decide(lab)
    assert (found[1]["label"], found[1]["size"]) == (stats.PRESENT, stats.AT_LEAST)
    assert found[1]["estimate"] == pytest.approx(71.2 - 60.0)
    assert found[3]["estimate"] == pytest.approx(3.0) and found[3]["label"] == stats.PRESENT
    assert found[4]["estimate"] == pytest.approx(0.02) and found[4]["label"] == stats.ABSENT
    assert found[6]["estimate"] == pytest.approx(0.02)  # the smaller of 4 (short: -trend) and 0.02 (long)
    assert found[12]["estimate"] == pytest.approx(71.2 - 68.0) and found[12]["label"] == stats.PRESENT
    assert found[14]["estimate"] == pytest.approx(2.0) and found[14]["label"] == stats.PRESENT
    assert found[9]["estimate"] == pytest.approx(73.0 - 66.0) and found[10]["label"] == stats.PRESENT
    assert found[11]["label"] == stats.PRESENT and found[8]["label"] == stats.PRESENT
    assert found[2]["label"] == stats.UNTESTED and "method" in found[2]["summary"]
    assert "synth-fine-ft4 (6 sets of weights)" in found[3]["scope"] and "test_resnet" in found[3]["scope"]
    family = sum(f["level"] is not None for f in found.values())
    assert found[3]["level"] == pytest.approx(1 - 0.05 / family)
    assert found[3]["low"] < found[3]["raw_low"] < found[3]["estimate"] < found[3]["raw_high"] < found[3]["high"]


def test_an_interval_of_a_difference_is_the_t_interval_of_the_per_seed_differences(tmp_path):
    write_line(tmp_path, trend_line(1.0))
    f = decide(tmp_path)[3]
    d = [1.0 + (NOISE[3][s] + NOISE[4][s]) / 2 - (NOISE[0][s] + NOISE[1][s] + NOISE[2][s]) / 3 for s in range(3)]
    mean, sd = sum(d) / 3, (sum((x - sum(d) / 3) ** 2 for x in d) / 2) ** 0.5
    assert f["raw_high"] - mean == pytest.approx(4.302653 * sd / 3**0.5, rel=1e-5)  # t(0.975, 2) = 4.302653


def test_a_shared_teacher_is_named_in_the_scope(tmp_path):
    write_line(tmp_path, trend_line(1.0), teacher_seed=7)
    assert "one teacher of each kind" in decide(tmp_path)[3]["scope"]


def test_finding_7_is_decided_at_the_longest_budget_with_the_pooled_value_beside(tmp_path):
    write_line(tmp_path, trend_line(0.0), opt="sgd")
    write_line(tmp_path, trend_line(1.0), opt="sgd", bs=16)
    write_line(tmp_path, trend_line(0.0), opt="sgd", epochs=16)
    write_line(tmp_path, trend_line(5.0), opt="sgd", bs=16, epochs=16)
    f = decide(tmp_path)[7]
    assert f["estimate"] == pytest.approx(1.0) and "128 ep" in f["setting"]
    assert f["secondary"][0]["estimate"] == pytest.approx(3.0)


def test_identical_top1_over_seeds_is_no_noise_estimate_not_absent(tmp_path):
    for s in range(3):
        for T in TEMPS:
            write_run(tmp_path, 70.0, T=T, seed=s)
    f = decide(tmp_path)[3]
    assert f["label"] == stats.NO_NOISE and f["estimate"] == 0


@pytest.mark.parametrize("p, df, table", [(0.975, 1, 12.7062), (0.975, 5, 2.5706), (0.975, 30, 2.0423),
                                           (0.995, 2, 9.9248), (0.995, 10, 3.1693)])  # fmt: skip
def test_t_quantiles_match_a_printed_t_table(p, df, table):
    assert stats.t_quantile(p, df) == pytest.approx(table, abs=5e-5)


def test_an_undecided_finding_says_how_many_seeds_would_decide_it(tmp_path):
    write_line(tmp_path, trend_line(0.6), noise=3.0)
    f = decide(tmp_path)[3]
    assert f["label"] == stats.UNDECIDED
    sd, k = f["sd"]["d"], sum(x["level"] is not None for x in decide(tmp_path).values())
    n = f["units_needed"]
    half = lambda n: stats.t_quantile(1 - 0.05 / (2 * k), n - 1) * sd / n**0.5  # noqa: E731
    assert half(n) < 0.6 <= half(n - 1)


# ---------------------------------------------------------------------------------------------
# Integrity: a finding never pools two configurations


def test_a_run_with_another_lr_is_not_pooled_into_its_cell(lab, tmp_path):
    write_line(tmp_path, trend_line(3.0))
    write_run(tmp_path, 99.0, T=8.0, seed=0, lr=2e-3)  # another lr, same teacher, same code version
    f = decide(tmp_path)[3]
    assert f["label"] == stats.UNTESTED and "differ in: lr" in f["summary"]


def test_a_teacher_of_another_recipe_is_not_pooled_and_retrained_weights_are_refused(tmp_path):
    write_line(tmp_path, trend_line(3.0))
    write_run(tmp_path, 99.0, T=8.0, seed=0, teacher_lr=5e-3, folder="-lr")  # the same name, another recipe
    assert "differ in: the teacher's recipe" in decide(tmp_path)[3]["summary"]
    write_run(tmp_path, 99.0, T=8.0, seed=1, folder="-again")  # the same recipe and seed, other weights
    with pytest.raises(table.AnalysisError, match="two runs of one configuration and seed"):
        table.load_table(tmp_path)


def test_runs_of_another_data_key_are_their_own_cell_and_the_expected_run_is_missing(tmp_path):
    sizes = {"target_train_per_class": 20}
    write_line(tmp_path, trend_line(3.0), seeds=(0, 1), synth=sizes)
    write_line(tmp_path, trend_line(3.0), seeds=(2,), synth={"target_train_per_class": 10})
    run = dict(dataset="synth-fine", teacher="synth-fine-ft4-t2", student="test_resnet", student_init="random",
               method="kd", signal="teacher", k=None, opt="adamw", bs=64, epochs=128, seed=2, synth=sizes)  # fmt: skip
    expected = [dict(run, T=T) for T in TEMPS]
    f = decide(tmp_path, expected)[3]
    assert f["units"] == 2 and len(table.load_table(tmp_path)[0]) == 15
    assert sum("expected but not finished" in n for n in f["notes"]) == 5


# ---------------------------------------------------------------------------------------------
# Which T and the report


def test_which_t_finds_a_planted_best_T_and_the_temperatures_within_noise(tmp_path):
    write_line(tmp_path, {1.0: 70.0, 2.0: 74.0, 4.0: 74.1, 8.0: 72.0, 40.0: 60.0})
    (w,) = report.which_t(table.load_table(tmp_path)[0])
    assert w["best_T"] == 4.0 and w["within_noise"] == [2.0, 4.0] and w["means"][40.0] == pytest.approx(60.0)


def test_the_report_opens_with_the_answer_and_writes_every_file(lab):
    out = subprocess.run([sys.executable, "-m", "analysis.report", str(lab)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = (lab / "REPORT.md").read_text()
    head = text.split("## Findings")[0].strip().splitlines()
    assert len(head) <= 17 and head[0].startswith("# Report") and "T = 8" in head[3]  # title, blank, 15 lines
    assert "- 1. present, at least m" in text.split("## Findings")[0]
    found = json.loads((lab / "findings.json").read_text())
    assert [f["id"] for f in found] == list(range(1, 18))
    assert "\n".join(report.summary_table(found)) in text
    assert json.loads((lab / "which_t.json").read_text())[0]["best_T"] == 8.0
    assert (lab / "results.csv").is_file() and (lab / "figures" / "fig2-3_budgets.png").is_file()


def test_the_figures_draw_the_planted_means_in_their_panels(lab, tmp_path, monkeypatch):
    """One file per figure the lab's runs allow (one method, one dataset: no Figs. 1 and 6-7); each panel draws one
    line per setting at its planted means over the seeds, labels-only students as a level (T None)."""
    drawn, draw = {}, figures.curves
    monkeypatch.setattr(figures, "curves", lambda ax, ls, title: drawn.update({title: ls}) or draw(ax, ls, title))
    made = figures.make_all(table.load_table(lab)[0], tmp_path)
    assert sorted(Path(p).name for p in made) == ["fig2-3_budgets.png", "fig4_sorted_softmax.png",
        "fig5_controls.png", "table1_teachers.md", "table1_teachers.png", "table2_inits.png"]  # fmt: skip
    panel = lambda *words: {label: {T: pytest.approx(sum(s.values()) / 6) for T, s in line.items()} for label, line
                            in next(v for t, v in drawn.items() if all(w in t for w in words)).items()}  # fmt: skip
    brief, controls = trend_line(3.0), {8.0: 66.0, 40.0: 66.0}
    assert panel("ft4 ->", "adamw bs64") == {"128 ep": {**brief, None: 60.0}}  # Figs. 2-3
    assert panel("ft4 ->", "sgd bs64") == {"128 ep": trend_line(0.02), "16 ep": trend_line(-4.0)}
    assert panel("ft4 ->", "adamw 128 ep") == {"teacher": brief, **dict.fromkeys(kd.SIGNALS[1:], controls)}  # Fig. 5
    assert panel("synth-fine ·  ->") == {"synth-fine-ft4": brief, "synth-fine-ft32": trend_line(0.0, 68.0),
                                         "synth-fine-scratch": trend_line(-2.0)}  # Table 1  # fmt: skip


def test_replicates_are_analysed_alone_and_side_by_side(tmp_path):
    write_line(tmp_path, trend_line(3.0), seeds=range(6))
    write_labels(tmp_path, 60.0, seeds=range(6))
    expected = [dict(dataset="synth-fine", teacher=None, seed=s, replicate=s // 3, T=None) for s in range(6)]
    (tmp_path / "manifest").mkdir()
    (tmp_path / "manifest" / "expected.json").write_text(json.dumps(expected))
    report.write_report(tmp_path)
    reps = json.loads((tmp_path / "replicates.json").read_text())
    assert sorted(reps) == ["0", "1"] and reps["0"][0]["units"] == 3
    assert "Labels agree for 2 of 2 findings" in (tmp_path / "REPORT.md").read_text()


def test_the_report_does_not_import_torch():
    code = "import sys, analysis.report; print(sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr
