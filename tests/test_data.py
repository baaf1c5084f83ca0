"""data.py: real on-disk formats fabricated in tmp_path, the deterministic stream, MixUp/CutMix, few-shot."""

import hashlib
import json
import pickle
import re
import sys
import types

import numpy as np
import pytest
import scipy.io as sio
import torch
from PIL import Image
from torchvision.transforms import v2

import cli
import data
from helpers import TINY


def random_image(h, w, seed):
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def save_image(image, path):
    """Write a uint8 (3,H,W) tensor as an image file; the format follows the suffix."""
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)


def toy_split(n=24, size=16, num_classes=4):
    """An in-memory split: n random uint8 images (3,size,size), labels cycling over the classes."""
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return data.Split(images, torch.arange(n) % num_classes, [f"c{k}" for k in range(num_classes)])


def assert_same_batches(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ----------------------------------------------------------------------------- fabricated datasets


def make_cifar100(root, n_train=6, n_test=3):
    """cifar-100-python/{train,test,meta} pickles in torchvision's format; returns the train pixels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pixels = {}
    for split, n in (("train", n_train), ("test", n_test)):
        pixels[split] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        entry = {
            "data": pixels[split],
            "fine_labels": [i % 3 for i in range(n)],
            "coarse_labels": [0] * n,
            "filenames": [f"img{i}.png" for i in range(n)],
            "batch_label": split,
        }
        (folder / split).write_bytes(pickle.dumps(entry))
    (folder / "meta").write_bytes(
        pickle.dumps({"fine_label_names": ["apple", "bee", "cloud"], "coarse_label_names": ["things"]})
    )
    return pixels["train"]


def make_pets(root):
    """oxford-iiit-pet/images/*.jpg + annotations/{trainval,test}.txt: 2 breeds, 3 + 2 images each."""
    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    lines = {"trainval": [], "test": []}
    for class_id, breed, species in ((1, "Abyssinian", 1), (2, "american_bulldog", 2)):
        for i in range(5):
            image_id = f"{breed}_{i + 1}"
            save_image(random_image(20 + 4 * i, 30, seed=10 * class_id + i), base / "images" / f"{image_id}.jpg")
            lines["trainval" if i < 3 else "test"].append(f"{image_id} {class_id} {species} {i + 1}")
    for split, rows in lines.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return base


def make_tiny_imagenet(root):
    """tiny-imagenet-200 with 2 wnids, 3 train images each, 2 val images each, 8x8 (native size)."""
    base = root / "tiny-imagenet-200"
    wnids = ["n02000002", "n01000001"]
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("n01000001\tgoldfish, Carassius auratus\nn02000002\tdrake\nn09999999\tother\n")
    val_rows = []
    for k, wnid in enumerate(wnids):
        (base / "train" / wnid / "images").mkdir(parents=True)
        for i in range(3):
            save_image(random_image(8, 8, seed=k * 10 + i), base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
        for i in range(2):
            name = f"val_{2 * k + i}.JPEG"
            save_image(random_image(8, 8, seed=100 + 2 * k + i), base / "val" / "images" / name)
            val_rows.append(f"{name}\t{wnid}\t0\t0\t7\t7")
    (base / "val" / "val_annotations.txt").write_text("\n".join(val_rows) + "\n")
    return base


def make_image_folder(root, counts, size=(12, 12)):
    """root/<class>/<i>.png with counts[class] images each."""
    for k, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            save_image(random_image(*size, seed=1000 * k + i), root / name / f"{i:03d}.png")


def make_cars(root):
    """stanford_cars in torchvision's StanfordCars layout: .mat annotations (written with scipy), 2 classes."""
    base = root / "stanford_cars"
    for folder in ("cars_train", "cars_test", "devkit"):
        (base / folder).mkdir(parents=True)
    sio.savemat(
        base / "devkit" / "cars_meta.mat",
        {"class_names": np.array(["AM General Hummer SUV 2000", "Acura RL Sedan 2012"], dtype=object)},
    )
    for split, annotations, n in (
        ("train", base / "devkit" / "cars_train_annos.mat", 4),
        ("test", base / "cars_test_annos_withlabels.mat", 2),
    ):
        records = np.zeros(n, dtype=[("bbox_x1", "O"), ("class", "O"), ("fname", "O")])
        for i in range(n):
            fname = f"{i + 1:05d}.jpg"
            save_image(random_image(18, 24, seed=i), base / f"cars_{split}" / fname)
            records[i] = (0, i % 2 + 1, fname)
        sio.savemat(annotations, {"annotations": records})


def test_cifar100_loads_native_pixels_and_caches(tmp_path):
    pixels = make_cifar100(tmp_path)
    split = data.load_split("cifar100", "train", tmp_path)
    assert split.images.shape == (6, 3, 32, 32) and split.images.dtype == torch.uint8
    assert torch.equal(split.images.flatten(1), torch.from_numpy(pixels))
    assert split.labels.tolist() == [0, 1, 2, 0, 1, 2] and split.labels.dtype == torch.int64
    assert split.classes == ["apple", "bee", "cloud"] and split.class_groups is None
    assert len(data.load_split("cifar100", "test", tmp_path)) == 3

    cache = tmp_path / ".cache" / "cifar100-train-native.pt"
    assert torch.equal(torch.load(cache, weights_only=True)["images"], split.images)
    (tmp_path / "cifar-100-python" / "train").unlink()  # the second load reads only the cache
    again = data.load_split("cifar100", "train", tmp_path)
    assert torch.equal(again.images, split.images) and again.classes == split.classes


def test_pets_resizes_short_side_and_caches(tmp_path):
    base = make_pets(tmp_path)
    train = data.load_split("pets", "train", tmp_path, image_size=14)  # stored short side round(14/0.875) = 16
    assert len(train) == 6 and train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert train.classes == ["Abyssinian", "American Bulldog"]
    assert isinstance(train.images, list)  # varied aspect ratios
    assert [tuple(im.shape) for im in train.images[:3]] == [(3, 16, 24), (3, 16, 20), (3, 16, 17)]
    assert all(im.dtype == torch.uint8 for im in train.images)
    test = data.load_split("pets", "test", tmp_path, image_size=14)
    assert len(test) == 4 and test.labels.tolist() == [0, 0, 1, 1]

    cached = torch.load(tmp_path / ".cache" / "pets-train-16.pt", weights_only=True)
    assert len(cached["images"]) == 6 and cached["classes"] == train.classes
    for jpg in (base / "images").iterdir():
        jpg.unlink()
    again = data.load_split("pets", "train", tmp_path, image_size=14)
    assert all(torch.equal(a, b) for a, b in zip(again.images, train.images))


def test_tiny_imagenet_train_folders_and_val_annotations(tmp_path):
    make_tiny_imagenet(tmp_path)
    train = data.load_split("tiny-imagenet", "train", tmp_path)
    assert train.images.shape == (6, 3, 8, 8)  # native size, one tensor
    assert train.classes == ["goldfish", "drake"]  # sorted wnids, names from words.txt
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    test = data.load_split("tiny-imagenet", "test", tmp_path)
    assert test.labels.tolist() == [1, 1, 0, 0]  # wnid per line of val_annotations.txt


def test_imagefolder_classes_from_train_folder(tmp_path):
    make_image_folder(tmp_path / "train", {"wren": 3, "finch": 2}, size=(10, 14))
    make_image_folder(tmp_path / "test", {"wren": 1, "finch": 2}, size=(10, 14))
    train = data.load_split("imagefolder", "train", tmp_path, image_size=7)  # short side 8
    assert train.classes == ["finch", "wren"] and train.labels.tolist() == [0, 0, 1, 1, 1]
    assert train.images.shape == (5, 3, 8, 11)  # same shapes: stacked
    assert data.load_split("imagefolder", "test", tmp_path, image_size=7).labels.tolist() == [0, 0, 1]

    make_image_folder(tmp_path / "test", {"owl": 1})
    (tmp_path / ".cache").rename(tmp_path / "old-cache")
    with pytest.raises(data.DatasetError, match="owl"):
        data.load_split("imagefolder", "test", tmp_path, image_size=7)


def test_cars_mat_annotations(tmp_path):
    make_cars(tmp_path)
    train = data.load_split("cars", "train", tmp_path, image_size=14)
    assert train.classes == ["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]
    # stored at the short side the evaluation resizes to: 14 / crop_pct 1.0 (Cars is evaluated without a crop)
    assert train.labels.tolist() == [0, 1, 0, 1] and train.images.shape == (4, 3, 14, 18)
    assert data.load_split("cars", "test", tmp_path, image_size=14).labels.tolist() == [0, 1]


def test_cars_without_scipy_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # import scipy.io raises ImportError
    with pytest.raises(data.DatasetError, match="cars.*pip install scipy"):
        data.load_split("cars", "train", tmp_path)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ["pets", "cifar100", "tiny-imagenet", "imagefolder", "cars"])
def test_missing_dataset_names_dataset_path_and_remedy(tmp_path, name):
    with pytest.raises(data.DatasetError, match=f"^{name}: .*{re.escape(str(tmp_path / 'nowhere'))}.*expected[^\n]*$"):
        data.load_split(name, "train", tmp_path / "nowhere")


def test_wrong_layout_names_the_missing_file(tmp_path):
    base = make_tiny_imagenet(tmp_path)
    (base / "val" / "val_annotations.txt").unlink()
    with pytest.raises(data.DatasetError, match="tiny-imagenet: .*val_annotations.txt not found"):
        data.load_split("tiny-imagenet", "test", tmp_path)


def test_truncated_jpeg_names_the_file(tmp_path):
    base = make_pets(tmp_path)
    bad = base / "images" / "american_bulldog_2.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(data.DatasetError, match=f"pets: cannot decode image {bad}"):
        data.load_split("pets", "train", tmp_path, image_size=14)
    assert not (tmp_path / ".cache" / "pets-train-16.pt").exists()


def test_unknown_names_list_the_valid_ones(tmp_path):
    with pytest.raises(data.DatasetError, match="unknown dataset 'imagenet'.*pets, cifar100"):
        data.load_split("imagenet", "train", tmp_path)
    with pytest.raises(data.DatasetError, match="unknown split 'val'"):
        data.load_split("pets", "val", tmp_path)


def test_synth_names_call_make_synth(monkeypatch, tmp_path):
    calls = []

    def make_synth(view, split, **config):
        calls.append((view, split, config))
        return (
            torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
            torch.tensor([0, 1, 2, 3]),
            list("abcd"),
            [0, 0, 1, 1],
            [0, 1, 3, 4],
        )

    monkeypatch.setitem(sys.modules, "synth", types.SimpleNamespace(make_synth=make_synth))
    split = data.load_split("synth-coarse", "test", tmp_path, synth={"seed": 3})
    assert calls == [("coarse", "test", {"seed": 3})]
    assert len(split) == 4 and split.classes == list("abcd") and split.class_groups == [0, 0, 1, 1]
    assert not (tmp_path / ".cache").exists()


# ----------------------------------------------------------------------------- augmentation config


def test_aug_config_for_uses_study_defaults():
    pets = data.aug_config_for("pets")
    assert (pets.image_size, pets.crop, pets.crop_pct, pets.randaug_n, pets.randaug_m) == (224, "rrc", 0.875, 2, 9)
    cifar = data.aug_config_for("cifar100", 64, mixup_alpha=0.0)
    assert (cifar.image_size, cifar.crop, cifar.crop_pct, cifar.mixup_alpha) == (64, "resize", 1.0, 0.0)
    assert data.aug_config_for("synth-src").image_size == 32
    assert json.loads(json.dumps(pets.to_dict())) == pets.to_dict()


# ----------------------------------------------------------------------------- deterministic stream

PLAIN = data.AugConfig(image_size=16, mixup_alpha=0.0, cutmix_alpha=0.0)  # per-sample draws only
FULL = data.AugConfig(image_size=12, crop="rrc")  # + RandomResizedCrop, MixUp|CutMix


def test_stream_is_identical_for_any_number_of_workers():
    split = toy_split()
    serial = list(data.TrainStream(split, FULL, batch_size=8, seed=1, views=2).epoch(0))
    parallel = list(data.TrainStream(split, FULL, batch_size=8, seed=1, views=2, workers=2).epoch(0))
    assert [step for step, _ in serial] == [step for step, _ in parallel] == [0, 1, 2]
    for (_, a), (_, b) in zip(serial, parallel):
        assert_same_batches(a, b)
    assert serial[0][1]["x"].dtype == torch.float32 and serial[0][1]["x2"].shape == (8, 3, 12, 12)


def test_stream_depends_on_seed_and_epoch_and_resumes():
    split = toy_split()
    stream = data.TrainStream(split, FULL, batch_size=8, seed=1)
    epoch0 = list(stream.epoch(0))
    assert not torch.equal(epoch0[0][1]["x"], next(stream.epoch(1))[1]["x"])
    other = data.TrainStream(split, FULL, batch_size=8, seed=2)
    assert not torch.equal(epoch0[0][1]["index"], next(other.epoch(0))[1]["index"])
    resumed = list(stream.epoch(0, start_step=2))
    assert [step for step, _ in resumed] == [2]
    assert_same_batches(resumed[0][1], epoch0[2][1])
    assert_same_batches(epoch0[1][1], data.train_batch(split, FULL, seed=1, epoch=0, step=1, batch_size=8))


def test_order_is_a_permutation_per_epoch_with_drop_last():
    split = toy_split(n=26)
    stream = data.TrainStream(split, PLAIN, batch_size=8, seed=0)
    assert stream.steps_per_epoch == 3
    seen = torch.cat([batch["index"] for _, batch in stream.epoch(0)])
    assert len(seen) == 24 and len(set(seen.tolist())) == 24
    with pytest.raises(ValueError, match="batch size 30"):
        data.TrainStream(split, PLAIN, batch_size=30, seed=0)


def test_each_sample_gets_its_own_draw():
    split = toy_split(n=32)
    flip_only = data.AugConfig(image_size=16, randaug_n=0, mixup_alpha=0.0, cutmix_alpha=0.0)
    batch = data.train_batch(split, flip_only, seed=0, epoch=0, step=0, batch_size=32)
    flipped = [torch.equal(x, split.images[i].flip(-1)) for x, i in zip(batch["x"], batch["index"])]
    kept = [torch.equal(x, split.images[i]) for x, i in zip(batch["x"], batch["index"])]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped) and any(kept)  # one shared draw would flip all or none


def test_sample_draws_depend_on_sample_not_on_batch_position():
    split = toy_split(n=32)
    by_index = {}
    for batch_size in (4, 16):
        for step in range(2):
            batch = data.train_batch(split, PLAIN, seed=5, epoch=0, step=step, batch_size=batch_size)
            for x, i in zip(batch["x"], batch["index"].tolist()):
                assert torch.equal(by_index.setdefault(i, x), x)


def test_second_view_differs_but_shares_labels():
    split = toy_split()
    view0 = data.train_batch(split, FULL, seed=3, epoch=2, step=1, batch_size=8)
    view1 = data.train_batch(split, FULL, seed=3, epoch=2, step=1, batch_size=8, view=1)
    assert not torch.equal(view0["x"], view1["x"])
    for key in ("y", "y_soft", "index"):
        assert torch.equal(view0[key], view1[key])


def test_global_rng_is_untouched():
    split = toy_split()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    data.train_batch(split, FULL, seed=0, epoch=0, step=0, batch_size=8)
    list(data.TrainStream(split, FULL, batch_size=8, seed=0).epoch(0))
    assert torch.equal(torch.get_rng_state(), state)


# ----------------------------------------------------------------------------- batched augmentation


@pytest.mark.parametrize("stored", ["tensor", "list"])
@pytest.mark.parametrize(
    "aug",
    [
        data.AugConfig(image_size=16, crop="resize"),
        data.AugConfig(image_size=16, crop="rrc"),
        data.AugConfig(image_size=20, crop="rrc", randaug_n=3, randaug_m=13, hflip=False),
        data.aug_config_for("pets", 224),
    ],
    ids=["resize", "rrc", "rrc-n3-m13-noflip", "pets-224"],
)
def test_batched_augmentation_equals_per_sample_augmentation(aug, stored):
    """augment_batch (grouped by operation) gives the bytes of the per-sample torchvision transforms."""
    g = torch.Generator().manual_seed(0)
    h, w = (256, 288) if aug.image_size > 100 else (24, 28)  # Pets: stored short side 256, cropped to 224
    images = torch.randint(0, 256, (96, 3, h, w), dtype=torch.uint8, generator=g)
    if stored == "list":
        images = [random_image(h - 2 + i % 5, w - 2 + i % 7, seed=i) for i in range(96)]
    split = data.Split(images, torch.zeros(96, dtype=torch.long), ["c"])
    index = torch.randperm(96, generator=g)[:80]
    for view in (0, 1):
        per_sample = data.augment_samples(split, aug, index, seed=4, epoch=1, view=view)
        draws = data.draw_samples(split, aug, index, seed=4, epoch=1, view=view)
        batched = data.augment_batch(split.images, aug, index, draws)
        assert batched.shape == (80, 3, aug.image_size, aug.image_size) and torch.equal(batched, per_sample)
        # every operation was drawn, so each one's grouped application is covered by the equality
        assert {name for _, _, ops in draws for name, _ in ops} == set(data.RANDAUG_OPS)


def test_batched_augmentation_draws_per_sample_whatever_the_batch():
    split = toy_split(n=32)
    same = data.Split(split.images[:1].expand(32, -1, -1, -1), split.labels, split.classes)

    def augment(index):
        return data.augment_batch(same.images, FULL, index, data.draw_samples(same, FULL, index, seed=0, epoch=0))

    x = augment(torch.arange(32))
    assert len({tuple(im.flatten().tolist()) for im in x}) > 24  # one image, 32 different augmentations
    assert torch.equal(torch.cat([augment(torch.tensor([i])) for i in (7, 3)]), x[[7, 3]])


def test_randaug_table_is_torchvisions():
    space = v2.RandAugment._AUGMENTATION_SPACE  # private, but the facts augment_batch copies
    assert list(data.RANDAUG_OPS) == list(space)
    for name, (bins, signed) in data.RANDAUG_OPS.items():
        theirs, their_signed = space[name]
        assert signed == their_signed
        assert (bins is None and theirs(31, 20, 24) is None) or torch.equal(bins(31, 20, 24), theirs(31, 20, 24))


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_on_a_device_gives_the_worker_batches(workers):
    """Augmenting on a device (its draws made here or in `workers` processes) changes nothing."""
    split = toy_split()
    per_sample = list(data.TrainStream(split, FULL, batch_size=8, seed=1, views=2, workers=1).epoch(1))
    device = data.TrainStream(split, FULL, batch_size=8, seed=1, views=2, workers=workers, device="cpu")
    assert [step for step, _ in device.epoch(1, start_step=1)] == [1, 2]
    for (_, a), (_, b) in zip(per_sample, device.epoch(1)):
        assert_same_batches(a, b)


def test_images_too_large_for_the_device_name_the_flag_and_the_fallback():
    class TooLarge:  # a stored image whose copy to the device runs out of memory
        shape = (3, 30000, 40000)

        def numel(self):
            return 3 * 30000 * 40000

        def to(self, device):
            raise torch.OutOfMemoryError("out of memory")

    split = data.Split([TooLarge()] * 4, torch.zeros(4, dtype=torch.long), ["c"])
    with pytest.raises(data.DatasetError, match=r"--augment-on device: the 14.4 GB .* use --augment-on workers"):
        data.TrainStream(split, FULL, batch_size=2, seed=0, device="cpu")


# ----------------------------------------------------------------------------- MixUp / CutMix


@pytest.mark.parametrize("which", ["mixup", "cutmix"])
def test_mixing_weights_sit_on_the_two_mixed_classes(which):
    split = toy_split(n=8, num_classes=8)  # every sample its own class
    aug = data.AugConfig(
        image_size=16,
        randaug_n=0,
        hflip=False,
        mixup_alpha=1.0 if which == "mixup" else 0.0,
        cutmix_alpha=1.0 if which == "cutmix" else 0.0,
    )
    batch = data.train_batch(split, aug, seed=4, epoch=0, step=0, batch_size=8)
    own, prev = split.labels[batch["index"]], split.labels[batch["index"]].roll(1)  # paired with previous sample
    soft = batch["y_soft"]
    assert soft.shape == (8, 8) and torch.allclose(soft.sum(1), torch.ones(8))
    lam = soft[torch.arange(8), own]
    assert torch.allclose(lam, lam[0].expand(8))  # one draw per batch
    assert torch.allclose(soft[torch.arange(8), prev], 1 - lam)
    assert torch.equal(batch["y"], torch.where(lam >= 0.5, own, prev))

    x, images = batch["x"], split.images[batch["index"]].float() / 255
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    if which == "mixup":
        assert torch.allclose(x, lam[0] * images + (1 - lam[0]) * images.roll(1, 0), atol=1e-6)
    else:
        from_prev = (x != images).any(1)  # pixels pasted from the previous sample
        assert torch.allclose(from_prev.float().mean((1, 2)), 1 - lam, atol=1e-6)


def test_without_mixing_x_stays_uint8_and_labels_one_hot():
    batch = data.train_batch(toy_split(), PLAIN, seed=0, epoch=0, step=0, batch_size=8)
    assert batch["x"].dtype == torch.uint8 and batch["x"].shape == (8, 3, 16, 16)
    assert torch.equal(batch["y_soft"], torch.nn.functional.one_hot(batch["y"], 4).float())


def test_each_batch_chooses_mixup_or_cutmix():
    split = toy_split(n=64, num_classes=64)
    aug = data.AugConfig(image_size=16, randaug_n=0, hflip=False)
    kinds = set()
    for step in range(8):
        batch = data.train_batch(split, aug, seed=0, epoch=0, step=step, batch_size=8)
        images = split.images[batch["index"]].float() / 255
        pasted = ((batch["x"] == images) | (batch["x"] == images.roll(1, 0))).all()
        kinds.add("cutmix" if pasted else "mixup")
    assert kinds == {"mixup", "cutmix"}


# ----------------------------------------------------------------------------- evaluation images


def test_eval_images_resize_then_center_crop():
    images = [random_image(20, 40, 0), random_image(30, 30, 1)]
    split = data.Split(images, torch.tensor([0, 1]), ["a", "b"])
    out = data.eval_images(split, data.AugConfig(image_size=14, crop_pct=0.875))  # resize to 16, crop 14
    assert out.shape == (2, 3, 14, 14) and out.dtype == torch.uint8
    assert torch.equal(out, data.eval_images(split, data.AugConfig(image_size=14, crop_pct=0.875)))
    native = toy_split(size=16)
    assert torch.equal(data.eval_images(native, data.AugConfig(image_size=16, crop_pct=1.0)), native.images)


# ----------------------------------------------------------------------------- few-shot folders


def test_make_fewshot_is_deterministic_and_loadable(tmp_path):
    make_image_folder(tmp_path / "src", {"robin": 6, "jay": 5})
    summary = data.make_fewshot(tmp_path / "src", tmp_path / "a", n_train=3, n_test=2, seed=7)
    assert summary["classes"] == 2 and summary["n_train"] == 3
    data.main(["fewshot", str(tmp_path / "src"), str(tmp_path / "b"), "--n-train", "3", "--n-test", "2", "--seed", "7",
               "--copy"])  # fmt: skip
    picked = {
        d: sorted(p.relative_to(tmp_path / d).as_posix() for p in (tmp_path / d).rglob("*.png")) for d in ("a", "b")
    }
    assert picked["a"] == picked["b"] and len(picked["a"]) == 10
    assert (tmp_path / "a" / picked["a"][0]).is_symlink() and not (tmp_path / "b" / picked["b"][0]).is_symlink()

    train = data.load_split("imagefolder", "train", tmp_path / "a", image_size=7)
    assert train.classes == ["jay", "robin"] and train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(data.load_split("imagefolder", "test", tmp_path / "a", image_size=7)) == 4


@pytest.mark.parametrize("source", ["synth-src", "synth-fine", "synth-coarse", "synth-novel", "export", "fewshot"])
def test_no_image_is_in_both_train_and_test(tmp_path, source):
    """By a hash of the pixels: the built-in data, its export as an image folder, and a few-shot folder picked from
    distinct images hold no image twice, in one split or across train and test."""
    synth = cli.parse_key_values(TINY[1 : TINY.index("--data-root")], "--synth")
    root = tmp_path / "out"
    if source == "fewshot":
        make_image_folder(tmp_path / "src", {"robin": 7, "jay": 6})
        data.make_fewshot(tmp_path / "src", root, n_train=3, n_test=3)
    elif source == "export":
        data.export_imagefolder("synth-fine", root, synth)
    load = lambda split: (
        data.load_split(source, split, "unused", synth=synth)
        if source.startswith("synth")
        else data.load_split("imagefolder", split, root, image_size=12, crop_pct=1.0)
    )
    train, test = (
        [hashlib.sha1(x.contiguous().numpy().tobytes()).digest() for x in load(s).images] for s in ("train", "test")
    )
    assert len(set(train)) == len(train) and len(set(test)) == len(test) and not set(train) & set(test)
    if source == "fewshot":
        assert len(train) == len(test) == 6


def test_a_batchs_draws_reach_the_device_as_one_tensor():
    """batch_parameters packs rows, flips and each RandAugment round's samples grouped by operation in one tensor."""
    split = toy_split(n=32)
    index = torch.randperm(32)[:16]
    draws = data.draw_samples(split, FULL, index, seed=0, epoch=0)
    packed, groups = data.batch_parameters(index, draws, FULL.randaug_n)
    assert packed.shape == (2 + FULL.randaug_n, 16) and packed.dtype == torch.int64
    assert packed[0].tolist() == index.tolist() and packed[1].tolist() == [int(f) for _, f, _ in draws]
    for k, spans in enumerate(groups):
        assert sorted(packed[2 + k].tolist()) == list(range(16))
        for name, magnitude, start, stop in spans:
            assert name != "Identity" and all(draws[j][2][k] == (name, magnitude) for j in packed[2 + k, start:stop])
