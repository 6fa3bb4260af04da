"""One factory for the environments of training and evaluation, single and vectorised."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym

from envs.registration import check_env_id, import_gym_packages
from envs.wrappers import (ElapsedTimeInfo, ElapsedTimeObservation, GaussianObservationNoise, IrregularSampling,
                           NonFiniteObservationCheck, UpsideDownInfo, root_pitch_address)
from ltc_rl.env_api import VEC_ENVS, env_period, vec_env_class
from ltc_rl.startup_messages import show_startup_messages_once

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

__all__ = ["make", "make_vec"]


def _frame_range(irregular: Sequence[int]) -> tuple[int, int]:
    if isinstance(irregular, (str, bytes)) or not isinstance(irregular, Sequence) or len(irregular) != 2:
        raise ValueError(f"irregular must be a (min_frames, max_frames) pair or None; got {irregular!r}.")
    return int(irregular[0]), int(irregular[1])


def make(env_id: str, *, obs_noise: float = 0.0, irregular: Sequence[int] | None = None, dt_in_obs: bool = False,
         seed: int | None = None, render_mode: str | None = None,
         env_kwargs: Mapping[str, Any] | None = None, check_finite: bool = True,
         gym_packages: Sequence[str] = ()) -> gym.Env:
    """Creates ``env_id`` with the requested observation and timing wrappers.

    Args:
        env_id: any id registered with gymnasium: a shipped task (:func:`envs.available_ids`: "HalfCheetah-v5",
            ..., and the partially observable "NoVel" variants) or your own.
        obs_noise: sigma of Gaussian noise added to each observation entry (0: none).
        irregular: ``(min_frames, max_frames)``: every step simulates a random number of frames
            in that range (see :class:`envs.wrappers.IrregularSampling`); None: regular steps.
        dt_in_obs: append the step's elapsed time (noise-free) to the observation.
        seed: seeds the env, its noise and frame generators and its spaces; the env is reset once
            with it, so the first ``reset()`` continues a reproducible stream.
        render_mode: passed to gymnasium ("rgb_array", "human", ...).
        env_kwargs: further keyword arguments for ``gymnasium.make`` (e.g. ``max_episode_steps``).
        check_finite: raise a clear error on NaN / infinite observations (see below).
        gym_packages: modules to import first (they register ``env_id`` with gymnasium), e.g. in a
            ``subproc`` worker process.

    Every step (and reset) reports simulated seconds in ``info[ELAPSED_TIME_KEY]``, with or
    without ``irregular``, where the task's period is known (MuJoCo tasks, or a ``dt`` / ``tau``
    attribute); observations are checked for NaN / infinity. Bodies with a root pitch joint (HalfCheetah, Hopper,
    Walker2d) report ``info[UPSIDE_DOWN_KEY]`` after every step (:class:`envs.wrappers.UpsideDownInfo`).
    """
    show_startup_messages_once()
    import_gym_packages(gym_packages)
    check_env_id(env_id)
    if dt_in_obs not in (True, False):
        raise ValueError(f"dt_in_obs must be True or False; got {dt_in_obs!r}.")
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    env = gym.make(env_id, **kwargs)
    if root_pitch_address(env) is not None:
        env = UpsideDownInfo(env)
    if irregular is None or irregular is False:
        if dt_in_obs or env_period(env) is not None:  # an env of unknown period reports no elapsed time
            env = ElapsedTimeInfo(env)
    else:
        env = IrregularSampling(env, *_frame_range(irregular), seed=seed)
    if obs_noise:
        env = GaussianObservationNoise(env, obs_noise, seed=seed)
    if dt_in_obs:
        env = ElapsedTimeObservation(env)
    if check_finite:
        env = NonFiniteObservationCheck(env)
    if seed is not None:
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
        env.reset(seed=seed)
    return env


def _make_monitored(env_id: str, seed: int | None, monitor_file: str | None, monitor_kwargs: dict[str, Any],
                    options: dict[str, Any]) -> gym.Env:
    from stable_baselines3.common.monitor import Monitor

    return Monitor(make(env_id, seed=seed, **options), filename=monitor_file, **monitor_kwargs)


def make_vec(env_id: str, n_envs: int = 1, seed: int | None = None,
             vec_env: Literal["dummy", "subproc"] = "dummy", monitor_dir: str | None = None,
             monitor_kwargs: Mapping[str, Any] | None = None, **options: Any) -> VecEnv:
    """``n_envs`` copies of :func:`make` (each in a stable-baselines3 ``Monitor``) as an SB3 VecEnv.

    Copy ``i`` is seeded with ``seed + i`` (also for the VecEnv's first reset); ``options`` are the
    keyword options of :func:`make`. ``vec_env="subproc"`` runs each copy in its own process;
    ``monitor_dir`` writes the Monitor CSV files (``{i}.monitor.csv``) there; ``monitor_kwargs`` go to each
    ``Monitor`` (e.g. ``override_existing=False`` appends to existing files, as SB3's ``make_vec_env``).
    With ``"subproc"`` the copies skip their own NaN check, whose error would die inside the worker
    process: check in the parent with ``ltc_rl.rl.guards.VecCheckFinite`` (the training pipeline does).
    """
    import_gym_packages(options.get("gym_packages", ()))
    check_env_id(env_id)
    if vec_env not in VEC_ENVS:
        raise ValueError(f"vec_env must be one of {sorted(VEC_ENVS)}; got {vec_env!r}.")
    if int(n_envs) != n_envs or n_envs < 1:
        raise ValueError(f"n_envs must be a positive integer; got {n_envs!r}.")
    inspect.signature(make).bind(env_id, **options)  # unknown options fail here, not in a worker process
    options = {**options, "check_finite": vec_env == "dummy"}
    if monitor_dir is not None:
        os.makedirs(monitor_dir, exist_ok=True)
    env_fns = [
        lambda rank=rank: _make_monitored(env_id, None if seed is None else seed + rank,
                                          None if monitor_dir is None else os.path.join(monitor_dir, str(rank)),
                                          dict(monitor_kwargs or {}), options)
        for rank in range(int(n_envs))
    ]
    venv = vec_env_class(vec_env)(env_fns)
    if seed is not None:
        venv.seed(seed)
    return venv
