"""Training throughput with the environment copies in one process (``dummy``) or one process each (``subproc``).

Each candidate is a policy trained through the pipeline of ``scripts/train.py`` (shipped hyperparameters
of the task, VecNormalize as configured) with ``--vec-env dummy`` and ``--vec-env subproc``: the same
settings and the same number of environment steps. Throughput is environment steps per second of
``learn`` and, separately, of the rollouts alone (the part that parallel environments can speed up).
Runs go round-robin and the best of ``repeats`` counts, so that a burst of load from other processes
hurts all candidates alike; the spread of the repeats and the load average say how noisy the machine was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from stable_baselines3.common.vec_env import VecNormalize

from ltc_rl.errors import ConfigError
from ltc_rl.bench.ppo import RolloutTimer
from ltc_rl.env_api import VEC_ENVS
from ltc_rl.runs.config import POLICIES, resolve_config
from ltc_rl.runs.training import EnvFactory, build_model, sb3_make_vec

__all__ = ["VecEnvBenchSettings", "VecEnvResult", "run_vec_env_benchmark", "format_vec_env_results"]


@dataclass
class VecEnvBenchSettings:
    """What to compare: ``policies`` x ``vec_envs`` on ``env_id``, ``steps`` environment steps per run."""

    env_id: str = "HalfCheetah-v4"
    policies: tuple[str, ...] = ("ltc", "mlp")
    vec_envs: tuple[str, ...] = ("dummy", "subproc")
    steps: int = 8192
    repeats: int = 3
    n_envs: int | None = None
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}.")
        unknown = [p for p in self.policies if p not in POLICIES] + [v for v in self.vec_envs if v not in VEC_ENVS]
        if unknown or not self.policies or not self.vec_envs:
            raise ConfigError(f"unknown or missing policies / vec envs {unknown}; policies: {', '.join(POLICIES)}, "
                              f"vec envs: {', '.join(VEC_ENVS)}.")


@dataclass
class VecEnvResult:
    """Best-of-repeats throughput of one (policy, vec env)."""

    policy: str
    vec_env: str
    n_envs: int
    steps_per_s: float
    rollout_steps_per_s: float
    runs: list[float] = field(default_factory=list)


def _time_one(settings: VecEnvBenchSettings, policy: str, vec_env: str, make_env: EnvFactory,
              steps: int) -> tuple[float, float, int]:
    config = resolve_config(settings.env_id, policy, steps, settings.n_envs, settings.seed, settings.device,
                            vec_env=vec_env)
    env = make_env(config.env_id, n_envs=config.n_envs, seed=config.seed, vec_env=config.vec_env)
    normalize = config.normalize_kwargs()
    if normalize is not None:
        env = VecNormalize(env, **normalize)
    try:
        model = build_model(config, env)
        timer = RolloutTimer()
        start = time.perf_counter()
        model.learn(steps, callback=timer)
        seconds = time.perf_counter() - start
        return model.num_timesteps / seconds, model.num_timesteps / timer.rollout_seconds, config.n_envs
    finally:
        env.close()


def run_vec_env_benchmark(settings: VecEnvBenchSettings, make_env: EnvFactory = sb3_make_vec,
                          progress: Callable[[str], None] = print) -> list[VecEnvResult]:
    """One untimed warm-up per policy (``torch.compile``, caches), then ``repeats`` round-robin timed runs."""
    candidates = [(policy, vec_env) for policy in settings.policies for vec_env in settings.vec_envs]
    for policy in settings.policies:
        _time_one(settings, policy, settings.vec_envs[0], make_env, 1)
    measured: dict[tuple[str, str], list[tuple[float, float, int]]] = {c: [] for c in candidates}
    for repeat in range(settings.repeats):
        for policy, vec_env in candidates:
            rate, rollout_rate, n_envs = _time_one(settings, policy, vec_env, make_env, settings.steps)
            measured[policy, vec_env].append((rate, rollout_rate, n_envs))
            progress(f"[{repeat + 1}/{settings.repeats}] {policy} {vec_env}: {rate:.0f} env-steps/s "
                     f"(rollouts {rollout_rate:.0f}/s), load average {os.getloadavg()[0]:.1f}")
    return [VecEnvResult(policy, vec_env, runs[0][2], max(r[0] for r in runs), max(r[1] for r in runs),
                         [r[0] for r in runs]) for (policy, vec_env), runs in measured.items()]


def format_vec_env_results(results: list[VecEnvResult], settings: VecEnvBenchSettings) -> str:
    """A table of throughputs, the speed-up of each vec env over the first one, and the repeats' spread."""
    base = {r.policy: r for r in results if r.vec_env == settings.vec_envs[0]}
    lines = [f"{settings.env_id}: shipped hyperparameters per policy, {settings.steps} env steps per run, best of "
             f"{settings.repeats}, device {settings.device}, torch threads {torch.get_num_threads()}, "
             f"{os.cpu_count()} CPUs, load average now {os.getloadavg()[0]:.1f}",
             f"{'policy':<8}{'vec env':<9}{'n_envs':>7}{'env-steps/s':>13}{'rollout steps/s':>17}"
             f"{'x ' + settings.vec_envs[0]:>10}{'rollouts x':>12}{'repeat spread':>15}"]
    for r in results:
        ref = base[r.policy]
        spread = f"{100 * (max(r.runs) - min(r.runs)) / max(r.runs):.0f}%"
        lines.append(f"{r.policy:<8}{r.vec_env:<9}{r.n_envs:>7}{r.steps_per_s:>13.0f}{r.rollout_steps_per_s:>17.0f}"
                     f"{r.steps_per_s / ref.steps_per_s:>10.2f}{r.rollout_steps_per_s / ref.rollout_steps_per_s:>12.2f}"
                     f"{spread:>15}")
    return "\n".join(lines)
