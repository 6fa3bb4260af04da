"""Episode returns of a trained model, carrying recurrent state and elapsed time like training does.

SB3's ``evaluate_policy`` works with :class:`~ltc_rl.rl.ppo.RecurrentPPO` too, but cannot pass the elapsed
time an environment reports (:data:`~ltc_rl.rl.elapsed_time.ELAPSED_TIME_KEY`) to the cells; this function
does, and serves plain SB3 models (PPO ``MlpPolicy``) as well. Environments that report an upside-down body
(:data:`~ltc_rl.env_api.UPSIDE_DOWN_KEY`) also get each episode's share of steps spent upside down: a HalfCheetah
that flips over can keep running on its back, and its return alone does not show the fall.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, is_vecenv_wrapped

from ltc_rl.env_api import UPSIDE_DOWN_KEY
from ltc_rl.rl.elapsed_time import DEFAULT_ELAPSED_TIME, elapsed_times, reset_infos

__all__ = ["evaluate", "EpisodeResults"]


class EpisodeResults(NamedTuple):
    """Per episode: return, length, and the share of steps the body spent upside down (None where the
    environment does not report it)."""

    returns: list[float]
    lengths: list[int]
    upside_down: list[float] | None


def evaluate(model: BaseAlgorithm, env: VecEnv, n_eval_episodes: int = 10,
             deterministic: bool = True) -> EpisodeResults:
    """Returns and lengths (and upside-down shares) of ``n_eval_episodes`` episodes, spread evenly over ``env``'s
    copies.

    Episode returns come from the ``Monitor`` wrapper when ``env`` has one (the true task reward, even under
    reward-changing wrappers), else from the rewards ``env`` returns.
    """
    if n_eval_episodes < 1:
        raise ValueError(f"n_eval_episodes must be >= 1, got {n_eval_episodes}.")
    takes_dt = "dt" in inspect.signature(model.predict).parameters
    monitored = is_vecenv_wrapped(env, VecMonitor) or env.env_is_wrapped(Monitor)[0]
    n_envs = env.num_envs
    nominal = getattr(getattr(model, "policy", model), "time_unit", None) or DEFAULT_ELAPSED_TIME  # unreported steps
    targets = np.array([(n_eval_episodes + i) // n_envs for i in range(n_envs)])
    counts = np.zeros(n_envs, dtype=int)
    running_returns, running_lengths = np.zeros(n_envs), np.zeros(n_envs, dtype=int)
    running_upside_down = np.zeros(n_envs, dtype=int)
    returns: list[float] = []
    lengths: list[int] = []
    upside_down: list[float] = []
    reports_posture = False
    observations = env.reset()
    starts = np.ones(n_envs, dtype=bool)
    dts = elapsed_times([{}] * n_envs, starts, reset_infos(env), default=nominal)
    state = None
    while (counts < targets).any():
        extra = {"dt": dts} if takes_dt else {}
        actions, state = model.predict(observations, state=state, episode_start=starts,  # type: ignore[arg-type]
                                       deterministic=deterministic, **extra)
        observations, rewards, dones, infos = env.step(actions)
        running_returns += rewards
        running_lengths += 1
        flags = [info.get(UPSIDE_DOWN_KEY) for info in infos]
        reports_posture = reports_posture or any(flag is not None for flag in flags)
        running_upside_down += np.array([bool(flag) for flag in flags])
        for i in np.flatnonzero(dones):
            if counts[i] < targets[i] and (not monitored or "episode" in infos[i]):
                episode = infos[i].get("episode") if monitored else None
                returns.append(float(episode["r"]) if episode else float(running_returns[i]))
                lengths.append(int(episode["l"]) if episode else int(running_lengths[i]))
                upside_down.append(float(running_upside_down[i] / running_lengths[i]))
                counts[i] += 1
            running_returns[i], running_lengths[i], running_upside_down[i] = 0.0, 0, 0
        starts = dones.astype(bool)
        dts = elapsed_times(infos, dones, reset_infos(env), default=nominal)
    return EpisodeResults(returns, lengths, upside_down if reports_posture else None)
