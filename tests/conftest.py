"""Shared pytest setup: the repo's flat modules (data.py, kd.py, ...) import from any working directory."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
