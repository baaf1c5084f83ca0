"""The teacher-logit tape: recorded once, replayed by any later run with the same data stream,
bit-identical to running the teacher, extended by a longer run; refused for another setup."""

import re

import distill
from helpers import distill_args, results_in


def test_replayed_runs_equal_runs_that_ran_the_teacher(teacher, tmp_path, capsys):
    tape = tmp_path / "tape"
    assert distill.main(distill_args(teacher, tmp_path / "rec", "--T", "2", "--teacher-tape", str(tape))) == 0
    assert "0 steps replayed" in capsys.readouterr().err
    assert sorted(p.name for p in tape.iterdir()) == ["epoch-0001.pt", "epoch-0002.pt", "eval-logits.pt", "key.json"]
    # another temperature and optimizer, and a shorter budget (a prefix of the tape): all replayed
    for extra in (["--T", "4", "1"], ["--T", "4", "--opt", "sgd"], ["--T", "4", "--epochs", "1"]):
        assert distill.main(distill_args(teacher, tmp_path / "replay", *extra, "--teacher-tape", str(tape))) == 0
        assert " 0 computed" in capsys.readouterr().err
        assert distill.main(distill_args(teacher, tmp_path / "plain", *extra)) == 0
    replay, plain = results_in(tmp_path / "replay"), results_in(tmp_path / "plain")
    assert sorted(replay) == sorted(plain) and len(plain) == 4
    for name in plain:
        assert replay[name]["final"] == {**plain[name]["final"], "img_per_s": replay[name]["final"]["img_per_s"]}
        assert [r["train_loss"] for r in replay[name]["curve"]] == [r["train_loss"] for r in plain[name]["curve"]]


def test_a_longer_run_replays_the_recorded_epochs_and_records_the_rest(teacher, tmp_path, capsys):
    tape = tmp_path / "tape"
    assert (
        distill.main(
            distill_args(teacher, tmp_path / "short", "--T", "2", "--epochs", "1", "--teacher-tape", str(tape))
        )
        == 0
    )
    assert sorted(p.name for p in tape.iterdir()) == ["epoch-0001.pt", "eval-logits.pt", "key.json"]
    capsys.readouterr()
    assert distill.main(distill_args(teacher, tmp_path / "long", "--T", "2", "--teacher-tape", str(tape))) == 0
    replayed, computed = re.search(r"(\d+) steps replayed, (\d+) computed", capsys.readouterr().err).groups()
    assert (replayed, computed) == ("3", "3")  # epoch 1 from the tape, epoch 2 from the teacher: 36 images / bs 12
    assert sorted(p.name for p in tape.iterdir()) == ["epoch-0001.pt", "epoch-0002.pt", "eval-logits.pt", "key.json"]
    assert distill.main(distill_args(teacher, tmp_path / "plain", "--T", "2")) == 0
    (long,), (plain,) = results_in(tmp_path / "long").values(), results_in(tmp_path / "plain").values()
    assert [r["train_loss"] for r in long["curve"]] == [r["train_loss"] for r in plain["curve"]]
    assert long["final"] == {**plain["final"], "img_per_s": long["final"]["img_per_s"]}


def test_the_tape_measures_the_teacher_once(teacher, tmp_path, monkeypatch):
    """The teacher's logits on the test and train images (its accuracy, agreement, statistics) are kept in the
    tape folder: a later run with the tape does not run the teacher over them again, and gets the same numbers.
    A damaged file is measured again."""
    tape = tmp_path / "tape"
    assert distill.main(distill_args(teacher, tmp_path / "a", "--T", "2", "--teacher-tape", str(tape))) == 0
    teacher_predictions = []
    real_predict = distill.models.predict
    monkeypatch.setattr(
        distill.models, "predict", lambda *a, **k: teacher_predictions.append(1) or real_predict(*a, **k)
    )
    assert distill.main(distill_args(teacher, tmp_path / "b", "--T", "4", "--teacher-tape", str(tape))) == 0
    assert teacher_predictions == []
    (a,), (b,) = results_in(tmp_path / "a").values(), results_in(tmp_path / "b").values()
    assert (
        a["teacher"]["top1"] == b["teacher"]["top1"]
        and a["teacher"]["wrong_class_mass"] == b["teacher"]["wrong_class_mass"]
    )
    (tape / "eval-logits.pt").write_bytes(b"truncated")
    assert distill.main(distill_args(teacher, tmp_path / "c", "--T", "8", "--teacher-tape", str(tape))) == 0
    assert len(teacher_predictions) == 2  # test and train images, measured again
    (c,) = results_in(tmp_path / "c").values()
    assert c["teacher"]["top1"] == a["teacher"]["top1"]
