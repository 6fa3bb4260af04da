"""Shared test fixtures and helpers."""

from __future__ import annotations

import os
import importlib.util
from pathlib import Path

# Fast-LTC kernels run eagerly in tests: torch.compile time would dominate the suite. Set
# LTC_RL_COMPILE=1 to test the compiled kernels (tests/test_fast_ltc.py does in its slow tests).
os.environ.setdefault("LTC_RL_COMPILE", "0")

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
CHEETAH_DATA = REPO_ROOT.parent / "shared" / "data" / "cheetah"

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none is present")
requires_cheetah_data = pytest.mark.skipif(
    not CHEETAH_DATA.is_dir(), reason=f"the paper's Half-Cheetah traces are not at {CHEETAH_DATA}"
)


def load_script(name: str):
    """The module of ``scripts/<name>.py`` (scripts are not a package), to call its ``main(argv)`` in-process."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
