"""Shared by the tests: a tiny built-in dataset, fast flags, and ways to run the scripts."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
# synth-src: 2 coarse groups x 3 fine classes; synth-fine: the 3 classes of group 0; a few images each,
# so a whole run takes a couple of seconds.
TINY = [
    "--synth",
    "groups=2",
    "classes_per_group=3",
    "fine_groups=1",
    "novel_groups=1",
    "novel_classes_per_group=3",
    "src_train_per_class=12",
    "target_train_per_class=12",
    "test_per_class=6",
    "--data-root",
    "unused",
]
FAST = ["--bs", "12", "--device", "cpu"]
BASH = shutil.which("bash")


def run_script(script, *args, background=False, env=None, timeout=900, **kw):
    """Run a script as users do, in a subprocess: a .py with this Python, a .sh with bash, or `-c CODE`; one thread,
    unbuffered output, `env` added to the environment. The CompletedProcess with text output, or with
    background=True the Popen (pipes as given in kw)."""
    exe = BASH if script.endswith(".sh") else sys.executable
    argv = [exe, str(ROOT / script) if script.endswith((".py", ".sh")) else script, *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    kw = {"cwd": ROOT, "env": env, **kw}
    if background:
        return subprocess.Popen(argv, **kw)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def results_in(folder):
    return {p.parent.name: json.loads(p.read_text()) for p in Path(folder).glob("*/result.json")}


def teacher_args(out, *extra, dataset="synth-fine"):
    """train_teacher.py flags for a tiny test_resnet on the tiny built-in data, 1 epoch (later flags win)."""
    return ["--dataset", dataset, *TINY, "--arch", "test_resnet", "--epochs", "1", "--out", str(out), *FAST, *extra]


def distill_args(teacher, out, *extra):
    return [
        "--dataset",
        "synth-fine",
        *TINY,
        "--teacher",
        str(teacher),
        "--student",
        "test_resnet",
        "--epochs",
        "2",
        "--out",
        str(out),
        "--allow-weak-teacher",
        *FAST,
        *extra,
    ]


def without_synth(args):
    """The same command line without its --synth KEY=VALUE flags (for a real --dataset)."""
    i = args.index("--synth")
    j = next((k for k in range(i + 1, len(args)) if args[k].startswith("--")), len(args))
    return args[:i] + args[j:]


def main_error(main, args, capsys):
    """Run a script's main() in-process; it must end with one error line and exit code 2. Returns the line."""
    capsys.readouterr()
    with pytest.raises(SystemExit, match="^2$"):
        main(args)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].split(":")[1] == " error" and not any("error" in ln for ln in lines[:-1]), lines
    return lines[-1]


@contextlib.contextmanager
def intra_op_threads(n):
    """torch.set_num_threads(n) inside the block (CPU float results depend on it)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def write_image_folder(root, classes, per_class, seed=0, size=16, per_test_class=2):
    """A fabricated image folder root/{train,test}/<class>/<i>.png: each class a colour of its own under noise
    (a teacher learns it in a few epochs)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (len(classes), 3))
    for split, n in (("train", per_class), ("test", per_test_class)):
        for k, c in enumerate(classes):
            (Path(root) / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(colours[k] + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(Path(root) / split / c / f"{i}.png")
    return Path(root)
