"""bench.py at toy size: its sections run and report what they measure (the numbers themselves are
measured by hand, see docs/PERFORMANCE.md)."""

import json

import numpy as np
import pytest
import torch

import bench
from helpers import intra_op_threads

SIZES = ["target_train_per_class=3", "test_per_class=1"]  # 72 images: one batch of 64


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    flags = ["--dataset", "synth-fine", "--synth", *SIZES, "--arch", "test_resnet", "--epochs", "1", "--device", "cpu"]
    teacher = bench.make_teacher(tmp_path_factory.mktemp("teacher") / "t.pt", *flags)
    return bench.checkpoint_setup(teacher, "test_resnet", 1, 16, torch.device("cpu"))


def test_levers_report_student_throughput(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "LEVERS", {k: v for k, v in bench.LEVERS.items() if "compile" not in k})
    with intra_op_threads(2):
        out = bench.section_levers(setup, [1, 4], tmp_path)["levers_student_img_s"]
    results = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("lever*/T1/result.json"))]
    assert out == dict(zip(bench.LEVERS, [2 * r["curve"][-1]["img_per_s"] for r in results]))  # 2 students, last epoch
    levers = [r["levers"] for r in results]  # each sweep ran with its own lever
    assert [lv["channels_last"] for lv in levers] == [bool(v.get("channels_last")) for v in bench.LEVERS.values()]
    assert [lv["batched"] for lv in levers] == [bool(v.get("batched")) for v in bench.LEVERS.values()]


def test_the_lab_step_times_the_same_runs_with_the_old_and_the_new_defaults(tmp_path, capsys):
    """The lab step runs one lab command, alone and two at once: the same run ids (the levers are not part of a run's
    identity), the old defaults without channels_last and measuring the teacher again, the new ones with both."""
    tiny = ["groups=2", "classes_per_group=3", "fine_groups=1", "novel_groups=1", "novel_classes_per_group=3",
            "src_train_per_class=4", "target_train_per_class=24", "test_per_class=4"]  # fmt: skip
    with intra_op_threads(1):
        out = bench.section_lab_step(tmp_path, 1, torch.device("cpu"), synth=tiny)
    printed = capsys.readouterr().out
    for key in ("step", "pair"):  # the printed ratio is old / new
        assert f"{out[f'lab_{key}_old_s'] / out[f'lab_{key}_new_s']:.2f}x" in printed
    ids = []
    for name in ("old", "new"):  # alone and two at once: every command trained the same 7 runs, with its levers
        for folder in (f"lab-step-{name}/runs0", f"lab-pair-{name}/runs0", f"lab-pair-{name}/runs1"):
            paths = sorted((tmp_path / folder).glob("*/result.json"))
            ids.append([p.parent.name for p in paths])
            assert {json.loads(p.read_text())["levers"]["channels_last"] for p in paths} == {name == "new"}
    assert all(i == ids[0] for i in ids) and len(ids[0]) == 7
    assert (tmp_path / "lab-tape" / "eval-logits.pt").is_file()


def test_image_folder_path_holds_the_same_images_as_png_files(setup, tmp_path):
    out = bench.section_images(setup.train, 16, tmp_path)
    assert sorted(out) == ["images_png_decode_img_s", "images_png_stream_img_s", "images_synth_generate_img_s",
                           "images_synth_stream_img_s"]  # fmt: skip
    png = sorted((tmp_path / "png" / "train").glob("*/*.png"))
    assert len(png) == len(setup.train)
    for p in png:  # PNG is lossless: the real-image path reads the same pixels
        assert torch.equal(
            torch.from_numpy(np.array(bench.Image.open(p))).permute(2, 0, 1), setup.train.images[int(p.stem)]
        )


def test_parity_verdicts():
    top1 = {"float32": {1.0: [70.0, 71.0, 72.0]}, "bf16": {1.0: [71.5, 70.5, 71.2]}, "worse": {1.0: [60.0, 61.0, 62.0]}}
    assert bench.parity_verdicts(top1) == {"float32": "reference", "bf16": "parity: kept", "worse": "NO parity"}


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
