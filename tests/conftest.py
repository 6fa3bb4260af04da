"""Shared test fixtures and helpers: tiny training settings, reference/fast LTC cell pairs, markers."""

from __future__ import annotations

import copy
import os
from pathlib import Path

# Fast-LTC kernels run eagerly in tests: torch.compile time would dominate the suite. Set
# LTC_RL_COMPILE=1 to test the compiled kernels (tests/test_fast_ltc.py does in its slow tests).
os.environ.setdefault("LTC_RL_COMPILE", "0")

import pytest
import torch

from ltc_rl import wirings
from ltc_rl.cells import LTCCell

REPO_ROOT = Path(__file__).resolve().parents[1]
CHEETAH_DATA = REPO_ROOT.parent / "shared" / "data" / "cheetah"

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none is present")
requires_cheetah_data = pytest.mark.skipif(
    not CHEETAH_DATA.is_dir(), reason=f"the paper's Half-Cheetah traces are not at {CHEETAH_DATA}"
)


# ---------------------------------------------------------------------------------------------- tiny runs
#: The smallest PPO settings the tests train with (recurrent policies; a run of a few hundred steps takes seconds).
TINY_HP: dict[str, int] = {"n_steps": 32, "batch_size": 32, "sequence_length": 8, "n_epochs": 1}


def hp_overrides(hyperparams: dict[str, object]) -> tuple[str, ...]:
    """``name=value`` overrides (``policy_kwargs.units`` for a nested entry), as ``--hp`` takes them."""
    return tuple(f"{name}={value}" for name, value in hyperparams.items())


def hp_flags(hyperparams: dict[str, object]) -> list[str]:
    """``--hp name=value`` flags of the training scripts."""
    return [flag for override in hp_overrides(hyperparams) for flag in ("--hp", override)]


def tiny_flags(**extra: object) -> list[str]:
    """Command-line flags of a tiny run: :data:`TINY_HP`, then ``extra`` hyperparameters (``policy_kwargs__units``
    for ``policy_kwargs.units``), then ``--no-progress``."""
    extra = {name.replace("__", "."): value for name, value in extra.items()}
    return [*hp_flags({**TINY_HP, **extra}), "--no-progress"]


#: Hyperparameters of the smallest run that still writes every file of a run folder (checkpoints at 64 and 128).
TINY_RUN_HP = {**TINY_HP, "n_eval_episodes": 1, "eval_freq": 64, "checkpoint_freq": 64, "policy_kwargs": {"units": 4}}


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
                            overrides=TINY_RUN_HP,
                            env_options={"obs_noise": 0.0, "irregular": None, "dt_in_obs": False},
                            env_ids=envs.available_ids())
    with compile_mode(False):
        train(config, run, progress_bar=False, argv=["tiny_run"], make_env=envs.make_vec)
    return run


# ---------------------------------------------------------------------------------------------- LTC cell pairs
#: Inputs, batch rows and time steps of the cell-pair tests.
INPUTS, BATCH, STEPS = 5, 3, 6
#: How close the fast path must stay to the reference: absolute, relative to the result's largest entry.
TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-4}

def make_wiring(name: str) -> wirings.Wiring:
    if name == "fc":
        return wirings.FullyConnected(10, 3)
    if name == "random":
        return wirings.Random(12, 4, sparsity_level=0.7, seed=3)
    return wirings.AutoNCP(16, 3, seed=5)


def make_pair(wiring: str = "fc", solver: str = "fused", dtype: torch.dtype = torch.float64,
              **kwargs) -> tuple[LTCCell, LTCCell]:
    """A reference cell and a fast cell with identical parameters."""
    torch.manual_seed(0)
    reference = LTCCell(INPUTS, make_wiring(wiring), solver=solver, fast=False, **kwargs).to(dtype)
    with torch.no_grad():  # move the input/output mappings away from their ones/zeros init
        for name in ("input_w", "input_b", "output_w", "output_b"):
            if hasattr(reference, name):
                getattr(reference, name).add_(0.3 * torch.randn_like(getattr(reference, name)))
    fast = copy.deepcopy(reference)
    fast.fast = True
    return reference, fast


def make_inputs(cell: LTCCell, dtype: torch.dtype, with_dt: bool, with_resets: bool,
                device: str = "cpu") -> dict:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, STEPS, INPUTS, generator=generator, dtype=dtype).to(device).requires_grad_()
    state = (0.2 * torch.randn(BATCH, cell.state_size, generator=generator, dtype=dtype)).to(device).requires_grad_()
    dt = (torch.rand(BATCH, STEPS, generator=generator, dtype=dtype) + 0.3).to(device).requires_grad_() \
        if with_dt else None
    resets = (torch.rand(BATCH, STEPS, generator=generator) < 0.3).to(device) if with_resets else None
    return {"x": x, "state": state, "dt": dt, "resets": resets}


def run_sequence(cell: LTCCell, inputs: dict) -> dict[str, torch.Tensor]:
    """Outputs, final state and the gradients of a loss that uses both."""
    outputs, final = cell.forward_sequence(inputs["x"], inputs["state"], inputs["dt"], inputs["resets"])
    loss = (outputs ** 2).sum() + (final * torch.linspace(-1, 1, final.shape[1], dtype=final.dtype,
                                                          device=final.device)).sum()
    named = dict(cell.named_parameters())
    named.update({key: inputs[key] for key in ("x", "state", "dt") if inputs[key] is not None})
    grads = torch.autograd.grad(loss, list(named.values()))
    return {"outputs": outputs, "final": final, **{f"grad {k}": g for k, g in zip(named, grads)}}


def assert_match(fast: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    assert fast.keys() == reference.keys()
    tol = TOLERANCE[dtype]
    for key, expected in reference.items():
        actual, expected = fast[key].detach(), expected.detach()
        assert actual.shape == expected.shape, key
        scale = max(float(expected.abs().max()), 1.0 if dtype == torch.float64 else 1e-12)
        error = float((actual - expected).abs().max())
        assert error <= tol * scale, f"{key}: max error {error:.3g} exceeds {tol:g} x {scale:.3g}"
