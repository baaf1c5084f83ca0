"""Shared pytest setup: the repo's flat modules import from any working directory, the network is
blocked in this process and in every Python process a test starts (tests/offline/sitecustomize.py),
and one tiny teacher is trained once for the whole session."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "offline"))
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE / "offline"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
import pytest  # noqa: E402
import sitecustomize  # noqa: E402,F401  (blocks sockets in the test process too)

import train_teacher  # noqa: E402
from helpers import teacher_args  # noqa: E402


@pytest.fixture(scope="session")
def teacher(tmp_path_factory):
    """A tiny teacher: test_resnet pretrained on synth-src for 2 epochs, then fine-tuned on synth-fine for 2."""
    d = tmp_path_factory.mktemp("teachers")
    src = d / "src.pt"
    assert train_teacher.main(teacher_args(src, "--epochs", "2", dataset="synth-src")) == 0
    fine = d / "fine.pt"
    assert train_teacher.main(teacher_args(fine, "--init", str(src), "--epochs", "2")) == 0
    return fine
