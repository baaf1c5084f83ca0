"""The temperature advisor: it measures a teacher's entropies across T, names the paper's situation, says what the
lab measured for it (a lab's findings.json) and phrases its recommendation from the lab's label, ends with the
study command and its estimated time; --validate sets it beside a lab's measured best T."""

import json

import timm
import torch
from test_findings import line3

import grid
import models
from analysis import advise, stats
from helpers import TINY, main_error

P, OP, A, U = stats.PRESENT, stats.OPPOSITE, stats.ABSENT, stats.UNDECIDED


def synth_flags():
    return TINY[1 : TINY.index("--data-root")]


def finding(id, label, estimate, low, high, size="", budgets=()):
    """One object of findings.json (the keys advise.py reads), the Holm-adjusted interval (low, high)."""
    return dict(id=id, claim=f"Claim {id}.", source="Sect. 4", statistic=f"statistic {id}", primary=f"setting {id}",
                estimate=estimate, low=low, high=high, low_adj=low, high_adj=high, margin=1.0, label=label, size=size,
                budgets=list(budgets), missing="", summary="")  # fmt: skip


CROSSOVER_BUDGETS = [dict(epochs=16, steps=112, trend=-5.8), dict(epochs=128, steps=896, trend=-1.1)]
LAB = {
    3: finding(3, P, 0.65, 0.30, 1.00, stats.BELOW),
    4: finding(4, OP, -1.09, -1.84, -0.36),
    5: finding(5, P, 2.19, 1.41, 3.73),
    6: finding(6, OP, -1.1, -1.9, -0.3, budgets=CROSSOVER_BUDGETS),
    12: finding(12, OP, -3.48, -3.77, -3.18, stats.AT_LEAST),
    13: finding(13, A, 0.1, -0.5, 0.7),
    14: finding(14, P, 1.75, 1.28, 2.24),
    17: finding(17, U, -0.52, -1.71, 0.69),
}


def write_findings(path, lab=LAB):
    path.write_text(json.dumps(list(lab.values())))
    return path


def stats_at_1(tail):
    return [{"T": 1.0, "H_rel": 0.5, "H_rel_without_max": tail}, {"T": 4.0, "H_rel": 0.9, "H_rel_without_max": 0.99}]


# ---------------------------------------------------------------------------------------------
# The situations and the recommendation from the lab's label


def test_the_situation_comes_from_origination_and_tail():
    pretrained = {"from_scratch": False, "pretrained": "synth-src", "target_epochs": 4}
    assert advise.situations_of({"from_scratch": True}, stats_at_1(0.5), False) == [advise.SCRATCH]
    assert advise.situations_of(pretrained, stats_at_1(0.95), False) == [advise.UNIFORM]
    assert advise.situations_of(pretrained, stats_at_1(0.79), True) == [advise.BRIEF, advise.NOVEL]
    findings_tested = [s.findings for s in (advise.SCRATCH, advise.UNIFORM, advise.BRIEF, advise.NOVEL)]
    assert findings_tested == [(14,), (12, 13), (3, 4, 6, 5), (17,)]
    assert advise.BRIEF.decides == {"adamw": (3, advise.LARGE), "sgd": (4, advise.LARGE)}


def test_the_range_is_the_papers_only_where_the_lab_agrees_or_could_not_decide():
    def decided(situations, lab=LAB):
        return {o: (r.T_range, r.finding, r.label) for o, r in advise.recommendations(situations, lab).items()}

    assert decided([advise.BRIEF]) == {"adamw": (advise.LARGE, 3, P), "sgd": (None, 4, OP)}
    assert decided([advise.UNIFORM]) == {"adamw": (None, 13, A), "sgd": (None, 13, A)}  # no effect of m: measure
    assert decided([advise.SCRATCH])["sgd"] == (advise.SMALL, 14, P)
    assert decided([advise.BRIEF, advise.NOVEL])["adamw"] == (advise.SMALL, 17, U)  # novel decides; undecided keeps it
    assert decided([advise.BRIEF], lab=None) == {"adamw": (advise.LARGE, 3, None), "sgd": (advise.LARGE, 4, None)}
    assert decided([advise.BRIEF], lab={3: finding(3, stats.UNTESTED, None, None, None)})["adamw"][0] == advise.LARGE
    phrases = {label: advise.lab_words(LAB[i]) for label, i in ((P, 3), (OP, 4), (A, 13), (U, 17))}
    assert phrases == {
        P: "the lab agrees",
        OP: "the lab found the opposite",
        A: "the lab found no effect of 1 point",
        U: "the lab could not decide",
    }
    assert (advise.range_text(advise.SMALL), advise.range_text(advise.LARGE)) == ("T <= 2", "5 < T <= 40")


def test_the_sgd_line_says_the_lab_found_small_T_ahead_and_recommends_measuring():
    lines = advise.advice_lines([advise.BRIEF], LAB, {})
    sgd = next(ln for ln in lines if ln.startswith("- SGD: "))
    assert sgd == (
        "- SGD: measure: the lab found the opposite (finding 4): T <= 5 ahead of T above 5 (SGD): "
        "statistic 4 = -1.09 points (Holm-adjusted -1.84 to -0.36)"
    )
    adamw = next(ln for ln in lines if ln.startswith("- AdamW: "))
    assert adamw == "- AdamW: 5 < T <= 40, the paper's range; the lab agrees (finding 3)"
    lab_lines = [ln for ln in lines if ln.startswith("- the lab: finding")]
    assert [int(ln.split()[4]) for ln in lab_lines] == [3, 4, 6, 5]
    assert lab_lines[2].endswith("large minus small T at 16 epochs = 112 steps: -5.80, 128 epochs = 896 steps: -1.10")


# ---------------------------------------------------------------------------------------------
# The command line


def run_advisor(teacher, capsys, monkeypatch, *extra):
    """advise.main on the fixture's teacher with a fake study estimate; (stdout lines, stderr lines, options)."""
    seen = {}

    def fake_estimate(options):
        seen.update(options)
        return 57, 3420.0

    monkeypatch.setattr(advise, "study_estimate", fake_estimate)
    capsys.readouterr()
    assert advise.main(["--teacher", str(teacher), "--synth", *synth_flags(), "--T", "1", "4", "40", *extra]) == 0
    captured = capsys.readouterr()
    return captured.out.splitlines(), captured.err.strip().splitlines(), seen


def test_advice_for_a_pretrained_teacher_with_the_labs_findings(teacher, tmp_path, capsys, monkeypatch):
    lab = write_findings(tmp_path / "findings.json")
    out, err, options = run_advisor(teacher, capsys, monkeypatch, "--findings", str(lab))
    rows = [ln.split() for ln in out if ln.strip() and ln.split()[0] in ("1", "4", "40")]
    h_rel, tail = [float(r[1]) for r in rows], float(rows[0][2])
    assert len(rows) == 3 and h_rel == sorted(h_rel)  # a softer softmax at higher T
    situation = advise.UNIFORM if tail >= advise.UNIFORM_TAIL else advise.BRIEF
    expected = advise.recommendations([situation], LAB)
    assert [ln for ln in out if ln.startswith("- AdamW: ")] == [f"- AdamW: {expected['adamw'].text}"]
    assert [int(ln.split()[4]) for ln in out if ln.startswith("- the lab: finding")] == list(situation.findings)
    ckpt = models.load_checkpoint(teacher)
    size = models.trained_image_size(ckpt)
    workers = f"{options['jobs']} cpu worker" + "s" * (options["jobs"] != 1)
    assert out[-2] == f"Measure T for this teacher: 57 runs, about 57 min on {workers}:"
    command = ["bash", "run_all.sh", "study", "--dataset", "synth-fine", "--synth", *synth_flags()]
    command += ["--teacher", str(teacher), "--student", grid.study_student("synth-fine"), "--image-size", str(size)]
    assert out[-1] == "  " + " ".join(command)
    assert (options["dataset"], options["teacher"], options["student"], options["image_size"]) == (
        "synth-fine",
        str(teacher),
        grid.study_student("synth-fine"),
        size,
    )
    assert (options["synth"], options["budgets"], options["seeds"], options["device"]) == (
        synth_flags(),
        None,
        None,
        torch.device("cpu"),
    )
    assert not err


def test_the_study_command_for_an_image_folder_and_its_estimate(monkeypatch):
    options = dict(dataset="imagefolder", data_root="/data/birds", teacher="t.pt", student="resnet18", image_size=None,
                   synth=[], budgets=None, seeds=None, device=torch.device("cpu"), jobs=2)  # fmt: skip
    command = "  bash run_all.sh study --dataset imagefolder --data-root /data/birds --teacher t.pt --student resnet18"

    def refuse(**options):
        raise ValueError("--data-root: no test split")

    monkeypatch.setattr(advise.grid, "estimate_study_seconds", refuse, raising=False)
    assert advise.study_lines(options) == ["Measure T for this teacher (--data-root: no test split):", command]
    monkeypatch.setattr(advise, "study_estimate", lambda o: (126, 5400.0))
    assert advise.study_lines(dict(options, image_size=64)) == [
        "Measure T for this teacher: 126 runs, about 1.5 h on 2 cpu workers:",
        command + " --image-size 64",
    ]


def test_without_the_default_findings_the_paper_only_in_one_note(teacher, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(advise, "DEFAULT_FINDINGS", tmp_path / "lab-findings.json")
    out, err, _ = run_advisor(teacher, capsys, monkeypatch, "--novel-classes")
    assert err == [f"advise.py: note: no lab findings at {tmp_path / 'lab-findings.json'}: the paper's statements "
                   f"only, each {advise.NOT_MEASURED}"]  # fmt: skip
    recommended = [ln for ln in out if ln.startswith(("- AdamW: ", "- SGD: "))]
    assert recommended == [f"- {o}: T <= 2, the paper's range; {advise.NOT_MEASURED}" for o in ("AdamW", "SGD")]
    assert [ln for ln in out if ln.startswith("- the lab: ")] == [f"- the lab: {advise.NOT_MEASURED}"] * 2


def test_bad_input_is_one_line(tmp_path, capsys):
    teacher = ["--teacher", str(tmp_path / "missing.pt")]
    assert "does not exist" in main_error(advise.main, teacher, capsys)
    assert "--teacher: required" in main_error(advise.main, [], capsys)
    assert "cannot read" in main_error(advise.main, [*teacher, "--findings", str(tmp_path / "none.json")], capsys)
    (tmp_path / "bad.json").write_text("[{")
    assert "not valid JSON" in main_error(advise.main, [*teacher, "--findings", str(tmp_path / "bad.json")], capsys)
    (tmp_path / "dict.json").write_text('{"id": 3}')
    assert "not a findings.json" in main_error(
        advise.main, [*teacher, "--findings", str(tmp_path / "dict.json")], capsys
    )
    assert "not a folder" in main_error(advise.main, ["--validate", str(tmp_path / "no-results")], capsys)


# ---------------------------------------------------------------------------------------------
# --validate: the advisor against a lab's measured best T


def save_teacher(path, from_scratch, target_epochs):
    """A real (tiny) checkpoint with the origination the advisor reads."""
    origination = {
        "init": "random" if from_scratch else "pretrained/src.pt",
        "pretrained": None if from_scratch else "synth-src",
        "from_scratch": from_scratch,
        "epochs_trained": target_epochs,
        "target_epochs": target_epochs,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    models.save_checkpoint(path, timm.create_model("test_resnet", num_classes=3), arch="test_resnet",
                           classes=["a", "b", "c"], dataset="synth-fine", origination=origination, args={},
                           code_version="test")  # fmt: skip


def test_validation_table_agrees_and_misses(tmp_path, capsys):
    brief, scratch = dict(teacher="synth-fine-ft4", teacher_epochs=4), dict(teacher="synth-fine-scratch", scratch=True)
    Ts = (1.0, 2.0, 4.0, 8.0, 16.0, 40.0)
    line3(tmp_path, dict(zip(Ts, (70.0, 70.5, 71.0, 71.5, 74.0, 73.8))), epochs=128, **brief)  # best 16: 16, 40
    line3(tmp_path, dict(zip(Ts, (74.0, 74.2, 72.0, 71.0, 70.0, 69.0))), opt="sgd", epochs=128, **brief)  # 2: 1, 2
    line3(tmp_path, dict(zip(Ts, (72.0, 72.0, 72.0, 72.0, 72.0, 72.0))), opt="sgd", epochs=16, **brief)  # shorter
    line3(tmp_path, {1.0: 66.0, 2.0: 65.8, 8.0: 63.0, 16.0: 62.0}, epochs=128, **scratch)  # best 1: 1, 2
    line3(tmp_path, {1.0: 60.0, 2.0: 60.5, 8.0: 64.0, 16.0: 64.2}, opt="sgd", epochs=128, **scratch)  # 16: 8, 16
    save_teacher(tmp_path / "teachers" / "synth-fine-ft4.pt", False, 4)
    save_teacher(tmp_path / "teachers" / "synth-fine-scratch.pt", True, 0)
    save_teacher(tmp_path / "teachers" / "never-distilled.pt", False, 4)
    write_findings(tmp_path / "findings.json")  # the lab's own findings: used without --findings
    capsys.readouterr()
    assert advise.main(["--validate", str(tmp_path)]) == 0
    table = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("|")]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in table[2:]]
    assert [r[0] for r in rows] == ["synth-fine-ft4", "synth-fine-scratch"]
    ft4, scr = rows
    assert ft4[2:] == [
        "5 < T <= 40 (finding 3: present)",
        "16 (16, 40) at 128 ep",
        "agrees",
        "measure (finding 4: opposite)",
        "2 (1, 2) at 128 ep",
        "–",
    ]
    assert scr[2:] == [
        "T <= 2 (finding 14: present)",
        "1 (1, 2) at 128 ep",
        "agrees",
        "T <= 2 (finding 14: present)",
        "16 (8, 16) at 128 ep",
        "misses",
    ]
    assert ft4[1].startswith(advise.BRIEF.name) and scr[1].startswith(advise.SCRATCH.name)
