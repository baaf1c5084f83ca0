"""The study on a user's own image folder: the built-in data exported as PNG files reads back as the same pixels in
the same order, so distilling through the folder gives the built-in run's numbers; a dataset's identity is its
content, so a teacher pretrained on one folder and fine-tuned on another is recorded as pretrained and fine-tuned."""

import json

import torch

import data
import distill
import models
import train_teacher
from helpers import FAST, TINY, distill_args, results_in, write_image_folder

SIZES = {k: int(v) for k, v in (s.split("=") for s in TINY[1 : TINY.index("--data-root")])}  # the tiny built-in data
SYNTH_AUG = ["--crop-pct", "1", "--randaug-n", "1", "--randaug-m", "5"]  # the built-in data's evaluation, RandAugment


def test_export_writes_the_same_pixels_in_the_same_order(tmp_path):
    summary = data.export_imagefolder("synth-fine", tmp_path / "folder", SIZES)
    assert summary["classes"] == 3 and not list(tmp_path.glob(".folder.tmp*"))
    for split in ("train", "test"):
        built_in = data.load_split("synth-fine", split, "unused", synth=SIZES)
        folder = data.load_split("imagefolder", split, tmp_path / "folder", image_size=32, crop_pct=1.0)
        assert torch.equal(folder.images, built_in.images) and torch.equal(folder.labels, built_in.labels)
        assert [c.split("_", 1)[1] for c in folder.classes] == [c.replace("/", "_") for c in built_in.classes]
        assert folder.fingerprint is not None and built_in.fingerprint is None
    err = None
    try:
        data.export_imagefolder("synth-fine", tmp_path / "folder")  # not empty: refused, nothing touched
    except data.DatasetError as e:
        err = str(e)
    assert "not empty" in err and (tmp_path / "folder" / "export.json").is_file()


def test_distilling_through_the_exported_folder_gives_the_built_in_numbers(teacher, tmp_path, capsys):
    """Same uint8 pixels, same order, the built-in data's augmentation: the same batches, the same students."""
    data.export_imagefolder("synth-fine", tmp_path / "folder", SIZES)
    sweep = ["--T", "1", "4", "--baseline", "--epochs", "2"]
    assert distill.main(distill_args(teacher, tmp_path / "builtin", *sweep)) == 0
    folder = ["--dataset", "imagefolder", "--data-root", str(tmp_path / "folder"), "--image-size", "32", *SYNTH_AUG]
    args = [*folder, "--teacher", str(teacher), "--student", "test_resnet", "--out", str(tmp_path / "folder-runs"),
            "--allow-weak-teacher", *FAST, *sweep]  # fmt: skip
    capsys.readouterr()
    assert distill.main(args) == 0
    err = capsys.readouterr().err
    assert "runs at its default" not in err  # --image-size was given: no note about a default it does not use
    a, b = results_in(tmp_path / "builtin"), results_in(tmp_path / "folder-runs")
    assert len(a) == len(b) == 3
    for T in (1.0, 4.0, None):
        ra = next(r for r in a.values() if r["T"] == T)
        rb = next(r for r in b.values() if r["T"] == T)
        assert [r["train_loss"] for r in ra["curve"]] == [r["train_loss"] for r in rb["curve"]]
        assert ra["final"]["top1"] == rb["final"]["top1"]
        assert rb["config"]["dataset"] == "imagefolder" and rb["config"]["data_sha1"]


def test_a_teacher_pretrained_on_one_folder_and_fine_tuned_on_another_is_pretrained_and_fine_tuned(tmp_path):
    """Both folders load as 'imagefolder': the old comparison of loader names called the fine-tuned teacher
    'trained from scratch' (origination continued from its pretraining). Its data's content tells them apart."""
    write_image_folder(tmp_path / "source", ["a", "b", "c", "d"], 6, seed=0)
    write_image_folder(tmp_path / "target", ["x", "y", "z"], 6, seed=1)
    common = ["--dataset", "imagefolder", "--arch", "test_resnet", "--image-size", "16", *FAST]
    src, ft = tmp_path / "src.pt", tmp_path / "ft.pt"
    assert (
        train_teacher.main([*common, "--data-root", str(tmp_path / "source"), "--epochs", "1", "--out", str(src)]) == 0
    )
    argv = [*common, "--data-root", str(tmp_path / "target"), "--init", str(src), "--epochs", "2", "--out", str(ft)]
    assert train_teacher.main(argv) == 0
    origination = models.load_checkpoint(ft)["origination"]
    assert origination["from_scratch"] is False and origination["target_epochs"] == 2
    assert origination["pretrained"] == "imagefolder" and origination["parent_dataset"] == "imagefolder"
    # the same folder again continues the origination (a longer fine-tuning of the same data)
    longer = tmp_path / "ft-more.pt"
    argv = [*common, "--data-root", str(tmp_path / "target"), "--init", str(ft), "--epochs", "1", "--out", str(longer)]
    assert train_teacher.main(argv) == 0
    assert models.load_checkpoint(longer)["origination"]["target_epochs"] == 3
    result = json.loads((tmp_path / "ft.run" / "result.json").read_text())
    assert result["config"]["data_sha1"] != models.load_checkpoint(src)["args"]["data_sha1"]


def test_grayscale_rgba_palette_and_mixed_size_images_train_as_rgb(teacher, tmp_path):
    """A user's folder mixes modes and sizes: every image is read as RGB, resized to the stored short side, and
    centre-cropped square for training and evaluation; distillation runs on it."""
    import numpy as np
    from PIL import Image

    folder = write_image_folder(tmp_path / "mixed", ["a", "b", "c"], 3, size=20)
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (24, 40), dtype=np.uint8), mode="L").save(folder / "train" / "a" / "gray.png")
    rgba = rng.integers(0, 256, (30, 18, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(folder / "train" / "b" / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).convert("P").save(
        folder / "test" / "c" / "p.png"
    )
    train = data.load_split("imagefolder", "train", folder, image_size=16)  # stored short side round(16 / 0.875) = 18
    assert isinstance(train.images, list) and {im.shape[0] for im in train.images} == {3}
    assert {min(im.shape[1:]) for im in train.images} == {18} and all(im.dtype == torch.uint8 for im in train.images)
    args = ["--dataset", "imagefolder", "--data-root", str(folder), "--image-size", "16", "--teacher", str(teacher),
            "--student", "test_resnet", "--out", str(tmp_path / "runs"), "--allow-weak-teacher", *FAST, "--bs", "6",
            "--epochs", "1", "--T", "2"]  # fmt: skip
    assert distill.main(args) == 0
    (result,) = results_in(tmp_path / "runs").values()
    assert result["status"] == "ok" and result["config"]["aug"]["image_size"] == 16


def test_a_read_only_data_root_caches_in_cache_dir_and_the_second_run_reuses_it(tmp_path, capsys):
    """--cache-dir: the decoded images are cached there, never in the (read-only) data root; a second command reads
    the cache instead of decoding again. Without the flag the cache sits beside the results (.data-cache)."""
    root = write_image_folder(tmp_path / "folder", ["finch", "wren"], 6, size=12)
    folders = [root, *(p for p in root.rglob("*") if p.is_dir())]
    args = ["--dataset", "imagefolder", "--data-root", str(root), "--arch", "test_resnet", "--image-size", "16"]
    args += ["--epochs", "1", *FAST]
    for folder in folders:
        folder.chmod(0o555)
    try:
        errs = []
        for out, cache in (
            ("t1.pt", ["--cache-dir", str(tmp_path / "cache")]),
            ("t2.pt", ["--cache-dir", str(tmp_path / "cache")]),
            ("teachers/t3.pt", []),
        ):
            assert train_teacher.main([*args, *cache, "--out", str(tmp_path / out)]) == 0
            errs.append(capsys.readouterr().err)
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert "decoding" in errs[0] and "decoding" not in errs[1] and "could not write cache" not in errs[0], errs
    assert len(list((tmp_path / "cache").glob("imagefolder-*.pt"))) == 2 and not (root / ".cache").exists()
    assert "decoding" in errs[2] and len(list((tmp_path / ".data-cache").glob("imagefolder-*.pt"))) == 2
