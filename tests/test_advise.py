"""The temperature advisor reads a teacher checkpoint, measures its entropies across T and cites
the paper's finding that matches its origination."""

from analysis import advise
from helpers import TINY, main_error


def synth_flags():
    return TINY[1 : TINY.index("--data-root")]


def test_advice_for_a_briefly_fine_tuned_teacher(teacher, capsys):
    assert advise.main(["--teacher", str(teacher), "--synth", *synth_flags(), "--T", "1", "4", "40"]) == 0
    out = capsys.readouterr().out
    assert "H_rel^-max" in out and "pretrained" in out and "not a guarantee" in out
    rows = [ln.split() for ln in out.splitlines() if ln.strip() and ln.split()[0] in ("1", "4", "40")]
    h_rel = [float(r[1]) for r in rows]
    assert len(rows) == 3 and h_rel == sorted(h_rel)  # a softer softmax at higher T


def test_rules_cite_the_paper():
    stats = [{"T": 1, "H_rel": 0.1, "H_rel_without_max": 0.95}]
    scratch = advise.advice({"from_scratch": True}, stats, novel_classes=False)
    assert "T = 1" in scratch[0] and "Table 1" in scratch[0]
    uniform_tail = advise.advice({"from_scratch": False, "pretrained": "timm:x", "target_epochs": 40}, stats, False)
    assert "label smoothing" in uniform_tail[0] and "Fig. 5" in uniform_tail[0]
    structured = [{"T": 1, "H_rel": 0.3, "H_rel_without_max": 0.6}]
    brief = advise.advice({"from_scratch": False, "pretrained": "timm:x", "target_epochs": 5}, structured, True)
    assert "10-40" in brief[0] and any("Figs. 6-7" in s for s in brief)


def test_bad_teacher_is_one_line(tmp_path, capsys):
    assert "does not exist" in main_error(advise.main, ["--teacher", str(tmp_path / "missing.pt")], capsys)
