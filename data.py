"""Datasets and the deterministic training stream: the only file that knows images and labels.

Images stay uint8 in memory; normalisation belongs to the model that consumes them. Every random
draw is a pure function of (seed, epoch, sample index or step), never of the global RNG or of the
number of loader workers, so resumes, lockstep students and teacher tapes see identical batches.

    python data.py fewshot SRC OUT [--n-train 30 --n-test 20 --seed 0 --copy]
    python data.py export synth-fine OUT [--synth KEY=VALUE ...]     # the built-in data as a PNG image folder
"""

import argparse
import functools
import hashlib
import json
import math
import os
import pickle
import shutil
import signal
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets.folder import IMG_EXTENSIONS, DatasetFolder, find_classes
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from runs import atomic_torch_save, atomic_write

# ----------------------------------------------------------------------------- datasets

CACHE_VERSION = 3  # bumped when the cached tensors change meaning: older caches are decoded again
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"

# crop: the training crop ("rrc": RandomResizedCrop, "resize": short side + center crop); crop_pct: the evaluation's
# center crop; native: stored at the files' own size, else at the short side the evaluation resizes to.
# The built-in data uses a lighter RandAugment than the study's (2, 9): its coarse cue is colour, which
# Solarize/Posterize at magnitude 9 destroy, and its 32 px images leave little to crop or shear.
_SYNTH = dict(crop="resize", image_size=32, crop_pct=1.0, native=True, randaug_n=1, randaug_m=5)
DATASETS = {
    "pets": dict(crop="rrc", image_size=224, crop_pct=0.875, native=False),
    "cifar100": dict(crop="resize", image_size=224, crop_pct=1.0, native=True),
    "cars": dict(crop="resize", image_size=224, crop_pct=1.0, native=False),
    "tiny-imagenet": dict(crop="resize", image_size=224, crop_pct=1.0, native=True),
    "imagefolder": dict(crop="resize", image_size=224, crop_pct=0.875, native=False),
    **{f"synth-{view}": _SYNTH for view in ("src", "fine", "coarse", "novel")},
}
HOW_TO_GET = {  # how a user obtains each dataset's files
    "pets": "pass download=True (--download) or see https://www.robots.ox.ac.uk/~vgg/data/pets/",
    "cifar100": "pass download=True (--download) or see https://www.cs.toronto.edu/~kriz/cifar.html",
    "cars": "its URL is gone: get a copy (e.g. a Kaggle mirror) in torchvision's StanfordCars layout",
    "tiny-imagenet": f"pass download=True (--download) or extract {TINY_IMAGENET_URL} there",
    "imagefolder": "arrange class folders yourself or with `python data.py fewshot SRC OUT`",
}


class DatasetError(ValueError):
    """A dataset is missing, malformed or unreadable; the message says where and how to fix it."""


@dataclass
class Split:
    images: "torch.Tensor | list[torch.Tensor]"  # uint8 (N,3,H,W), or N tensors (3,H_i,W_i)
    labels: torch.Tensor  # int64 (N,)
    classes: list[str]  # class names, index = label
    class_groups: "list[int] | None" = None  # coarse group of each class (synth data only)
    class_sources: "list[int] | None" = None  # pretraining (synth-src) class of each class (synth only)
    fingerprint: "str | None" = None  # sha1 of the decoded images, labels and class names (files only)

    def __post_init__(self):
        if len(self.images) != len(self.labels):
            raise DatasetError(f"split has {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self):
        return len(self.labels)


def class_relations(split: Split) -> dict:
    """{"group": same coarse group, "sibling": same pretraining class}: (K, K) bool relations between
    different classes, for data that knows them (synth-*); {} otherwise. "sibling" only where some exist."""
    if split.class_groups is None:
        return {}
    same = lambda ids: (torch.tensor(ids)[:, None] == torch.tensor(ids)[None, :]) & ~torch.eye(len(ids), dtype=bool)
    relations = {"group": same(split.class_groups), "sibling": same(split.class_sources)}
    return {k: r for k, r in relations.items() if k == "group" or r.any()}


def dataset_spec(name: str) -> dict:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[name]


def check_synth_args(name: str, synth: dict):
    """ValueError naming --synth when it is given for a real dataset or holds a bad key or value."""
    if synth and not name.startswith("synth-"):
        raise ValueError(f"--synth: applies to the built-in synth-* datasets only, not --dataset {name}")
    if synth:
        import synth as synth_module

        synth_module.check_sizes(synth, view=name.removeprefix("synth-"))


def load_split(name, split, data_root, *, download=False, image_size=None, crop_pct=None, synth=None, cache_dir=None):
    """Split "train" or "test" of dataset `name` (synth-*: synth.make_synth(view, split, **synth)). Files are decoded
    once, short side reduced to image_size / crop_pct (the evaluation's resize; never enlarged) unless the dataset is
    native, and cached in cache_dir (default data_root/.cache; delete it after changing the files)."""
    spec = dataset_spec(name)
    if split not in ("train", "test"):
        raise DatasetError(f"{name}: unknown split {split!r}; expected 'train' or 'test'")
    if name.startswith("synth-"):
        import synth as synth_module

        view = name.removeprefix("synth-")
        images, labels, classes, groups, sources = synth_module.make_synth(view, split, **(synth or {}))
        return Split(images, labels, list(classes), list(groups), list(sources))

    root = Path(data_root).expanduser()
    size = None if spec["native"] else round((image_size or spec["image_size"]) / (crop_pct or spec["crop_pct"]))
    root_id = "" if cache_dir is None else "-" + hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:10]
    cache = Path(cache_dir or root / ".cache").expanduser() / f"{name}-{split}-{size or 'native'}{root_id}.pt"
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        if saved.get("version") == CACHE_VERSION:
            return Split(saved["images"], saved["labels"], saved["classes"], fingerprint=saved["fingerprint"])
    if download:
        download_dataset(name, root)
    images, labels, classes = READERS[name](root, split)
    if isinstance(images, list):  # file paths
        images = decode_images(name, images, size)
    labels, classes = torch.as_tensor(labels, dtype=torch.int64), list(classes)
    result = Split(images, labels, classes, fingerprint=fingerprint(images, labels, classes))
    saved = {"images": images, "labels": labels, "classes": classes, "fingerprint": result.fingerprint}
    try:
        atomic_torch_save({"version": CACHE_VERSION, **saved}, cache)
    except OSError as e:  # a read-only data root
        print(f"data: could not write cache {cache} ({e}); continuing without it (--cache-dir)", file=sys.stderr)
    return result


def fingerprint(images, labels, classes) -> str:
    """sha1 of a split's content (uint8 pixels, labels, class names): a dataset's identity is its data, not
    its loader's name or folder (two image folders are told apart, wherever they are stored)."""
    h = hashlib.sha1(json.dumps(list(classes)).encode())
    h.update(labels.numpy().tobytes())
    for image in images if isinstance(images, list) else [images]:
        h.update(str(tuple(image.shape)).encode() + image.contiguous().numpy().tobytes())
    return h.hexdigest()


def download_dataset(name: str, root: Path):
    """Fetch `name` into root with torchvision's downloaders (Pets, CIFAR-100, Tiny-ImageNet; others: no-op)."""
    import torchvision.datasets as tvd

    try:
        if name == "pets":
            tvd.OxfordIIITPet(root, split="trainval", download=True)
        elif name == "cifar100":
            tvd.CIFAR100(root, train=True, download=True)
        elif name == "tiny-imagenet" and not (root / "tiny-imagenet-200").is_dir():
            tvd.utils.download_and_extract_archive(TINY_IMAGENET_URL, download_root=str(root))
    except (OSError, RuntimeError) as e:
        raise DatasetError(f"{name}: download into {root} failed ({e}); {HOW_TO_GET[name]}") from e


def decode_images(name: str, paths: list[Path], short_side: int | None):
    """Decode image files to uint8 RGB, the short side reduced (antialiased) to `short_side` if longer (never
    enlarged: small images take their own size in memory). (N,3,H,W) if all shapes agree, else N (3,H_i,W_i)."""
    resize = v2.Resize(short_side, antialias=True) if short_side else None

    def decode_one(path):
        # PIL, not torchvision.io.decode_image: that is deprecated since torchvision 0.29 and reads fewer formats
        try:
            with Image.open(path) as pil:
                image = torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1).contiguous()
        except (OSError, ValueError) as e:  # missing, unidentified (UnidentifiedImageError) or truncated
            raise DatasetError(f"{name}: cannot decode image {path} ({e}); restore or re-download it") from e
        return resize(image) if resize and min(image.shape[-2:]) > short_side else image

    print(f"data: decoding {len(paths)} {name} images (cached after this)", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        images = list(pool.map(decode_one, paths))
    return torch.stack(images) if images and len({im.shape for im in images}) == 1 else images


# Each reader: (root, split) -> (file paths or a uint8 (N,3,H,W) tensor, labels, class names).


def require(name: str, layout: str, *paths: Path):
    """DatasetError (one line) for the first of `paths` that does not exist: where, what layout, how to get it."""
    for path in paths:
        if not path.exists():
            raise DatasetError(f"{name}: {path} not found; expected {layout}; {HOW_TO_GET[name]}")


def read_cifar100(root: Path, split: str):
    """CIFAR-100 python pickles, read as torchvision's CIFAR100 does (without its md5 check)."""
    folder, loaded = root / "cifar-100-python", []
    require("cifar100", f"{folder}/{{train,test,meta}}", folder / split, folder / "meta")
    for path in (folder / split, folder / "meta"):
        try:
            loaded.append(pickle.loads(path.read_bytes(), encoding="latin1"))
        except (pickle.UnpicklingError, EOFError, OSError) as e:
            raise DatasetError(f"cifar100: cannot read {path} ({e}); re-download it") from e
    batch, meta = loaded
    images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return torch.from_numpy(images.copy()), batch["fine_labels"], meta["fine_label_names"]


def read_pets(root: Path, split: str):
    """Oxford-IIIT Pets: annotations/{trainval,test}.txt lines 'image_id class_id species breed_id'."""
    base = root / "oxford-iiit-pet"
    listing = base / "annotations" / ("trainval.txt" if split == "train" else "test.txt")
    require("pets", f"{base}/images/*.jpg and {base}/annotations/{{trainval,test}}.txt", base / "images", listing)
    paths, labels, names = [], [], {}
    for line in listing.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            image_id, class_id = line.split()[:2]
            paths.append(base / "images" / f"{image_id}.jpg")
            labels.append(int(class_id) - 1)
            # class names as torchvision's OxfordIIITPet makes them: "american_bulldog_12" -> "American Bulldog"
            names[labels[-1]] = " ".join(part.title() for part in image_id.rsplit("_", 1)[0].split("_"))
    return paths, labels, [names.get(k, f"class {k + 1}") for k in range(max(names, default=-1) + 1)]


def read_cars(root: Path, split: str):
    """Stanford Cars through torchvision's StanfordCars (needs scipy for the .mat annotations)."""
    try:
        import scipy.io  # noqa: F401
    except ImportError:
        raise DatasetError("cars: reading Stanford Cars' .mat annotations needs scipy: pip install scipy") from None
    from torchvision.datasets import StanfordCars

    base = root / "stanford_cars"
    annotations = "devkit/cars_train_annos.mat" if split == "train" else "cars_test_annos_withlabels.mat"
    layout = f"{base}/{{cars_train,cars_test,devkit/cars_meta.mat,devkit/cars_train_annos.mat,"
    layout += "cars_test_annos_withlabels.mat}"
    require("cars", layout, base / "devkit" / "cars_meta.mat", base / annotations, base / f"cars_{split}")
    dataset = StanfordCars(root, split=split, loader=str)  # loader=str: items are (path, label)
    samples = [dataset[i] for i in range(len(dataset))]
    return [Path(p) for p, _ in samples], [int(y) for _, y in samples], [str(c) for c in dataset.classes]


def read_tiny_imagenet(root: Path, split: str):
    """tiny-imagenet-200: train/<wnid>/images/*.JPEG; the test split is val/ with val_annotations.txt."""
    base = root / "tiny-imagenet-200"
    listing = base / ("wnids.txt" if split == "train" else "val/val_annotations.txt")
    layout = f"{base}/{{wnids.txt,train/<wnid>/images/*.JPEG,val/images/*.JPEG,val/val_annotations.txt}}"
    require("tiny-imagenet", layout, base / "wnids.txt", listing)
    wnids = sorted((base / "wnids.txt").read_text().split())
    index = {wnid: k for k, wnid in enumerate(wnids)}
    if split == "train":
        samples = [(p, index[w]) for w in wnids for p in sorted((base / "train" / w / "images").glob("*.JPEG"))]
    else:
        rows = [line.split("\t") for line in listing.read_text().splitlines() if line.strip()]
        samples = [(base / "val" / "images" / row[0], index[row[1]]) for row in rows]
    words = base / "words.txt"
    lines = words.read_text().splitlines() if words.is_file() else []
    names = dict(line.split("\t", 1) for line in lines if "\t" in line)
    classes = [names[w].split(",")[0].strip() if w in names else w for w in wnids]
    return [p for p, _ in samples], [y for _, y in samples], classes


def read_imagefolder(root: Path, split: str):
    """data_root/{train,test}/<class>/<image>; class names and order come from train/ for both splits."""
    require("imagefolder", f"{root}/{{train,test}}/<class>/<images>", root / "train", root / split)
    try:
        classes, class_to_idx = find_classes(str(root / "train"))
        samples = DatasetFolder.make_dataset(str(root / split), class_to_idx, extensions=IMG_EXTENSIONS)
    except OSError as e:  # no class folders, or a class without images
        raise DatasetError(f"imagefolder: {root / split}: {e}") from e
    unknown = sorted({d.name for d in (root / split).iterdir() if d.is_dir()} - set(classes))
    if unknown:
        raise DatasetError(
            f"imagefolder: {root / split} has classes missing from {root / 'train'}: {', '.join(unknown)}"
        )
    return [Path(p) for p, _ in samples], [y for _, y in samples], classes


def imagefolder_counts(root) -> dict:
    """{"classes": [...], "train": [images per class], "test": [...]} of an image folder, from its file listing
    (no image is decoded); DatasetError (one line) if a split is missing or a class has no images."""
    counts = {}
    for split in ("train", "test"):
        _, labels, counts["classes"] = read_imagefolder(Path(root).expanduser(), split)
        counts[split] = np.bincount(labels, minlength=len(counts["classes"])).tolist()
    return counts


READERS = {
    "pets": read_pets,
    "cifar100": read_cifar100,
    "cars": read_cars,
    "tiny-imagenet": read_tiny_imagenet,
    "imagefolder": read_imagefolder,
}

# ----------------------------------------------------------------------------- augmentation config


@dataclass(frozen=True)
class AugConfig:
    image_size: int = 224
    crop: str = "resize"  # "rrc": inception-style RandomResizedCrop; "resize": short side + center crop
    randaug_n: int = 2  # RandAugment num_ops (0 disables)
    randaug_m: int = 9  # RandAugment magnitude
    hflip: bool = True
    mixup_alpha: float = 1.0  # per batch a 50/50 choice of MixUp or CutMix; alpha 0 disables that one
    cutmix_alpha: float = 1.0
    crop_pct: float = 0.875  # eval: Resize(round(size / crop_pct)) + CenterCrop(size)

    def __post_init__(self):
        if self.crop not in ("rrc", "resize"):
            raise ValueError(f"AugConfig.crop must be 'rrc' or 'resize', got {self.crop!r}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"AugConfig.crop_pct must be in (0, 1], got {self.crop_pct}")

    def to_dict(self) -> dict:
        return asdict(self)


def aug_config_for(name: str, image_size: int | None = None, **overrides) -> AugConfig:
    """The study's augmentation defaults for dataset `name` (docs/STUDY.md §1), with overrides."""
    spec = {k: v for k, v in dataset_spec(name).items() if k != "native"}
    return AugConfig(**{**spec, "image_size": image_size or spec["image_size"], **overrides})


# ----------------------------------------------------------------------------- deterministic draws

MASK64 = (1 << 64) - 1
ORDER, SAMPLE, MIX, FEWSHOT = 1, 2, 3, 4  # stream tags: one independent family of seeds per purpose


def mix_seed(*parts: int) -> int:
    """splitmix64-style hash of a tuple of ints -> 64-bit seed; nearby tuples give unrelated seeds."""
    h = 0
    for part in parts:
        h = ((h ^ (part & MASK64)) + 0x9E3779B97F4A7C15) & MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & MASK64
        h ^= h >> 31
    return h


@functools.lru_cache(maxsize=4)
def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """int64 (n,) permutation of the samples for (seed, epoch). Cached: do not modify."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(ORDER, seed, epoch)))


def batch_indices(n: int, seed: int, epoch: int, step: int, batch_size: int) -> torch.Tensor:
    """int64 (batch_size,) dataset indices of batch `step` (drop_last)."""
    if not 0 <= step < n // batch_size:
        raise ValueError(f"step {step} out of range: {n} samples give {n // batch_size} batches of {batch_size}")
    return epoch_order(n, seed, epoch)[step * batch_size : (step + 1) * batch_size].clone()


# ----------------------------------------------------------------------------- augmentation


@functools.lru_cache(maxsize=16)
def random_ops(aug: AugConfig) -> list:
    """The per-sample random transforms, built once per config: [crop], [flip], [RandAugment]."""
    ops = [v2.RandomResizedCrop(aug.image_size, antialias=True)] if aug.crop == "rrc" else []
    ops += [v2.RandomHorizontalFlip()] if aug.hflip else []
    ops += [v2.RandAugment(num_ops=aug.randaug_n, magnitude=aug.randaug_m)] if aug.randaug_n > 0 else []
    return ops


def fit_square(images, resize_to: int, size: int) -> torch.Tensor:
    """Resize the short side to resize_to, center-crop to size: uint8 (N,3,H,W) or N (3,H_i,W_i) -> (N,3,size,size)."""
    if isinstance(images, torch.Tensor) and images.shape[-2:] == (size, size):
        return images
    fit = v2.Compose([v2.Resize(resize_to, antialias=True), v2.CenterCrop(size)])
    chunks = images.split(256) if isinstance(images, torch.Tensor) else [im[None] for im in images]
    return torch.cat([fit(chunk) for chunk in chunks] or [torch.empty(0, 3, size, size, dtype=torch.uint8)])


def augment_samples(split, aug, index, *, seed, epoch, view=0) -> torch.Tensor:
    """uint8 (B,3,S,S): per-sample crop/flip/RandAugment, each seeded by (seed, epoch, index, view)."""
    rows, size, ops = index.tolist(), aug.image_size, random_ops(aug)
    images = split.images[index] if isinstance(split.images, torch.Tensor) else [split.images[i] for i in rows]
    if aug.crop == "resize":  # the deterministic part first, batched where the images share a shape
        images = fit_square(images, size, size)
    out = torch.empty(len(rows), 3, size, size, dtype=torch.uint8)
    # v2 transforms draw from the global CPU generator and apply one draw to a whole batch: so
    # reseed it per sample, inside fork_rng so the caller's RNG state is restored afterwards
    with torch.random.fork_rng(devices=[]):
        for j, i in enumerate(rows):
            torch.random.default_generator.manual_seed(mix_seed(SAMPLE, seed, epoch, i, view))
            image = images[j]
            for op in ops:
                image = op(image)
            out[j] = image
    return out


def mix_batch(x, y, aug, num_classes, *, seed, epoch, step) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp or CutMix one batch, one draw per (seed, epoch, step); each sample is paired with the
    previous one in the batch (torchvision's convention). Returns x float32 [0,1] (B,3,S,S) and
    y_soft float32 (B,K); without mixing, x stays uint8 and y_soft is one-hot."""
    mixers = [v2.MixUp(alpha=aug.mixup_alpha, num_classes=num_classes)] if aug.mixup_alpha > 0 else []
    mixers += [v2.CutMix(alpha=aug.cutmix_alpha, num_classes=num_classes)] if aug.cutmix_alpha > 0 else []
    if not mixers:
        return x, torch.nn.functional.one_hot(y, num_classes).float()
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(mix_seed(MIX, seed, epoch, step))
        return (v2.RandomChoice(mixers) if len(mixers) == 2 else mixers[0])(x.float().div_(255), y)


# ----------------------------------------------------------------------------- batched augmentation
# The draws of augment_samples, applied a batch at a time on any device (the GPU's, when there is
# one): each sample's parameters are drawn exactly as torchvision's transforms draw them (same seed,
# same order of draws), then every operation runs once per group of samples that share it. Same
# bytes as augment_samples on the CPU (tests/test_data.py), without the per-sample Python work.

# v2.RandAugment's search space in its order: name -> (magnitudes(bins, height, width) or None, signed)
RANDAUG_OPS = {
    "Identity": (None, False),
    "ShearX": (lambda n, h, w: torch.linspace(0.0, 0.3, n), True),
    "ShearY": (lambda n, h, w: torch.linspace(0.0, 0.3, n), True),
    "TranslateX": (lambda n, h, w: torch.linspace(0.0, 150.0 / 331.0 * w, n), True),
    "TranslateY": (lambda n, h, w: torch.linspace(0.0, 150.0 / 331.0 * h, n), True),
    "Rotate": (lambda n, h, w: torch.linspace(0.0, 30.0, n), True),
    "Brightness": (lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    "Color": (lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    "Contrast": (lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    "Sharpness": (lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    "Posterize": (lambda n, h, w: (8 - (torch.arange(n) / ((n - 1) / 4))).round().int(), False),
    "Solarize": (lambda n, h, w: torch.linspace(1.0, 0.0, n), False),
    "AutoContrast": (None, False),
    "Equalize": (None, False),
}


def randaug_op(x: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    """RandAugment operation `name` at a signed magnitude on uint8 (...,3,H,W), with torchvision's kernels."""
    nearest = v2.InterpolationMode.NEAREST
    affine = functools.partial(TF.affine, x, angle=0.0, scale=1.0, interpolation=nearest)
    shear = math.degrees(math.atan(magnitude))  # a shear of angle atan(magnitude) about the top-left corner
    kernels = {
        "Identity": lambda: x,
        "ShearX": lambda: affine(translate=[0, 0], shear=[shear, 0.0], center=[0, 0]),
        "ShearY": lambda: affine(translate=[0, 0], shear=[0.0, shear], center=[0, 0]),
        "TranslateX": lambda: affine(translate=[int(magnitude), 0], shear=[0.0, 0.0]),
        "TranslateY": lambda: affine(translate=[0, int(magnitude)], shear=[0.0, 0.0]),
        "Rotate": lambda: TF.rotate(x, angle=magnitude, interpolation=nearest),
        "Brightness": lambda: TF.adjust_brightness(x, 1.0 + magnitude),
        "Color": lambda: TF.adjust_saturation(x, 1.0 + magnitude),
        "Contrast": lambda: TF.adjust_contrast(x, 1.0 + magnitude),
        "Sharpness": lambda: TF.adjust_sharpness(x, 1.0 + magnitude),
        "Posterize": lambda: TF.posterize(x, bits=int(magnitude)),
        "Solarize": lambda: TF.solarize(x, threshold=255.0 * magnitude),
        "AutoContrast": lambda: TF.autocontrast(x),
        "Equalize": lambda: TF.equalize(x),
    }
    return kernels[name]()


def draw_samples(split: Split, aug: AugConfig, index: torch.Tensor, *, seed: int, epoch: int, view: int = 0) -> list:
    """Each sample's random parameters, drawn as augment_samples draws them (same seeds, same order of draws):
    [(crop box (top, left, h, w) or None, flip, ((op, signed magnitude), ...))] * B. Cheap CPU work, so loader
    workers can do it; the global RNG is left untouched."""
    crop = random_ops(aug)[0] if aug.crop == "rrc" else None
    size, m = aug.image_size, aug.randaug_m  # 31: v2.RandAugment's num_magnitude_bins
    table = [(op, bins and float(bins(31, size, size)[m]), signed) for op, (bins, signed) in RANDAUG_OPS.items()]
    draws = []
    with torch.random.fork_rng(devices=[]):
        for i in index.tolist():
            torch.random.default_generator.manual_seed(mix_seed(SAMPLE, seed, epoch, i, view))
            box = None
            if crop is not None:  # torchvision's own draw, on a stand-in of the image's size
                params = crop.make_params([torch.empty((3, *split.images[i].shape[-2:]), dtype=torch.uint8)])
                box = (params["top"], params["left"], params["height"], params["width"])
            flip = aug.hflip and bool(torch.rand(1) < 0.5)
            ops = []
            for _ in range(aug.randaug_n):  # as v2.RandAugment.forward draws: operation, then sign
                name, magnitude, signed = table[int(torch.randint(len(table), ()))]
                if magnitude is not None and signed and torch.rand(()) <= 0.5:
                    magnitude = -magnitude
                ops.append((name, magnitude or 0.0))
            draws.append((box, flip, tuple(ops)))
    return draws


def batch_parameters(index: torch.Tensor, draws: list, randaug_n: int) -> tuple:
    """(int64 (2 + randaug_n, B): the dataset rows, the flips and, per RandAugment round, the batch positions
    ordered by operation; per round [(name, magnitude, start, stop)]: where each operation's samples sit in that
    order, Identity left out)."""
    rows, groups = [index.tolist(), [int(flip) for _, flip, _ in draws]], []
    for k in range(randaug_n):
        by_op = {}
        for j, (_, _, ops) in enumerate(draws):
            by_op.setdefault(ops[k], []).append(j)
        order, spans = [], []
        for (name, magnitude), members in by_op.items():
            if name != "Identity":
                spans.append((name, magnitude, len(order), len(order) + len(members)))
            order += members
        rows.append(order)
        groups.append(spans)
    return torch.tensor(rows, dtype=torch.int64).reshape(2 + randaug_n, len(draws)), groups


def augment_batch(images, aug: AugConfig, index: torch.Tensor, draws: list) -> torch.Tensor:
    """augment_samples, a batch at a time on the device of `images` (a split's images moved there once), with
    draw_samples' parameters: uint8 (B,3,S,S). An "rrc" crop is one call per sample (an antialiased resize of
    boxes of different sizes does not batch without changing the bytes)."""
    size, rows = aug.image_size, index.tolist()
    device = images.device if isinstance(images, torch.Tensor) else images[0].device
    packed, groups = batch_parameters(index, draws, aug.randaug_n)
    params = packed.to(device, non_blocking=True)  # the one host -> device copy of the batch's draws
    if aug.crop == "resize":
        x = fit_square(images[params[0]] if isinstance(images, torch.Tensor) else [images[i] for i in rows], size, size)
    else:
        x = torch.stack([TF.resized_crop(images[i], *d[0], [size, size], antialias=True) for i, d in zip(rows, draws)])
    x = torch.where(params[1].bool()[:, None, None, None], x.flip(-1), x)
    for k, round_groups in enumerate(groups):
        for name, magnitude, start, stop in round_groups:
            at = params[2 + k, start:stop]  # a view of the copied tensor: no copy per group
            x[at] = randaug_op(x[at], name, magnitude)
    return x


# ----------------------------------------------------------------------------- the training stream


def train_batch(split, aug, *, seed, epoch, step, batch_size, view=0, images=None, draws=None) -> dict:
    """Training batch `step` of `epoch`, a pure function of its arguments: {"x": (B,3,S,S) float32 in [0,1] with
    MixUp/CutMix (any alpha > 0), else uint8; "y": int64 (B,) the label with the larger mixing weight; "y_soft":
    float32 (B,K); "index": int64 (B,) dataset indices}. view=1: an independent second augmentation of the same
    samples, same mixing draw. With `images` (split.images on a device) it is augmented there (augment_batch:
    the same bytes), with `draws` if they were drawn already (draw_samples)."""
    index = batch_indices(len(split), seed, epoch, step, batch_size)
    if images is None:
        x = augment_samples(split, aug, index, seed=seed, epoch=epoch, view=view)
    else:
        draws = draws or draw_samples(split, aug, index, seed=seed, epoch=epoch, view=view)
        x = augment_batch(images, aug, index, draws)
    y = split.labels[index].to(x.device)
    x, y_soft = mix_batch(x, y, aug, len(split.classes), seed=seed, epoch=epoch, step=step)
    own_weight = y_soft.gather(1, y[:, None]).squeeze(1)
    return {"x": x, "y": torch.where(own_weight >= 0.5, y, y_soft.argmax(1)), "y_soft": y_soft, "index": index}


def step_draws(split: Split, aug: AugConfig, epoch: int, step: int, *, seed: int, batch_size: int, views: int) -> list:
    """draw_samples' parameters for batch `step` of `epoch`, one list per view."""
    index = batch_indices(len(split), seed, epoch, step, batch_size)
    return [draw_samples(split, aug, index, seed=seed, epoch=epoch, view=view) for view in range(views)]


def _leave_stop_signals_to_the_main_process(worker_id):
    """A loader worker ignores SIGTERM/SIGINT: Slurm signals the whole process group, and the main process checkpoints
    and exits 75 (engine.StopSignals), shutting its workers down; a worker killed first would end it in an error."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class TrainStream:
    """Deterministic training batches; identical for any number of loader workers, and whether each
    sample is augmented in the workers or whole batches on `device` (draw_samples in the workers,
    augment_batch in this process)."""

    def __init__(self, split: Split, aug: AugConfig, *, batch_size: int, seed: int, views=1, workers=0, device=None):
        if views not in (1, 2):
            raise ValueError(f"views must be 1 or 2, got {views}")
        self.split, self.aug, self.batch_size, self.seed = split, aug, batch_size, seed
        self.views, self.workers = views, workers
        self.steps_per_epoch = len(split) // batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"--bs: batch size {batch_size} exceeds the {len(split)} training samples "
                "(incomplete batches are dropped)"
            )
        self.device, self.images = (None if device is None else torch.device(device)), None
        if self.device is not None:  # the uint8 images move to the device once, here
            try:
                if isinstance(split.images, torch.Tensor):
                    self.images = split.images.to(self.device)
                else:
                    self.images = [image.to(self.device) for image in split.images]
            except torch.OutOfMemoryError:
                gb = sum(image.numel() for image in split.images) / 1e9
                raise DatasetError(
                    f"--augment-on device: the {gb:.1f} GB of uint8 training images do not fit on {self.device}; "
                    "use --augment-on workers"
                ) from None

    def batch(self, epoch: int, step: int, draws: list | None = None) -> dict:
        """train_batch's dict for (epoch, step); with views=2 also "x2", the second view. With a device,
        `draws` may hold the step's draws made elsewhere (step_draws)."""
        args = dict(seed=self.seed, epoch=epoch, step=step, batch_size=self.batch_size, images=self.images)
        draws = draws or [None] * self.views
        batch = train_batch(self.split, self.aug, draws=draws[0], **args)
        if self.views == 2:
            batch["x2"] = train_batch(self.split, self.aug, view=1, draws=draws[1], **args)["x"]
        return batch

    def epoch(self, epoch: int, start_step: int = 0):
        """Yield (step, batch) for step in [start_step, steps_per_epoch)."""
        # The workers (or this process, workers=0) make whole batches, or only the draws (then they need neither this
        # stream nor its device images): the loader's items are step numbers, made by collate_fn. Its own generator:
        # DataLoader would otherwise draw its base seed from the global RNG.
        steps = range(start_step, self.steps_per_epoch)
        if self.device is None:
            make = functools.partial(self.batch, epoch)
        else:
            make = functools.partial(
                step_draws, self.split, self.aug, epoch, seed=self.seed, batch_size=self.batch_size, views=self.views
            )
        loader = DataLoader(
            steps,
            batch_size=None,
            num_workers=self.workers,
            collate_fn=make,
            generator=torch.Generator(),
            pin_memory=self.device is None and torch.cuda.is_available(),
            worker_init_fn=_leave_stop_signals_to_the_main_process,
        )
        for step, made in zip(steps, loader):
            yield step, made if self.device is None else self.batch(epoch, step, made)


class EvalImages:
    """Evaluation images, Resize(round(S / crop_pct)) + CenterCrop(S), made a slice at a time: images[i:j] is uint8
    (j-i,3,S,S). A split at the training resolution is never held whole (CIFAR-100's 50,000 train images at 224 px
    are 7.5 GB); models.predict reads it in batches."""

    def __init__(self, split: Split, aug: AugConfig):
        self.images, self.resize_to, self.size = split.images, round(aug.image_size / aug.crop_pct), aug.image_size

    def __len__(self):
        return len(self.images)

    def __getitem__(self, rows: slice) -> torch.Tensor:
        return fit_square(self.images[rows], self.resize_to, self.size)


def eval_images(split: Split, aug: AugConfig) -> torch.Tensor:
    """EvalImages all at once, uint8 (N,3,S,S): for small splits."""
    return EvalImages(split, aug)[:]


# ----------------------------------------------------------------------------- image folders


def make_fewshot(src_dir, out_dir, *, n_train: int = 30, n_test: int = 20, seed: int = 0, copy: bool = False) -> dict:
    """Pick n_train + n_test images per class folder of src_dir (seeded) and write the imagefolder
    layout out_dir/{train,test}/<class>/<file>, as symlinks (copies with copy=True)."""
    src, out = Path(src_dir).expanduser().resolve(), Path(out_dir).expanduser()
    if not src.is_dir():
        raise DatasetError(f"fewshot: source folder {src} not found; expected {src}/<class>/<images>")
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"fewshot: output folder {out} is not empty; remove it or choose another")
    is_image = lambda p: p.is_file() and p.suffix.lower() in IMG_EXTENSIONS
    files = {d.name: sorted(filter(is_image, d.iterdir())) for d in sorted(src.iterdir()) if d.is_dir()}
    if not files:
        raise DatasetError(f"fewshot: no class folders in {src}; expected {src}/<class>/<images>")
    need = n_train + n_test
    small = [f"{name} ({len(paths)})" for name, paths in files.items() if len(paths) < need]
    if small:
        raise DatasetError(
            f"fewshot: classes in {src} with fewer than n_train + n_test = {need} images: {', '.join(small)}"
        )
    for name, paths in files.items():
        # seeded by the class name, so adding or removing other classes leaves this choice unchanged
        g = torch.Generator().manual_seed(mix_seed(FEWSHOT, seed, zlib.crc32(name.encode())))
        chosen = [paths[i] for i in torch.randperm(len(paths), generator=g)[:need].tolist()]
        for split, picked in (("train", chosen[:n_train]), ("test", chosen[n_train:])):
            (out / split / name).mkdir(parents=True, exist_ok=True)
            for path in sorted(picked):
                target = out / split / name / path.name
                shutil.copy2(path, target) if copy else target.symlink_to(path)
    summary = dict(src=str(src), out=str(out), classes=len(files), n_train=n_train, n_test=n_test, seed=seed, copy=copy)
    atomic_write(out / "fewshot.json", json.dumps(summary, indent=1) + "\n")
    return summary


def export_imagefolder(name: str, out_dir, synth: dict | None = None) -> dict:
    """Write the built-in dataset `name` (synth-*) as an image folder, out_dir/{train,test}/<class>/<index>.png
    (lossless): class folders "000_<name>" sort in label order and files in the split's order, so the folder
    reads back as the same images in the same order (--dataset imagefolder --crop-pct 1 --image-size 32 keeps
    every pixel). Written in a temporary folder, then renamed: nothing half-written."""
    if not name.startswith("synth-"):
        raise DatasetError(f"export: only the built-in synth-* datasets are exported, not {name!r}")
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"export: output folder {out} exists and is not empty; remove it or choose another")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for split in ("train", "test"):
            s = load_split(name, split, "unused", synth=synth)
            folders = [tmp / split / f"{k:03d}_{c.replace('/', '_')}" for k, c in enumerate(s.classes)]
            for folder in folders:
                folder.mkdir(parents=True)
            for i, (image, label) in enumerate(zip(s.images, s.labels.tolist())):
                Image.fromarray(image.permute(1, 2, 0).numpy()).save(folders[label] / f"{i:06d}.png")
        summary = {"dataset": name, "synth": synth or {}, "out": str(out), "classes": len(s.classes)}
        atomic_write(tmp / "export.json", json.dumps(summary, indent=1) + "\n")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(prog="data.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write a built-in synth-* dataset as a PNG image folder")
    export.add_argument("dataset", help="synth-src, synth-fine, synth-coarse or synth-novel")
    export.add_argument("out", help="output folder (must be empty or absent)")
    export.add_argument("--synth", nargs="*", default=[], metavar="KEY=VALUE", help="built-in dataset sizes")
    fewshot = commands.add_parser("fewshot", help="write a few-shot imagefolder (train/test per class)")
    fewshot.add_argument("src", help="folder of class folders of images")
    fewshot.add_argument("out", help="output folder (must be empty or absent)")
    fewshot.add_argument("--n-train", type=int, default=30, help="training images per class (default 30)")
    fewshot.add_argument("--n-test", type=int, default=20, help="test images per class (default 20)")
    fewshot.add_argument("--seed", type=int, default=0, help="selection seed (default 0)")
    fewshot.add_argument("--copy", action="store_true", help="copy files instead of symlinking")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            sizes = dict(item.split("=", 1) for item in args.synth if "=" in item)
            if len(sizes) != len(args.synth):
                raise ValueError(f"--synth: expected KEY=VALUE items, got {' '.join(args.synth)}")
            sizes = {k: int(v) if v.lstrip("-").isdigit() else v for k, v in sizes.items()}
            check_synth_args(args.dataset, sizes)
            summary = export_imagefolder(args.dataset, args.out, sizes)
        else:
            for flag, value in (("--n-train", args.n_train), ("--n-test", args.n_test)):
                if value < 1:
                    raise ValueError(f"{flag}: must be >= 1, got {value}")
            kwargs = dict(n_train=args.n_train, n_test=args.n_test, seed=args.seed, copy=args.copy)
            summary = make_fewshot(args.src, args.out, **kwargs)
    except (ValueError, OSError) as e:
        print(f"data.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
