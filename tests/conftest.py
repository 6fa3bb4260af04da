"""Shared test fixtures and helpers."""

from __future__ import annotations

import os
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

#: Hyperparameters of the smallest run that still writes every file of a run folder (checkpoints at 64 and 128).
TINY_RUN_HP = {"n_steps": 32, "batch_size": 32, "sequence_length": 8, "n_epochs": 1, "n_eval_episodes": 1,
               "eval_freq": 64, "checkpoint_freq": 64, "policy_kwargs": {"units": 4}}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished 128-step LTC run on Pendulum-v1 (normalised observations, checkpoints, best/, monitor/), made once
    per session; tests copy it before changing anything."""
    import envs
    from ltc_rl.kernels import compile_mode
    from ltc_rl.runs.config import resolve_config
    from ltc_rl.runs.training import train

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    config = resolve_config("Pendulum-v1", "ltc", total_timesteps=128, n_envs=2, seed=0, device="cpu",
                            overrides=TINY_RUN_HP, env_options={"obs_noise": 0.0, "irregular": None, "dt_in_obs": False},
                            env_ids=envs.available_ids())
    with compile_mode(False):
        train(config, run, progress_bar=False, argv=["tiny_run"], make_env=envs.make_vec)
    return run
