"""What a trained recurrent policy does with time, measured along one recorded episode.

Three numbers explain most of how an LTC policy behaves in control (BENCHMARKS.md, "Policy quality"):

- **time constants**: the liquid time constant ``cm / (gleak + synaptic conductance)`` of every neuron at every
  step (LTC cells only), in control steps (each divided by the length of the step the cell took). Far below
  1, the cell settles within one step and acts as an equilibrium (memoryless) network; near or above 1, its
  state carries over from step to step.
- **memory**: how much of a small perturbation of the state survives one step, ``|h'(h + d) - h'(h)| / |d|``
  for the same input (median over the episode). Near 0: the next state ignores the previous one; near 1: it
  keeps it. This holds for every cell (LSTM, GRU, CfC as well as LTC). Where the steps differ in length
  (irregular sampling) and the cell takes the elapsed time, also on the shortest and on the longest quarter
  of the steps: a cell that relaxes for as long as a step lasts keeps less after a long one.
- **input sensitivity**: the mean ``|d next state / d input|`` over the inputs the cell read below zero and
  above zero, separately. An LTC reads each input through sigmoids whose thresholds start above zero, so
  standardised inputs below zero can be almost invisible to it; the ratio says by how much.

And one number that says whether the policy's returns depend on that memory: the **memoryless return**, the
return of the same episode (same seed) with the state reset before every step. Close to the episode's return:
the policy is reactive; far below: it relies on what it carries over (an LSTM's reset state is also off its
trained range, so part of its loss can come from that).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from agents.agent import LTCAgent
from agents.evaluation import EpisodeTrace
from ltc_rl.errors import ConfigError

__all__ = ["CellDiagnostics", "diagnose_cell", "format_diagnostics"]

#: Size of the state perturbation behind ``memory`` (small: the response stays linear).
PERTURBATION = 1e-3


@dataclass(frozen=True)
class CellDiagnostics:
    """The time behaviour of an agent's recurrent cell over one episode (see the module docstring)."""

    steps: int
    time_constants: tuple[float, float, float] | None  # 5th, 50th, 95th percentile, control steps; None: not an LTC
    memory: float  # median fraction of a state perturbation kept after one step
    sensitivity_negative: float  # mean |d next state / d input| over inputs below zero
    sensitivity_positive: float  # ... and over inputs at or above zero
    state_std: float  # spread of the state over the episode, mean over neurons
    episode_return: float  # return of the diagnosed episode
    memoryless_return: float | None = None  # the same episode with the state reset before every step
    #: ((step length, memory) on the shortest quarter of the steps, the same on the longest quarter), lengths in
    #: control steps; None where every step has the same length for the cell
    memory_by_step_length: tuple[tuple[float, float], tuple[float, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_tensor(observations: np.ndarray | dict[str, np.ndarray], device: torch.device) -> Any:
    if isinstance(observations, dict):
        return {key: torch.as_tensor(value, device=device) for key, value in observations.items()}
    return torch.as_tensor(observations, device=device)


def diagnose_cell(agent: LTCAgent, trace: EpisodeTrace, seed: int = 0,
                  memoryless: EpisodeTrace | None = None) -> CellDiagnostics:
    """Time constants, memory and input sensitivity of ``agent``'s cell along ``trace`` (recorded with
    :func:`agents.evaluation.record_episode` from this agent); ``seed`` draws the state perturbation;
    ``memoryless``: the same episode recorded with ``memoryless=True``, for the memoryless return."""
    network = agent.network
    cell = network.cell
    if cell is None:
        raise ConfigError("a feed-forward policy has no recurrent cell to diagnose.")
    device = next(network.parameters()).device
    steps = len(trace.rewards)
    after = torch.as_tensor(trace.states, dtype=torch.float32, device=device)
    before = torch.cat([network.initial_state(1).to(after.dtype), after[:-1]])  # the state each step started from
    dt = network.cell_time(torch.as_tensor(trace.dts, dtype=torch.float32, device=device))
    with torch.no_grad():
        inputs = network.cell_input(_as_tensor(trace.observations, device)).float()
        taus = cell.time_constants(inputs, before) if hasattr(cell, "time_constants") else None
        if taus is not None and dt is not None:  # in steps of the length the cell took (1 unless time_unit says)
            taus = taus / dt.unsqueeze(-1)
    quantiles = None
    if taus is not None:
        quantiles = tuple(float(q) for q in torch.quantile(taus.flatten().double(),
                                                           torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)))
    readable = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        _, state = cell(readable, before, dt)
        jacobian = torch.zeros_like(readable)
        for neuron in range(state.shape[1]):  # rows are independent steps: one backward pass per neuron
            (grad,) = torch.autograd.grad(state[:, neuron].sum(), readable, retain_graph=True)
            jacobian += grad.abs()
    jacobian /= state.shape[1]
    with torch.no_grad():  # the same step from a slightly moved state: how much of the move survives
        generator = torch.Generator(device="cpu").manual_seed(seed)
        perturbation = PERTURBATION * torch.randn(before.shape, generator=generator).to(device)
        _, perturbed = cell(inputs, before + perturbation, dt)
        kept = (perturbed - state.detach()).norm(dim=1) / perturbation.norm(dim=1)
    below = inputs < 0
    return CellDiagnostics(
        steps=steps, time_constants=quantiles, memory=float(kept.median()),
        sensitivity_negative=float(jacobian[below].mean()) if below.any() else float("nan"),
        sensitivity_positive=float(jacobian[~below].mean()) if (~below).any() else float("nan"),
        state_std=float(after.std(dim=0).mean()) if steps > 1 else 0.0, episode_return=trace.episode_return,
        memoryless_return=None if memoryless is None else memoryless.episode_return,
        memory_by_step_length=_memory_by_step_length(kept, dt))


def _memory_by_step_length(kept: torch.Tensor, dt: torch.Tensor | None
                           ) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Median step length and median memory of the shortest and of the longest quarter of the steps."""
    if dt is None or float(dt.max()) <= 1.01 * float(dt.min()):
        return None
    dt = dt.flatten().to(kept.dtype)
    short, long = dt <= dt.quantile(0.25), dt >= dt.quantile(0.75)
    return ((float(dt[short].median()), float(kept[short].median())),
            (float(dt[long].median()), float(kept[long].median())))


def format_diagnostics(diagnostics: CellDiagnostics, cell_name: str) -> str:
    """A few lines for the terminal: the numbers and what they mean."""
    lines = [f"{cell_name} over one episode ({diagnostics.steps} steps):"]
    if diagnostics.time_constants is not None:
        low, median, high = diagnostics.time_constants
        lines.append(f"  time constants {low:.3g} / {median:.3g} / {high:.3g} control steps (5th / 50th / 95th "
                     "percentile; below 1: the cell settles within a step)")
    lines.append(f"  memory {diagnostics.memory:.3f} (share of a state perturbation kept after one step)")
    if diagnostics.memory_by_step_length is not None:
        (short_dt, short_memory), (long_dt, long_memory) = diagnostics.memory_by_step_length
        lines.append(f"  memory {short_memory:.3f} after the shortest quarter of the steps ({short_dt:.2g} control "
                     f"steps long), {long_memory:.3f} after the longest ({long_dt:.2g})")
    ratio = diagnostics.sensitivity_positive / diagnostics.sensitivity_negative \
        if diagnostics.sensitivity_negative > 0 else float("inf")
    lines.append(f"  input sensitivity {diagnostics.sensitivity_negative:.3g} below zero, "
                 f"{diagnostics.sensitivity_positive:.3g} above ({ratio:.1f}x)")
    lines.append(f"  state spread {diagnostics.state_std:.3g} (std over the episode, mean over neurons)")
    if diagnostics.memoryless_return is not None:
        lines.append(f"  return {diagnostics.episode_return:.1f}; with the state reset before every step "
                     f"{diagnostics.memoryless_return:.1f} (what the policy owes to its memory)")
    return "\n".join(lines)
