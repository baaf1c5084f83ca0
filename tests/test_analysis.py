"""analysis/: result.json files -> results.csv, figures, tables and REPORT.md.

The fixture fabricates a small results folder with known numbers (no training): a briefly fine-tuned
teacher whose students peak at T=20, a from-scratch teacher peaking at T=1, a long fine-tuned one
that is flat, SGD with a cross-over, controls, initializations and three datasets; plus broken files.
"""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from analysis import aggregate, figures, findings, stats, tables

REPO = Path(__file__).resolve().parent.parent
TEMPS = (1.0, 4.0, 20.0)
SQRT2 = math.sqrt(2.0)


def sorted_softmax(T, logits=(8.0, 4.0, 3.0, 2.0, 1.0, 0.0)):
    exps = [math.exp(ln / T) for ln in logits]
    return [e / sum(exps) for e in exps]


def write_run(
    root,
    top1,
    *,
    T=4.0,
    seed=0,
    dataset="synth-fine",
    data_id=None,
    teacher="synth-fine-ft1",
    teacher_epochs=1,
    scratch=False,
    h_rel=(0.5, 0.8),
    student_init="random",
    method="kd",
    signal="teacher",
    k=None,
    opt="adamw",
    bs=64,
    epochs=10,
    status="ok",
    curve=None,
    synth=None,
    softmax=None,
    steps_per_epoch=None,
    code_version="abc123",
    suffix="",
    **config_extra,
):
    """Write one distillation result.json the way distill.py does (only the keys analysis reads);
    method="labels" writes a labels-only student (distill.py --baseline: no teacher, no T). `synth`: the
    built-in data's sizes (a data key each); `softmax`: the teacher's mean sorted softmax at its T;
    `suffix`: a second folder of the same configuration; `config_extra`: more configuration keys."""
    config = {
        "kind": "distill",
        "dataset": dataset,
        "data_id": data_id,
        "synth": synth,
        "teacher_arch": "resnet18d",
        "student": "resnet10t",
        "student_init": student_init,
        "method": method,
        "signal": signal,
        "k": k,
        "opt": opt,
        "bs": bs,
        "epochs": epochs,
        "seed": seed,
        "T": T,
        **config_extra,
    }
    final = {"epoch": epochs, "top1": top1, "top5": 99.0, "agreement": top1 + 5} if status == "ok" else None
    student = (
        {"init": student_init, "from_scratch": student_init == "random"}
        if student_init in ("random", "in1k")
        else {
            "init": f"students/resnet10t-{student_init}.pt",
            "from_scratch": student_init == "TT",
            "target_epochs": 0 if student_init == "pretrained" else 4,
        }
    )
    stats_T = 1.0 if T is None else T
    sizes = "" if synth is None else "-" + "-".join(f"{v}" for v in synth.values())
    name = f"{dataset}-{teacher}-{method}-{signal}{k or ''}-{student_init}-{opt}-bs{bs}-e{epochs}-T{T}-s{seed}"
    name += sizes + suffix
    result = {
        "status": status,
        "reason": None if status == "ok" else "loss is nan at epoch 3",
        "run_id": name,
        "kind": "distill",
        "config": config,
        "final": final,
        "best": final,
        "code_version": code_version,
        "device": "cpu (x86_64, 2 threads)",
        "versions": {"torch": "2.5.1"},
        "seed": seed,
        "num_classes": 6,
        "T": T,
        "student_origination": student,
        "teacher": {
            "path": f"teachers/{teacher}.pt",
            "arch": "resnet18d",
            "top1": 90.0,
            "dataset": dataset,
            "origination": {
                "init": "random" if scratch else "teachers/synth-src.pt",
                "from_scratch": scratch,
                "target_epochs": teacher_epochs,
            },
            "statistics": {
                "T": stats_T,
                "H_rel": h_rel[0],
                "H_rel_without_max": h_rel[1],
                "mean_sorted_softmax": softmax or sorted_softmax(stats_T),
            },
        },
    }
    if method == "labels":
        result["teacher"], result["T"], config["T"], config["signal"] = None, None, None, None
        config.pop("teacher_arch")
    result["curve"] = curve or ([final] if final else [])
    if steps_per_epoch is not None:
        result["steps_per_epoch"] = steps_per_epoch
    folder = Path(root) / dataset / name
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(result))


def write_curve(root, accuracy_by_T, seeds=1, **setting):
    """Runs at each T; with two seeds the accuracies are a-1 and a+1 (mean a, std sqrt(2)); with three,
    a-d, a, a+d with d = 0.2, 0.3, 0.4 at the first, second, third T (seed effects plus some noise)."""
    for i, (T, acc) in enumerate(accuracy_by_T.items()):
        offsets = {1: [0.0], 2: [-1.0, 1.0], 3: [-(0.2 + 0.1 * i), 0.0, 0.2 + 0.1 * i]}[seeds]
        for seed, offset in enumerate(offsets):
            write_run(root, acc + offset, T=T, seed=seed, **setting)


def curve(*values):
    return dict(zip(TEMPS, values))


def fabricate(root):
    """The synthetic study; every number below is what the checks should find."""
    write_curve(root, curve(70, 75, 80), seeds=2)  # baseline: peaks at T=20
    write_run(root, None, T=4.0, seed=2, status="failed")  # one failed seed
    write_curve(root, curve(84, 85, 83), method="dkd")  # DKD beats KD
    write_run(root, 78.0, T=None, method="ctkd")  # learned T
    write_curve(root, curve(74, 75, 76), epochs=5)  # AdamW: flat
    write_curve(root, curve(70, 65, 60), opt="sgd", epochs=5)  # SGD short: small T wins
    write_curve(root, curve(65, 72, 78), opt="sgd", epochs=10)  # SGD long: large T wins
    write_curve(root, curve(72, 70, 66), signal="smooth-global")
    write_curve(root, curve(70, 73, 77), signal="bottomk", k=2)
    write_curve(root, curve(74, 74.5, 74), teacher="synth-fine-ft8", teacher_epochs=8, h_rel=(0.2, 0.95))
    write_curve(
        root, curve(72, 68, 65), teacher="synth-fine-scratch", teacher_epochs=10, scratch=True, h_rel=(0.3, 0.9)
    )
    write_curve(root, curve(85, 86, 86.5), student_init="FT")
    write_curve(root, curve(80, 82, 82), dataset="synth-coarse", teacher="synth-coarse-ft1")
    write_curve(root, curve(78, 74, 70), dataset="synth-novel", teacher="synth-novel-ft1")
    teacher_run = Path(root) / "teachers" / "synth-fine-ft1.run"
    teacher_run.mkdir(parents=True)
    (teacher_run / "result.json").write_text(
        json.dumps(
            {
                "status": "ok",
                "kind": "train",
                "checkpoint": "teachers/synth-fine-ft1.pt",
                "config": {"arch": "resnet18d"},
                "final": {"top1": 90.0},
                "origination": {"init": "teachers/synth-src.pt"},
            }
        )
    )


def write_broken_files(root):
    bad = {
        "truncated": '{"status": "ok", "kind": "dis',
        "empty": "",
        "foreign": '{"hello": "world"}',
        "list": "[1, 2, 3]",
    }
    for name, text in bad.items():
        (Path(root) / "broken" / name).mkdir(parents=True)
        (Path(root) / "broken" / name / "result.json").write_text(text)
    (Path(root) / "broken" / "binary").mkdir()
    (Path(root) / "broken" / "binary" / "result.json").write_bytes(b"\xff\xfe\x00garbage")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    fabricate(root)
    write_broken_files(root)
    return root


@pytest.fixture(scope="module")
def rows(results):
    records, _ = aggregate.load_results(results)
    return aggregate.distill_rows(records)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------
# aggregate


def test_loader_reports_bad_files_and_keeps_good_ones(results):
    records, problems = aggregate.load_results(results)
    reasons = {Path(path).parent.name: reason for path, reason in problems}
    assert set(reasons) == {"truncated", "empty", "foreign", "list", "binary"}
    assert "truncated" in reasons["truncated"] and reasons["empty"] == "empty file"
    assert "missing keys" in reasons["foreign"] and "list" in reasons["list"]
    assert sum(r["kind"] == "train" for r in records) == 1
    assert len(aggregate.distill_rows(records)) == 41


def test_student_inits_are_told_apart_by_their_origination(teacher):
    """A checkpoint never trained on the target (general pretraining) is not a fine-tuned (FT) one."""
    import models

    src = teacher.parent / "src.pt"  # the fixture's synth-src pretraining of the synth-fine teacher

    def kind(init):
        data = models.load_checkpoint(teacher)["args"]  # the synth-fine data the teacher was fine-tuned on
        _, origination = models.create_model("test_resnet", 3, init=str(init), data=data)
        return aggregate.student_init_kind({"student_origination": origination, "config": {}})

    assert (kind(src), kind(teacher), kind("random")) == ("pretrained", "FT", "random")


def test_flatten_names_teacher_and_student_init(rows):
    ft = next(r for r in rows if r["student_init"] == "FT")
    assert (
        ft["teacher"] == "synth-fine-ft1" and ft["teacher_target_epochs"] == 1 and ft["teacher_from_scratch"] is False
    )
    scratch = next(r for r in rows if r["teacher"] == "synth-fine-scratch")
    assert scratch["teacher_from_scratch"] is True and scratch["H_rel"] == 0.3
    assert next(r for r in rows if r["method"] == "ctkd")["T"] is None
    methods = findings.by_id(findings.evaluate(rows, draws=2000), 2)
    assert any("ctkd learned T 78.00" in e for e in methods["evidence"])  # not "labels only"


def test_flatten_keys_each_run_by_its_id_and_its_data(rows):
    """A run's id and its data key (sizes, augmentation, image folder) are columns: runs of other data sizes
    are never averaged with these."""
    assert len({r["run_id"] for r in rows}) == len(rows)
    assert {r["data_key"] for r in rows} == {aggregate.data_key({"synth": None, "aug": None, "data_id": None})}
    fine = aggregate.data_key({"dataset": "synth-fine", "synth": {"test_per_class": 300}, "aug": {"hflip": True}})
    novel = aggregate.data_key({"dataset": "synth-novel", "synth": {"test_per_class": 300}, "aug": {"hflip": True}})
    smaller = aggregate.data_key({"dataset": "synth-fine", "synth": {"test_per_class": 100}, "aug": {"hflip": True}})
    assert fine == novel != smaller and len(fine) == 8
    assert "data_key" in aggregate.CONFIG_COLUMNS


def test_aggregate_csv_has_exact_means_and_counts_failures(results, tmp_path):
    out = tmp_path / "results.csv"
    assert aggregate.main([str(results), "--out", str(out)]) == 0
    table = read_csv(out)
    assert list(table[0]) == aggregate.AGGREGATE_COLUMNS

    def baseline(T):
        return next(
            r
            for r in table
            if r["teacher"] == "synth-fine-ft1"
            and r["method"] == "kd"
            and r["signal"] == "teacher"
            and r["student_init"] == "random"
            and r["opt"] == "adamw"
            and r["epochs"] == "10"
            and r["dataset"] == "synth-fine"
            and float(r["T"]) == T
        )

    at20 = baseline(20.0)
    assert float(at20["top1_mean"]) == 80.0 and math.isclose(float(at20["top1_std"]), SQRT2)
    assert at20["top1_n"] == "2" and at20["n_failed"] == "0" and float(at20["agreement_mean"]) == 85.0
    at4 = baseline(4.0)
    assert at4["top1_n"] == "2" and at4["n_failed"] == "1" and float(at4["top1_mean"]) == 75.0
    one_seed = next(r for r in table if r["method"] == "dkd" and float(r["T"]) == 4.0)
    assert float(one_seed["top1_std"]) == 0.0 and one_seed["top1_n"] == "1"


def test_aggregate_of_nothing_is_empty():
    assert aggregate.aggregate([]) == []
    assert aggregate.mean_std_n([]) == (None, None, 0)


# ---------------------------------------------------------------------------------------------
# figures and tables


@pytest.fixture(scope="module")
def made(rows, tmp_path_factory):
    return figures.make_all(rows, tmp_path_factory.mktemp("figures"))


def test_every_artifact_writes_non_empty_files(made):
    for name, result in made.items():
        assert result["files"], f"{name}: {result['missing']}"
        for path in result["files"]:
            assert Path(path).stat().st_size > 0
    assert made["Fig. 4 (teachers' sorted softmax)"]["key_numbers"]


def test_artifacts_name_what_is_missing(made):
    assert "smooth-instance" in made["Fig. 5 (controls vs T)"]["missing"]
    assert "TT" in made["Table 2 (student initialization)"]["missing"]
    assert "cars" in made["Fig. 6 (dataset granularity)"]["missing"]
    assert "Birds" in made["Fig. 7 (overlapping vs novel classes)"]["missing"]
    assert made["Table 1 (teacher origination)"]["missing"] == ""


def test_every_artifact_survives_empty_and_partial_input(rows, tmp_path):
    for name, make in figures.ARTIFACTS.items():
        result = make([], tmp_path)
        assert result["files"] == [] and result["missing"], name
    only_kd = [r for r in rows if r["method"] == "kd" and r["signal"] == "teacher"]
    assert figures.fig1_methods(only_kd, tmp_path)["files"] == []
    assert figures.fig5_controls(only_kd, tmp_path)["files"] == []


def test_table1_marks_best_T_per_teacher(made):
    md = Path(made["Table 1 (teacher origination)"]["files"][0]).read_text()
    lines = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| synth-fine")}
    assert "**80.00 ± 1.41**" in lines["synth-fine-ft1"] and lines["synth-fine-ft1"].endswith("| 20 |")
    assert "**74.50**" in lines["synth-fine-ft8"] and lines["synth-fine-ft8"].endswith("| 4 |")
    assert "**72.00**" in lines["synth-fine-scratch"] and "| scratch |" in lines["synth-fine-scratch"]
    assert "| 0.300 | 0.900 | T=1 |" in lines["synth-fine-scratch"]


def test_table2_marks_best_T_per_initialization(rows, tmp_path):
    result = tables.table2_student_init(rows, tmp_path)
    md = Path(result["files"][0]).read_text()
    assert "| FT | 85.00 | 86.00 | **86.50** | 20 |" in md
    assert "| random | 70.00 ± 1.41 | 75.00 ± 1.41 | **80.00 ± 1.41** | 20 |" in md


# ---------------------------------------------------------------------------------------------
# findings and the report


def fabricate_three_seeds(root):
    """The same study with three seeds everywhere and labels-only students: every finding decidable."""
    for epochs, acc in ((10, curve(70, 75, 80)), (5, curve(74, 75, 76))):
        write_curve(root, acc, seeds=3, epochs=epochs)
    write_curve(root, curve(84, 85, 83), seeds=3, method="dkd")
    write_curve(root, curve(70, 65, 60), seeds=3, opt="sgd", epochs=5)
    write_curve(root, curve(65, 72, 78), seeds=3, opt="sgd", epochs=10)
    write_curve(root, curve(72, 70, 66), seeds=3, signal="smooth-global")
    write_curve(root, curve(70, 73, 77), seeds=3, signal="bottomk", k=2)
    write_curve(root, curve(70, 71, 70), seeds=3, teacher="synth-fine-ft8", teacher_epochs=8, h_rel=(0.2, 0.95))
    write_curve(root, curve(72, 68, 65), seeds=3, teacher="synth-fine-scratch", teacher_epochs=10, scratch=True)
    write_curve(root, curve(85, 86, 86.5), seeds=3, student_init="FT")
    write_curve(root, curve(80, 82, 82), seeds=3, dataset="synth-coarse", teacher="synth-coarse-ft1")
    write_curve(root, curve(78, 74, 70), seeds=3, dataset="synth-novel", teacher="synth-novel-ft1")
    for seed, acc in enumerate((59.5, 60.0, 60.7)):
        write_run(root, acc, T=None, seed=seed, method="labels", signal=None)


@pytest.fixture(scope="module")
def rows3(tmp_path_factory):
    root = tmp_path_factory.mktemp("three-seeds")
    fabricate_three_seeds(root)
    records, problems = aggregate.load_results(root)
    assert not problems
    return aggregate.distill_rows(records)


def test_findings_labels(rows3):
    """Every finding the three-seed study can decide, looked up by id (never by its claim's words)."""
    decided = findings.evaluate(rows3)
    labels = {f["id"]: f["label"] for f in decided}
    P, U = stats.PRESENT, stats.UNTESTED
    assert labels == {1: P, 2: U, 3: P, 4: P, 5: P, 6: P, 7: U, 8: U, 9: P, 10: P, 11: P, 12: P, 13: P, 14: P, 15: P,
                      16: P, 17: P}  # fmt: skip
    assert findings.by_id(decided, 2)["missing"] == "one setting: consistency needs two or more"  # DKD, one setting
    assert findings.by_id(decided, 7)["missing"] == "SGD runs at one batch size only (64)"
    assert findings.by_id(decided, 8)["missing"] == "no teacher statistics at T >= 40"  # these runs stop at T=20
    robust = findings.by_id(decided, 5)
    assert [s["setting"].split(" · ")[2] for s in robust["secondary"]] == ["bs64 5 ep"]  # the other budget
    kd = findings.by_id(decided, 1)  # the briefly fine-tuned teacher at 10 epochs, AdamW, against labels alone
    assert kd["seeds"] == 3 and math.isclose(kd["estimate"], 75.0 - (59.5 + 60.0 + 60.7) / 3)
    assert len(kd["secondary"]) == 2 and kd["settings_agree"] is True  # the long and the from-scratch teacher
    budgets = findings.by_id(decided, 6)["budgets"]
    assert [(b["epochs"], b["steps"]) for b in budgets] == [(5, None), (10, None)]  # no steps_per_epoch recorded
    assert [b["trend"] for b in budgets] == pytest.approx([-10.0, 13.0])


def test_interval_of_a_difference_is_the_paired_t_interval():
    scipy_stats = pytest.importorskip("scipy.stats")
    values = {"a": {0: 70.0, 1: 71.0, 2: 69.5}, "b": {0: 68.0, 1: 69.2, 2: 67.9}}
    estimate, low, high, sigma, seeds = stats.interval(values, lambda m: m["a"] - m["b"])
    d = [values["a"][s] - values["b"][s] for s in range(3)]
    half = scipy_stats.t.ppf(0.975, 2) * statistics_std(d) / math.sqrt(3)
    assert seeds == [0, 1, 2] and math.isclose(estimate, sum(d) / 3)
    assert math.isclose(low, estimate - half, rel_tol=0.02) and math.isclose(high, estimate + half, rel_tol=0.02)


def statistics_std(xs):
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def test_report_cli_writes_csv_figures_and_findings(results):
    run = subprocess.run([sys.executable, "analysis/report.py", str(results)], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = (results / "REPORT.md").read_text()
    assert (results / "results.csv").is_file()
    assert "![Fig. 1 (KD methods vs T)](figures/fig1_methods.png)" in report
    assert (results / "figures" / "fig1_methods.png").stat().st_size > 0
    assert "| **80.00 ± 1.41** |" in report  # Table 1 inlined
    decided = json.loads((results / "findings.json").read_text())
    assert [f["id"] for f in decided] == list(range(1, 18))
    assert findings.by_id(decided, 7)["label"] == stats.UNTESTED
    assert "## Findings" in report and "## Integrity" in report
    assert "## Power and convergence" in report and "## Teachers and students on labels alone" in report
    assert "loss is nan at epoch 3" in report and "broken/truncated/result.json" in report
    assert "torch: 2.5.1 (41 runs)" in report


def test_the_report_does_not_import_torch():
    """analysis/report.py reads result files only: no torch import (1.5 s per report here); the method order it
    spells out is kd.METHODS's."""
    code = "import sys; import analysis.report; print(sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
    import kd

    assert list(kd.METHODS) == figures.METHODS


def test_power_section_reads_seed_spread_and_last_quarter_movement(tmp_path):
    from analysis import report

    for seed, (final, mid) in enumerate(((72.0, 70.0), (73.0, 71.0), (74.0, 72.0))):
        curve = [{"epoch": 2, "top1": 40.0}, {"epoch": 8, "top1": mid}, {"epoch": 10, "top1": final}]
        write_run(tmp_path, final, T=4.0, seed=seed, curve=curve)
    rows = aggregate.distill_rows(aggregate.load_results(tmp_path)[0])
    text = "\n".join(report.power_section(rows))
    assert "seed std of top-1: mean 1.00, max 1.00 points" in text  # 72, 73, 74
    assert "last-quarter movement: mean 2.00, max 2.00 points" in text  # mean curve 71 at 8 ep, 73 at 10


def test_largest_temperature_effect_is_relative_to_the_seed_spread(rows3):
    key, a, b, diff, spread, cells = findings.largest_T_effect(rows3)
    # SGD 10 ep: 65, 72, 78 at T = 1, 4, 20 with seed offsets +-0.2, +-0.3, +-0.4: T=1 -> T=4 is +7 with a
    # paired seed std of 0.1 (70x), ahead of T=1 -> T=20 (+13, std 0.2: 65x)
    assert (key["opt"], key["epochs"], a, b) == ("sgd", 10, 1.0, 4.0) and diff == pytest.approx(7.0)
    assert spread == pytest.approx(0.1) and cells == pytest.approx(0.3)
