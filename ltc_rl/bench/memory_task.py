"""sb3-contrib's learning check for recurrent PPO, run on our recurrent policies and on sb3-contrib's own
``RecurrentPPO`` side by side, seed by seed.

The check (sb3-contrib's ``test_ppo_lstm_performance``): CartPole with the velocities hidden (a memory task:
a feed-forward policy stays near 50), 8 copies under ``VecNormalize``, ``n_steps`` 128, batch 256, 10 epochs,
learning rate 7e-4, ``gae_lambda`` 0.98, ``max_grad_norm`` 1, 64 hidden units, a recurrent critic of its own,
50k steps; it passes when the deterministic return over 10 episodes on the training environment is at least
450 (500 is the maximum). An evaluation every 5k steps (20 episodes, on environments that share the training
normalisation) gives the curve.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from ltc_rl.errors import ConfigError

__all__ = ["CANDIDATES", "THRESHOLD", "CheckResult", "run_check", "format_results"]

#: Candidate name -> our policy class name (None: sb3-contrib's own RecurrentPPO with its LSTM, the anchor).
CANDIDATES: dict[str, str | None] = {"ltc": "MlpLtcPolicy", "cfc": "MlpCfcPolicy", "lstm": "MlpLstmPolicy",
                                     "gru": "MlpGruPolicy", "sb3-contrib-lstm": None}
THRESHOLD = 450.0
SETTINGS: dict[str, Any] = dict(n_steps=128, learning_rate=7e-4, batch_size=256, n_epochs=10, max_grad_norm=1.0,
                                gae_lambda=0.98)
POLICY_KWARGS: dict[str, Any] = dict(net_arch=dict(vf=[64], pi=[]), lstm_hidden_size=64, ortho_init=False,
                                     enable_critic_lstm=True)
N_ENVS = 8


@dataclass(frozen=True)
class CheckResult:
    """One candidate and seed: the final return of the check and the periodic evaluations before it."""

    candidate: str
    seed: int
    final_return: float
    curve: tuple[tuple[int, float], ...]  # (steps, mean return of the periodic evaluation)
    wall_s: float

    @property
    def passed(self) -> bool:
        return self.final_return >= THRESHOLD


def _build(candidate: str, env: Any, seed: int, policy_kwargs: Mapping[str, Any]) -> Any:
    if CANDIDATES[candidate] is None:
        from sb3_contrib import RecurrentPPO as ContribRecurrentPPO

        return ContribRecurrentPPO("MlpLstmPolicy", env, seed=seed, policy_kwargs=dict(POLICY_KWARGS), **SETTINGS)
    from ltc_rl.rl import RecurrentPPO

    kwargs = {**POLICY_KWARGS, **policy_kwargs}
    if "critic" in policy_kwargs:  # our critic option replaces sb3-contrib's flag for it
        kwargs.pop("enable_critic_lstm")
    return RecurrentPPO(CANDIDATES[candidate], env, seed=seed, policy_kwargs=kwargs, **SETTINGS)


def run_check(make_env: Callable[[], gym.Env], candidates: Sequence[str], seeds: Sequence[int],
              total_timesteps: int = 50_000, eval_every: int = 5_000, eval_episodes: int = 20,
              policy_kwargs: Mapping[str, Any] | None = None,
              progress: Callable[[str], None] = print) -> list[CheckResult]:
    """The check for every candidate and seed (``make_env``: one CartPole-without-velocities environment);
    ``policy_kwargs`` change our policies only (e.g. ``{"critic": "detached"}``), never the anchor."""
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    unknown = [name for name in candidates if name not in CANDIDATES]
    if unknown:
        raise ConfigError(f"unknown candidate(s) {unknown}; choose from {', '.join(CANDIDATES)}.")
    if total_timesteps < 1 or eval_every < 1 or eval_episodes < 1:
        raise ConfigError("total_timesteps, eval_every and eval_episodes must be >= 1.")
    results = []
    for candidate in candidates:
        for seed in seeds:
            progress(f"{candidate}, seed {seed}: training {total_timesteps:,} steps...")
            env = VecNormalize(make_vec_env(make_env, n_envs=N_ENVS, seed=seed))
            eval_env = VecNormalize(make_vec_env(make_env, n_envs=4, seed=seed + 1000), training=False,
                                    norm_reward=False)
            try:
                with tempfile.TemporaryDirectory() as folder:  # EvalCallback keeps its history only with a log path
                    callback = EvalCallback(eval_env, n_eval_episodes=eval_episodes,
                                            eval_freq=max(1, eval_every // N_ENVS), log_path=folder, verbose=0)
                    start = time.perf_counter()
                    try:
                        model = _build(candidate, env, seed, policy_kwargs or {})
                    except (TypeError, ValueError) as exc:  # a policy keyword the policy does not take
                        raise ConfigError(f"{candidate} does not take the policy keywords {dict(policy_kwargs or {})}"
                                          f": {exc}") from None
                    model.learn(total_timesteps=total_timesteps, callback=callback)
                    final, _ = evaluate_policy(model, env, n_eval_episodes=10)
                    curve = tuple((int(step), float(np.mean(returns))) for step, returns
                                  in zip(callback.evaluations_timesteps, callback.evaluations_results))
            finally:
                env.close()
                eval_env.close()
            result = CheckResult(candidate, seed, float(final), curve, time.perf_counter() - start)
            results.append(result)
            progress(f"{candidate}, seed {seed}: {result.final_return:.1f} "
                     f"({'passed' if result.passed else 'failed'}, {result.wall_s / 60:.1f} min)")
    return results


def format_results(results: Sequence[CheckResult]) -> str:
    """A markdown table: each run's periodic evaluations and final return, then each candidate's pass count."""
    steps = sorted({step for result in results for step, _ in result.curve})
    lines = ["| candidate | seed | " + " | ".join(f"{step // 1000}k" for step in steps) + f" | final (>= {THRESHOLD:g}?) |",
             "|---|---|" + "---:|" * len(steps) + "---|"]
    for result in results:
        curve = dict(result.curve)
        cells = [f"{curve[step]:.0f}" if step in curve else "-" for step in steps]
        lines.append(f"| {result.candidate} | {result.seed} | " + " | ".join(cells)
                     + f" | {result.final_return:.1f} ({'yes' if result.passed else 'no'}) |")
    lines.append("")
    for candidate in dict.fromkeys(result.candidate for result in results):
        own = [result for result in results if result.candidate == candidate]
        lines.append(f"{candidate}: passed on {sum(r.passed for r in own)} of {len(own)} seeds, mean final return "
                     f"{np.mean([r.final_return for r in own]):.1f}")
    return "\n".join(lines)

