"""Shared pytest setup: the repo's flat modules import from any working directory, and the network
is blocked in this process and in every Python process a test starts (tests/offline/sitecustomize.py)."""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "offline"))
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE / "offline"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
import sitecustomize  # noqa: E402,F401  (blocks sockets in the test process too)
