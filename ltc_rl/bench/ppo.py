"""PPO training throughput of our recurrent policies against sb3-contrib's LSTM and SB3's MLP, in one run.

Every candidate trains on the same task with the same PPO settings (environments, ``n_steps``,
``batch_size``, ``n_epochs``, recurrent units); throughput is environment steps per second of
``learn`` (rollouts and updates), the best of ``repeats`` round-robin runs. It is measured twice: per
second of wall-clock time, and per second of this process's CPU time, which load from other processes
on a shared machine barely disturbs (with one torch thread and in-process environments both agree on
an idle machine); the ratios use CPU time. Needs the ``bench`` extra (sb3-contrib).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from ltc_rl.errors import ConfigError
from ltc_rl.kernels import compile_enabled, native

__all__ = ["BenchSettings", "BenchResult", "CANDIDATES", "RolloutTimer", "run_benchmark", "format_results",
           "ltc_implementation"]

#: Candidate names in the order they run; the first two are ours.
CANDIDATES = ("ltc", "lstm", "sb3-contrib-lstm", "sb3-mlp")
REFERENCE = "sb3-contrib-lstm"


@dataclass
class BenchSettings:
    """Identical PPO settings for every candidate."""

    env_id: str = "HalfCheetah-v4"
    n_envs: int = 4
    n_steps: int = 512
    batch_size: int = 1024
    n_epochs: int = 10
    units: int = 64
    sequence_length: int = 32
    iterations: int = 2
    repeats: int = 2
    device: str = "cpu"
    seed: int = 0
    candidates: tuple[str, ...] = CANDIDATES

    def __post_init__(self) -> None:
        counts = {name: getattr(self, name) for name in ("n_envs", "n_steps", "batch_size", "n_epochs", "units",
                                                         "sequence_length", "iterations", "repeats")}
        bad = {name: value for name, value in counts.items() if not isinstance(value, int) or value < 1}
        if bad:
            raise ConfigError(f"benchmark settings {bad} must be integers >= 1.")
        unknown = set(self.candidates) - set(CANDIDATES)
        if unknown or not self.candidates:
            raise ConfigError(f"unknown or missing candidates {sorted(unknown)}; choose from {', '.join(CANDIDATES)}.")


@dataclass
class BenchResult:
    name: str
    steps_per_s: float  #: per second of wall-clock time
    steps_per_cpu_s: float  #: per second of this process's CPU time
    rollout_share: float  #: share of the wall-clock time spent collecting rollouts
    runs: list[float] = field(default_factory=list)  #: steps per CPU second of every repeat


class RolloutTimer(BaseCallback):
    """Adds up the time spent collecting rollouts (the rest of ``learn`` is mostly the PPO update)."""

    def __init__(self) -> None:
        super().__init__()
        self.rollout_seconds = 0.0
        self._start = 0.0

    def _on_rollout_start(self) -> None:
        self._start = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.rollout_seconds += time.perf_counter() - self._start

    def _on_step(self) -> bool:
        return True


def _builders(settings: BenchSettings) -> dict[str, Callable[[Any], Any]]:
    from sb3_contrib import RecurrentPPO as ContribRecurrentPPO
    from stable_baselines3 import PPO

    from ltc_rl.rl.ppo import RecurrentPPO

    common = dict(n_steps=settings.n_steps, batch_size=settings.batch_size, n_epochs=settings.n_epochs,
                  seed=settings.seed, device=settings.device, verbose=0)
    ours = dict(common, sequence_length=settings.sequence_length)
    return {
        "ltc": lambda env: RecurrentPPO("MlpLtcPolicy", env, policy_kwargs=dict(units=settings.units), **ours),
        "lstm": lambda env: RecurrentPPO("MlpLstmPolicy", env, policy_kwargs=dict(units=settings.units), **ours),
        "sb3-contrib-lstm": lambda env: ContribRecurrentPPO(
            "MlpLstmPolicy", env, policy_kwargs=dict(lstm_hidden_size=settings.units), **common),
        "sb3-mlp": lambda env: PPO("MlpPolicy", env, **common),
    }


def ltc_implementation() -> str:
    """Which code runs the policies' LTC cells (fast path, the default): the native kernel or compiled graphs."""
    return (f"fast kernels (ltc_rl.kernels.ltc_fast): fused solver on CPU via {native.describe()}; "
            f"torch.compile {'on' if compile_enabled() else 'off'} elsewhere")


def _time_one(build: Callable[[Any], Any], settings: BenchSettings) -> tuple[float, float, float]:
    """``(steps per wall second, steps per CPU second, rollout share)`` of one training run."""
    env = make_vec_env(settings.env_id, n_envs=settings.n_envs, seed=settings.seed)
    model = build(env)
    native.ensure_for(model.policy)  # a first native-kernel build is not timed
    timer = RolloutTimer()
    steps = settings.iterations * settings.n_steps * settings.n_envs
    start, cpu_start = time.perf_counter(), time.process_time()
    model.learn(steps, callback=timer)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    env.close()
    return model.num_timesteps / seconds, model.num_timesteps / cpu_seconds, timer.rollout_seconds / seconds


def run_benchmark(settings: BenchSettings, progress: Callable[[str], None] = print) -> list[BenchResult]:
    """Train every candidate ``repeats`` times (round-robin) and keep each one's best throughput."""
    builders = _builders(settings)
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in settings.candidates}
    for repeat in range(settings.repeats):
        for name in settings.candidates:
            wall, cpu, share = _time_one(builders[name], settings)
            runs[name].append((cpu, wall, share))
            progress(f"[{repeat + 1}/{settings.repeats}] {name}: {wall:.1f} env-steps/s wall, {cpu:.1f} per CPU "
                     f"second ({100 * share:.0f}% of the time in rollouts)")
    results = []
    for name, measured in runs.items():
        cpu, wall, share = max(measured)
        results.append(BenchResult(name, wall, cpu, share, [run[0] for run in measured]))
    return results


def format_results(results: list[BenchResult], settings: BenchSettings) -> str:
    """A table with env-steps/s and the CPU-time ratios to sb3-contrib's LSTM and SB3's MLP (where measured)."""
    rates = {r.name: r.steps_per_cpu_s for r in results}
    lines = [f"{settings.env_id}: {settings.n_envs} envs, n_steps {settings.n_steps}, batch {settings.batch_size}, "
             f"{settings.n_epochs} epochs, {settings.units} units, our sequence_length {settings.sequence_length}, "
             f"{settings.iterations} PPO iterations x best of {settings.repeats}, device {settings.device}, "
             f"torch threads {torch.get_num_threads()}",
             f"LTC forward_sequence: {ltc_implementation()}",
             f"{'candidate':<18}{'steps/s wall':>13}{'steps/CPU s':>13}{'rollout %':>11}{'x sb3-contrib LSTM':>20}"
             f"{'x SB3 MLP':>11}"]
    for r in results:
        vs_lstm = f"{r.steps_per_cpu_s / rates[REFERENCE]:.2f}" if REFERENCE in rates else "-"
        vs_mlp = f"{r.steps_per_cpu_s / rates['sb3-mlp']:.2f}" if "sb3-mlp" in rates else "-"
        lines.append(f"{r.name:<18}{r.steps_per_s:>13.1f}{r.steps_per_cpu_s:>13.1f}{100 * r.rollout_share:>10.0f}%"
                     f"{vs_lstm:>20}{vs_mlp:>11}")
    return "\n".join(lines)
