"""Shared pytest setup: the network is blocked in this process and in every Python process a test starts
(tests/offline/sitecustomize.py; pyproject.toml puts the repo root, tests/ and tests/offline/ on the path),
and one tiny teacher is trained once for the whole session."""

import os
from pathlib import Path

import pytest
import sitecustomize  # noqa: F401  (blocks sockets in the test process too)

import train_teacher
from helpers import teacher_args

OFFLINE = Path(__file__).resolve().parent / "offline"
os.environ["PYTHONPATH"] = os.pathsep.join([str(OFFLINE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)


@pytest.fixture(scope="session")
def teacher(tmp_path_factory):
    """A tiny teacher: test_resnet pretrained on synth-src for 2 epochs, then fine-tuned on synth-fine for 2."""
    d = tmp_path_factory.mktemp("teachers")
    src = d / "src.pt"
    assert train_teacher.main(teacher_args(src, "--epochs", "2", dataset="synth-src")) == 0
    fine = d / "fine.pt"
    assert train_teacher.main(teacher_args(fine, "--init", str(src), "--epochs", "2")) == 0
    return fine
