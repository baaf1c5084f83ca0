"""The temperature advisor: it measures a teacher's entropies across T, names the paper's situation, says what the
lab measured for it (a lab's findings.json) and phrases its recommendation from the lab's label, then prints the
study command."""

import json

import pytest

from analysis import advise, stats
from helpers import TINY

SYNTH = TINY[1 : TINY.index("--data-root")]


def finding(id, label, estimate=0.5, low=-0.5, high=1.5):
    """One object of findings.json (the keys advise.py reads)."""
    return dict(id=id, claim=f"Claim {id}.", label=label, estimate=estimate, low=low, high=high, scope="one lab")


LAB = {3: finding(3, stats.PRESENT, 2.0, 1.2, 2.8), 4: finding(4, stats.OPPOSITE, -1.5, -2.5, -0.5),
       6: finding(6, stats.UNDECIDED), 12: finding(12, stats.OPPOSITE), 13: finding(13, stats.ABSENT, 0.1, -0.4, 0.6),
       14: finding(14, stats.PRESENT), 17: finding(17, stats.UNDECIDED)}  # fmt: skip


@pytest.mark.parametrize(
    "origination, tail, novel, expected",
    [({"from_scratch": True}, 0.5, False, "scratch"), ({"from_scratch": False}, 0.95, False, "uniform"),
     ({"from_scratch": False}, 0.5, False, "brief"), ({"from_scratch": True}, 0.5, True, "novel")],
)  # fmt: skip
def test_the_situation_comes_from_origination_tail_and_novel_classes(origination, tail, novel, expected):
    assert advise.situation_of(origination, {"H_rel_without_max": tail}, novel) == expected


def test_the_range_is_the_papers_only_where_the_lab_agrees_or_could_not_decide():
    assert advise.recommendation("brief", "adamw", LAB) == "5 < T <= 40, the paper's range; the lab agrees (finding 3)"
    assert advise.recommendation("brief", "sgd", LAB) == "measure: the lab found the opposite (finding 4)"
    assert advise.recommendation("uniform", "adamw", LAB) == "measure: the lab found no effect of 1 point (finding 13)"
    assert advise.recommendation("novel", "sgd", LAB).startswith("T <= 5, the paper's range; the lab could not decide")
    assert advise.recommendation("novel", "sgd", None) == "T <= 5, the paper's range; not measured by the lab"


def test_advice_for_a_teacher_with_the_labs_findings(teacher, tmp_path, capsys):
    (tmp_path / "f.json").write_text(json.dumps(list(LAB.values())))
    assert advise.main(["--teacher", str(teacher), "--synth", *SYNTH, "--findings", str(tmp_path / "f.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [ln.split() for ln in out if ln.strip() and ln.split()[0] in ("1", "2", "4", "8", "40")]
    h_rel = [float(r[1]) for r in rows]
    assert len(rows) == 5 and h_rel == sorted(h_rel)  # a softer softmax at higher T
    assert rows[0][:3] == ["1", "0.985", "0.980"]  # the tiny teacher's logits are small: a nearly uniform tail
    assert any(ln.startswith("Situation: a nearly uniform tail, as after long fine-tuning (pretrained;") for ln in out)
    ids = [int(ln.split()[4]) for ln in out if ln.startswith("- the lab: finding")]
    assert ids == [12, 13] and "- AdamW: measure: the lab found no effect of 1 point (finding 13)" in out
    assert out[-1] == f"  bash run_all.sh study --dataset synth-fine --teacher {teacher} --synth " + " ".join(SYNTH)
