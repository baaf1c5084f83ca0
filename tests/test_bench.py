"""bench.py at toy size: its sections run and report what they measure (the numbers themselves are
measured by hand, see docs/PERFORMANCE.md)."""

import json

import numpy as np
import pytest
import torch

import bench
import data
from helpers import intra_op_threads

SIZES = {"target_train_per_class": 3, "test_per_class": 1}  # 72 images: one batch of 64


@pytest.fixture(scope="module")
def tiny():
    train = data.load_split("synth-fine", "train", "unused", synth=SIZES)
    test = data.load_split("synth-fine", "test", "unused", synth=SIZES)
    return train, test, bench.train_teacher_quickly("test_resnet", train, test, 1, torch.device("cpu"))


def test_levers_report_student_throughput(tiny, tmp_path, monkeypatch):
    train, test, teacher = tiny
    monkeypatch.setattr(bench, "LEVERS", {k: v for k, v in bench.LEVERS.items() if "compile" not in k})
    with intra_op_threads(2):
        out = bench.section_levers(train, test, teacher, "test_resnet", [1, 4], 1, 16, torch.device("cpu"), tmp_path)
    assert set(out) == set(bench.LEVERS) and all(v > 0 for v in out.values())
    runs = sorted(tmp_path.glob("lever*/T1/result.json"))
    levers = [json.loads(p.read_text())["levers"] for p in runs]  # each sweep ran with its own lever
    assert [lv["channels_last"] for lv in levers] == [bool(v.get("channels_last")) for v in bench.LEVERS.values()]
    assert [lv["batched"] for lv in levers] == [bool(v.get("batched")) for v in bench.LEVERS.values()]


def test_the_lab_step_times_the_same_runs_with_the_old_and_the_new_defaults(tmp_path):
    """The lab step runs one lab command twice: the same run ids (the levers are not part of a run's identity), the
    old defaults without channels_last and measuring the teacher again, the new ones with both; the ratio is theirs."""
    tiny = ["groups=2", "classes_per_group=3", "fine_groups=1", "novel_groups=1", "novel_classes_per_group=3",
            "src_train_per_class=4", "target_train_per_class=24", "test_per_class=4"]  # fmt: skip
    with intra_op_threads(1):
        out = bench.section_lab_step(tmp_path, 1, torch.device("cpu"), synth=tiny)
    assert out["lab_step_ratio"] == out["lab_step_old_s"] / out["lab_step_new_s"]
    assert out["lab_pair_ratio"] == out["lab_pair_old_s"] / out["lab_pair_new_s"]
    for variant in ("old", "new"):  # two at once: both commands trained the same runs
        pair = [
            sorted(p.parent.name for p in (tmp_path / f"lab-pair-{variant}").glob(f"runs{k}/*/result.json"))
            for k in (0, 1)
        ]
        assert pair[0] == pair[1] and len(pair[0]) == 7
    old, new = (sorted(tmp_path.glob(f"lab-{name}/*/result.json")) for name in ("old", "new"))
    assert [p.parent.name for p in old] == [p.parent.name for p in new] and len(new) == 7
    assert {json.loads(p.read_text())["levers"]["channels_last"] for p in old} == {False}
    assert {json.loads(p.read_text())["levers"]["channels_last"] for p in new} == {True}
    assert (tmp_path / "lab-tape" / "eval-logits.pt").is_file()


def test_image_folder_path_holds_the_same_images_as_png_files(tiny, tmp_path):
    train, _, _ = tiny
    out = bench.section_images(train, 16, tmp_path)
    assert all(v > 0 for v in out.values())
    png = sorted((tmp_path / "imagefolder" / "train").glob("*/*.png"))
    assert len(png) == len(train)
    first = torch.from_numpy(np.array(bench.Image.open(png[0]))).permute(2, 0, 1)
    assert torch.equal(first, train.images[0])  # PNG is lossless: the real-image path reads the same pixels


def test_parity_verdicts(capsys):
    bench.print_parity(
        {"float32": {1.0: [70.0, 71.0, 72.0]}, "bf16": {1.0: [71.5, 70.5, 71.2]}, "worse": {1.0: [60.0, 61.0, 62.0]}}
    )
    out = capsys.readouterr().out.splitlines()
    assert "reference" in out[0] and "parity: kept" in out[1] and "NO parity" in out[2]


def test_the_gpu_check_runs_at_tiny_sizes_on_the_cpu(capsys):
    """bench.py --gpu (at toy sizes without CUDA): every lever and method runs, each part passes, exit 0."""
    with intra_op_threads(1), pytest.raises(SystemExit) as exit_:
        bench.main(["--gpu", "--tiny", "--device", "cpu"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "GPU check: all parts passed" in out, out
    for name in ("--batched", "device augmentation", "worker augmentation", "tape replay", "mlkd", "signal bottomk"):
        assert f"  {name}" in out and "exit 0" in out.split(f"  {name}")[1].splitlines()[0]
    assert "student img/s" in out and "pixels differ" in out


def test_a_float32_head_shrinks_the_kd_gradient_error_of_bf16_logits():
    """The measurement behind models.Float32Linear (docs/PERFORMANCE.md): at every T the float32 head's error is
    below bf16 logits', by about 2x late in training (small gaps)."""
    errors = bench.bf16_kd_error(gaps=(0.1,))
    assert all(head < bf16 / 1.3 for bf16, head in errors.values()), errors
