"""Command-line pieces shared by the scripts: one-line errors, flag groups, and checks of values.

Every script parses with `ArgumentParser` (one-line errors, exit code 2, defaults in --help) and
raises ValueError for bad input before any work starts; `fail` turns it into one line on stderr.
"""

import argparse
import math
import os
import sys
from pathlib import Path

import torch

import data

EXIT_BAD_INPUT = 2  # bad flags or files: nothing was started
EXIT_FAILED = 3  # a run diverged (NaN/inf loss); its result.json says why
EXIT_PREEMPTED = 75  # SIGTERM/SIGINT (preemption, time limit, Ctrl-C) or a failed write: checkpoint kept, re-run


class HelpFormatter(argparse.HelpFormatter):
    """Appends '(default: X)' to a flag's help unless the help already names its default or X is empty."""

    def _get_help_string(self, action):
        text = action.help or ""
        empty = action.default in (None, False, [], argparse.SUPPRESS)
        if "default" not in text and not empty:
            text += " (default: %(default)s)"
        return text


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), exit code 2, and defaults shown in --help."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=HelpFormatter, **kwargs)

    def error(self, message):
        fail(self.prog, message.removeprefix("argument "))  # "--T: ...", as the scripts' own checks say


def fail(prog, message):
    """Bad input: one line naming the flag or file and what is expected, exit code 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def stop_on_os_error(prog, error):
    """A write or read that failed during training (disk full, I/O error): one line, exit 75 as for SIGTERM,
    since the last checkpoint is intact and the same command resumes from it."""
    print(
        f"{prog}: error: {error}; the last checkpoint is kept: fix this and run the same command to resume",
        file=sys.stderr,
    )
    sys.exit(EXIT_PREEMPTED)


def parse_value(text):
    """'1' -> 1, '0.5' -> 0.5, 'true' -> True, 'none' -> None, '3,5' -> (3, 5), anything else: the string."""
    if "," in text:
        return tuple(parse_value(part) for part in text.split(","))
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse_key_values(items, flag):
    """['a=1', 'b=0.5', 'c=x'] -> {'a': 1, 'b': 0.5, 'c': 'x'} (see parse_value)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag}: expected KEY=VALUE, got '{item}'")
        out[key.replace("-", "_")] = parse_value(value)
    return out


def check_range(flag, value, low=None, high=None, integer=False):
    """`value` if it is a finite number (an int with integer=True) within [low, high], else ValueError."""
    kind = "an integer" if integer else "a finite number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or not math.isfinite(value):
        raise ValueError(f"{flag}: expected {kind}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"<= {high}" if low is None else f"in [{low}, {high}]"
        raise ValueError(f"{flag}: must be {bounds}, got {value}")
    return value


def add_key_values(group, flag, help):
    """A flag taking KEY=VALUE items (several, repeatable), parsed later by parse_key_values."""
    group.add_argument(flag, nargs="*", action="extend", default=[], metavar="KEY=VALUE", help=help)


def add_data_args(parser):
    g = parser.add_argument_group("data")
    g.add_argument(
        "--dataset",
        default="synth-fine",
        help="pets, cifar100, cars, tiny-imagenet, imagefolder, or built-in synth-{src,fine,coarse,novel}",
    )
    g.add_argument(
        "--data-root", default="data", help="folder holding the dataset (for imagefolder: the dataset folder itself)"
    )
    g.add_argument(
        "--cache-dir",
        default=None,
        help="folder of the decoded-image cache (default: .data-cache beside the results; data root may be read-only)",
    )
    g.add_argument(
        "--download", action="store_true", help="let torchvision download the dataset where it can (needs internet)"
    )
    g.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="training resolution (default: the teacher's; else 224 for real datasets, 32 for synth-*)",
    )
    add_key_values(
        g,
        "--synth",
        "built-in dataset sizes, e.g. --synth target_train_per_class=50 (keys: "
        "synth.make_synth; distill.py: default the teacher's)",
    )
    g = parser.add_argument_group("augmentation (defaults: the study's, docs/STUDY.md)")
    g.add_argument(
        "--randaug-n", type=int, default=None, help="RandAugment ops per image, 0-14 (default 2, synth 1; 0: off)"
    )
    g.add_argument("--randaug-m", type=int, default=None, help="RandAugment magnitude, 0-30 (default 9, synth 5)")
    g.add_argument("--mixup-alpha", type=float, default=None, help="MixUp alpha (default 1.0; 0: only CutMix)")
    g.add_argument("--cutmix-alpha", type=float, default=None, help="CutMix alpha (default 1.0; 0: only MixUp)")
    g.add_argument(
        "--crop-pct",
        type=float,
        default=None,
        help="evaluation: resize the short side to image size / crop-pct, centre crop; real images are stored at "
        "that size (default 0.875 for Pets and image folders, else 1; 1: a folder of images at the training size "
        "is used pixel for pixel)",
    )
    return g


def aug_config(args):
    """The study's augmentation for args.dataset with the user's --randaug-*/--*-alpha overrides."""
    overrides = {
        k: getattr(args, k)
        for k in ("randaug_n", "randaug_m", "mixup_alpha", "cutmix_alpha", "crop_pct")
        if getattr(args, k) is not None
    }
    for k, v in overrides.items():
        high = {"randaug_m": 30, "randaug_n": len(data.RANDAUG_OPS), "crop_pct": 1}.get(k)
        check_range(f"--{k.replace('_', '-')}", v, 0.05 if k == "crop_pct" else 0, high)
    if args.image_size is not None:
        check_range("--image-size", args.image_size, 8, 4096, integer=True)
    return data.aug_config_for(args.dataset, args.image_size, **overrides)


def add_runtime_args(parser):
    g = parser.add_argument_group("device and runtime (do not change results, except --amp)")
    g.add_argument("--device", default="auto", help="auto (cuda if available), cpu, or cuda[:N]")
    g.add_argument(
        "--amp",
        nargs="?",
        const="on",
        default="auto",
        choices=["auto", "on", "off"],
        help="bf16 autocast (losses stay float32; part of the run id): on (the bare flag), off, or auto (on a GPU "
        "with bf16; off on a CPU, where it pays only with bf16 units: pass --amp there, as the lab does)",
    )
    g.add_argument(
        "--channels-last",
        nargs="?",
        const="on",
        default="auto",
        choices=["auto", "on", "off"],
        help="channels_last memory format: on (the bare flag), off, or auto (for each model that is mostly "
        "convolutions, on a GPU or a CPU)",
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the trained models")
    g.add_argument(
        "--workers", type=int, default=0, help="data loader worker processes (batches are identical for any number)"
    )
    g.add_argument(
        "--augment-on",
        default="auto",
        choices=["auto", "workers", "device"],
        help="augment per sample in the --workers processes, or whole batches on --device (auto: device on a GPU "
        "or with --workers 0); same batches",
    )
    g.add_argument(
        "--batched",
        action="store_true",
        help="step the lockstep students as one vmapped computation (for GPUs; slower on a CPU)",
    )
    g.add_argument(
        "--eval-every", type=int, default=0, help="also evaluate on the test split every N epochs (0: only at the end)"
    )
    g.add_argument(
        "--eval-from",
        type=int,
        default=0,
        help="with --eval-every: the first epoch to evaluate at (e.g. the last quarter)",
    )
    g.add_argument(
        "--ckpt-every-min",
        type=float,
        default=10.0,
        help="checkpoint every N minutes of training (and at SIGTERM/SIGINT); 0: at the end of every epoch",
    )
    g.add_argument("--keep-ckpt", action="store_true", help="keep ckpt.pt (model + optimizer) after the run finishes")
    g.add_argument("--retry-failed", action="store_true", help="start runs that failed (diverged) again from scratch")
    return g


def check_runtime_args(args):
    """Range checks of the runtime flags (argparse checks only their types)."""
    check_range("--workers", args.workers, 0, 256, integer=True)
    check_range("--eval-every", args.eval_every, 0, None, integer=True)
    check_range("--eval-from", args.eval_from, 0, None, integer=True)
    check_range("--ckpt-every-min", args.ckpt_every_min, 0)


def resolve_device(name):
    """--device: 'auto' -> cuda if available else cpu; 'cuda' without CUDA is an input error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available on this machine (use --device cpu or auto)")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):  # e.g. meta: accepted by torch, fails mid-run
        raise ValueError(f"--device: expected auto, cpu or cuda[:N], got '{name}'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def resolve_amp(setting, device):
    """--amp auto|on|off -> whether to run bf16 autocast on `device` (auto: a CUDA device that supports bf16)."""
    if setting == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return setting == "on"


def check_writable(folder, flag="--out"):
    """Whether `folder` can be created (or written) by this process, without creating anything."""
    if not str(folder).strip():  # Path("") is the current folder: it would fill it with run folders
        raise ValueError(f"{flag}: expected a folder, got an empty string")
    folder = Path(folder).expanduser().absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{flag}: '{folder}' is not writable ('{existing}' is a file, not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}: folder '{existing}' is not writable")


def augment_device(augment_on, device, workers):
    """Where TrainStream augments whole batches: `device` for --augment-on device, and for auto on a GPU
    or without worker processes (the batches are the same either way); None: per sample in the workers."""
    auto = device.type == "cuda" or workers == 0
    return device if augment_on == "device" or (augment_on == "auto" and auto) else None


def cache_dir(args, results):
    """--cache-dir, or .data-cache beside the results folder (distill.py's --out, train_teacher.py's --out's folder):
    the decoded images never need a writable data root."""
    return Path(args.cache_dir) if args.cache_dir else Path(results).expanduser().absolute().parent / ".data-cache"


def load_data(args, aug, views=1, results="."):
    """(train split, test split, training stream) of the script's data flags; `results`: the folder the script
    writes into (cache_dir)."""
    splits = [
        data.load_split(
            args.dataset,
            split,
            args.data_root,
            download=args.download,
            image_size=args.image_size,
            crop_pct=aug.crop_pct,
            synth=args.synth,
            cache_dir=cache_dir(args, results),
        )
        for split in ("train", "test")
    ]
    stream = data.TrainStream(
        splits[0],
        aug,
        batch_size=args.bs,
        seed=args.seed,
        views=views,
        workers=args.workers,
        device=augment_device(args.augment_on, args.device, args.workers),
    )
    return splits[0], splits[1], stream


def data_identity(args, aug, train):
    """The part of a run's identity that says which images it trains on, and how they are augmented: the built-in
    data by its sizes, files by their content (the train split's fingerprint)."""
    identity = {"dataset": args.dataset, "data_id": data_id(args), "synth": args.synth, "aug": aug.to_dict()}
    return identity if train.fingerprint is None else {**identity, "data_sha1": train.fingerprint}


def data_id(args):
    """Which image folder an `imagefolder` run used (e.g. 'imagenet-birds'); None for named datasets."""
    return Path(args.data_root).resolve().name if args.dataset == "imagefolder" else None
