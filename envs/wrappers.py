"""Wrappers that make control tasks partially observable, noisy or irregularly sampled, and that report what the
return hides (a body upside down).

Every wrapper here keeps the gymnasium API (and records its constructor arguments, so ``env.spec``
recreates it). Timing follows one convention shared with the learners in ``ltc_rl.rl``: the
simulated seconds between the previous observation and the returned one are reported in
``info[ELAPSED_TIME_KEY]`` by ``step``; ``reset`` reports the nominal control period there (no time
has passed, but a recurrent policy needs a step size for its first update).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import RecordConstructorArgs

from ltc_rl import errors
from ltc_rl.errors import NonFiniteObservationError
from ltc_rl.env_api import ELAPSED_TIME_KEY, UPSIDE_DOWN_KEY, env_period

__all__ = [
    "ELAPSED_TIME_KEY", "NonFiniteObservationError", "control_dt", "velocity_indices", "ObservationFilter",
    "VelocityHidden", "GaussianObservationNoise", "ElapsedTimeInfo", "IrregularSampling", "ElapsedTimeObservation",
    "NonFiniteObservationCheck", "UPSIDE_DOWN_KEY", "root_pitch_address", "UpsideDownInfo",
]

# Task classes are named by module and class (see _listed) so that ``import envs`` does not import the
# simulators; only making an environment does.
_MUJOCO_ENV = "gymnasium.envs.mujoco.mujoco_env.MujocoEnv"
# MuJoCo v4 and v5 tasks observe ``concat(qpos[excluded:], qvel, [contact forces])``; ``excluded`` leading
# positions (the torso's global x, or x and y) are left out by default.
_MUJOCO_EXCLUDED_POSITIONS: dict[str, int] = {f"gymnasium.envs.mujoco.{task}": excluded for task, excluded in {
    "half_cheetah_v4.HalfCheetahEnv": 1, "hopper_v4.HopperEnv": 1, "walker2d_v4.Walker2dEnv": 1,
    "swimmer_v4.SwimmerEnv": 2, "ant_v4.AntEnv": 2, "half_cheetah_v5.HalfCheetahEnv": 1, "hopper_v5.HopperEnv": 1,
    "walker2d_v5.Walker2dEnv": 1, "swimmer_v5.SwimmerEnv": 2, "ant_v5.AntEnv": 2,
}.items()}
# Classic-control tasks: Pendulum observes (cos, sin, angular velocity), CartPole (x, x_dot, theta, theta_dot).
_CLASSIC_VELOCITY_INDICES: dict[str, tuple[int, ...]] = {
    "gymnasium.envs.classic_control.pendulum.PendulumEnv": (2,),
    "gymnasium.envs.classic_control.cartpole.CartPoleEnv": (1, 3),
}


def _listed(env: Any, names: Collection[str]) -> str | None:
    """The first of ``env``'s classes (its own, then its bases) named in ``names`` ("module.Class"), else None."""
    for cls in type(env).__mro__:
        name = f"{cls.__module__}.{cls.__qualname__}"
        if name in names:
            return name
    return None


def _is_mujoco(env: Any) -> bool:
    return _listed(env, (_MUJOCO_ENV,)) is not None


def _env_name(env: gym.Env) -> str:
    spec = env.spec
    return spec.id if spec is not None else type(env.unwrapped).__name__


def _flat_box(env: gym.Env, wrapper: str) -> spaces.Box:
    space = env.observation_space
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"{wrapper} needs a flat Box observation space; {_env_name(env)} has {space}.")
    return space


def control_dt(env: gym.Env) -> float:
    """Simulated seconds that one ``step`` of the unwrapped environment covers.

    MuJoCo tasks: ``model.opt.timestep * frame_skip``; others: their ``dt`` (Pendulum) or ``tau`` (CartPole)
    attribute (:func:`ltc_rl.env_api.env_period`).
    """
    base = env.unwrapped
    if _is_mujoco(base):
        return float(base.model.opt.timestep * base.frame_skip)
    period = env_period(base)
    if period is not None:
        return period
    raise ValueError(f"Cannot tell how much simulated time one step of {_env_name(env)} covers "
                     f"(it is neither a MuJoCo env nor has a positive `dt` or `tau` attribute).")


def velocity_indices(env: gym.Env) -> np.ndarray:
    """Indices of the velocity entries in the observation of ``env`` (a supported task, unfiltered).

    For MuJoCo tasks these are the ``qvel`` block, located from the model sizes and the task's
    ``exclude_current_positions_from_observation`` setting; Ant's optional contact forces are
    forces, not velocities, and stay observable.
    """
    base = env.unwrapped
    mujoco_task = _listed(base, _MUJOCO_EXCLUDED_POSITIONS)
    classic_task = _listed(base, _CLASSIC_VELOCITY_INDICES)
    if mujoco_task is not None:
        excluded = _MUJOCO_EXCLUDED_POSITIONS[mujoco_task]
        n_pos = base.model.nq - (excluded if base._exclude_current_positions_from_observation else 0)
        indices = np.arange(n_pos, n_pos + base.model.nv)
    else:
        if classic_task is None:
            supported = ", ".join(".".join(name.rsplit(".", 2)[-2:])
                                  for name in [*_MUJOCO_EXCLUDED_POSITIONS, *_CLASSIC_VELOCITY_INDICES])
            raise ValueError(f"The observation layout of {_env_name(env)} is unknown (supported: {supported}); "
                             f"use ObservationFilter(env, keep=[...]) with the indices to keep instead.")
        indices = np.asarray(_CLASSIC_VELOCITY_INDICES[classic_task])
    size = _flat_box(env, "velocity_indices").shape[0]
    if indices.max() >= size:
        raise ValueError(f"{_env_name(env)}'s observation has {size} entries, fewer than its layout implies; "
                         f"is it already filtered?")
    return indices


class ObservationFilter(gym.ObservationWrapper, RecordConstructorArgs):
    """Keeps only the observation entries at ``keep`` (in that order)."""

    def __init__(self, env: gym.Env, keep: Sequence[int]):
        RecordConstructorArgs.__init__(self, keep=[int(i) for i in keep])
        gym.ObservationWrapper.__init__(self, env)
        space = _flat_box(env, "ObservationFilter")
        keep_arr = np.asarray(keep, dtype=np.int64).reshape(-1)
        if keep_arr.size == 0:
            raise ValueError("ObservationFilter needs at least one index to keep.")
        if keep_arr.min() < 0 or keep_arr.max() >= space.shape[0] or len(set(keep_arr.tolist())) != keep_arr.size:
            raise ValueError(f"ObservationFilter indices must be distinct and in [0, {space.shape[0]}) for "
                             f"{_env_name(env)}; got {keep_arr.tolist()}.")
        self.keep = keep_arr
        self.observation_space = spaces.Box(space.low[keep_arr], space.high[keep_arr], dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self.keep]


class VelocityHidden(ObservationFilter):
    """Partial observability: removes the velocity entries (see :func:`velocity_indices`)."""

    def __init__(self, env: gym.Env):
        RecordConstructorArgs.__init__(self)  # recreated from the env alone, not from explicit indices
        hidden = set(velocity_indices(env).tolist())
        keep = [i for i in range(env.observation_space.shape[0]) if i not in hidden]
        ObservationFilter.__init__(self, env, keep)


def _stream_rng(seed: int | None, stream: int) -> np.random.Generator:
    """A generator for one wrapper, independent of the env's own stream seeded with the same number."""
    return np.random.default_rng(None if seed is None else [int(seed), stream])


class GaussianObservationNoise(gym.ObservationWrapper, RecordConstructorArgs):
    """Adds N(0, sigma^2) noise to every observation entry (sensor noise for robustness tests).

    ``sigma`` is in observation units. The noise generator is seeded by ``seed`` and reseeded by
    ``reset(seed=...)``, so a seeded episode is reproducible. Noise is unbounded, so the
    observation space becomes unbounded too.
    """

    _STREAM = 1

    def __init__(self, env: gym.Env, sigma: float, seed: int | None = None):
        RecordConstructorArgs.__init__(self, sigma=sigma, seed=seed)
        gym.ObservationWrapper.__init__(self, env)
        space = _flat_box(env, "GaussianObservationNoise")
        if not np.isfinite(sigma) or sigma < 0:
            raise errors.ConfigError(f"observation noise sigma must be a finite number >= 0, got {sigma}; pass e.g. "
                                     "--obs-noise 0.1.")
        self.sigma = float(sigma)
        self._rng = _stream_rng(seed, self._STREAM)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=space.shape, dtype=space.dtype)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = _stream_rng(seed, self._STREAM)
        return super().reset(seed=seed, options=options)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        noise = self._rng.normal(0.0, self.sigma, size=observation.shape)
        return (observation + noise).astype(self.observation_space.dtype, copy=False)


def root_pitch_address(env: gym.Env) -> int | None:
    """Index in ``qpos`` of a MuJoCo body's root pitch hinge (the joint ``rooty`` of HalfCheetah, Hopper and
    Walker2d), or None for an env without one."""
    base = env.unwrapped
    if not _is_mujoco(base):
        return None
    try:
        return int(base.model.joint("rooty").qposadr[0])
    except KeyError:
        return None


class UpsideDownInfo(gym.Wrapper, RecordConstructorArgs):
    """Reports in ``info[UPSIDE_DOWN_KEY]`` of every step whether the body's root pitch is past 90 degrees."""

    def __init__(self, env: gym.Env):
        address = root_pitch_address(env)
        if address is None:
            raise ValueError(f"UpsideDownInfo needs a MuJoCo body with a root pitch joint 'rooty'; "
                             f"{_env_name(env)} has none.")
        RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._address = address

    def step(self, action: Any):
        observation, reward, terminated, truncated, info = self.env.step(action)
        info[UPSIDE_DOWN_KEY] = bool(np.cos(self.env.unwrapped.data.qpos[self._address]) < 0.0)
        return observation, reward, terminated, truncated, info


class ElapsedTimeInfo(gym.Wrapper, RecordConstructorArgs):
    """Reports the fixed control period (:func:`control_dt`) in ``info[ELAPSED_TIME_KEY]`` of every step and reset."""

    def __init__(self, env: gym.Env):
        RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.nominal_dt = control_dt(env)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        observation, info = self.env.reset(seed=seed, options=options)
        info[ELAPSED_TIME_KEY] = self.nominal_dt
        return observation, info

    def step(self, action: Any):
        observation, reward, terminated, truncated, info = self.env.step(action)
        info[ELAPSED_TIME_KEY] = self.nominal_dt
        return observation, reward, terminated, truncated, info


class IrregularSampling(ElapsedTimeInfo):
    """Irregular control steps: each step simulates a random number of frames in ``[min_frames, max_frames]``.

    A frame is the task's smallest simulation step. MuJoCo tasks: one physics step
    (``model.opt.timestep``); the task steps with its ``frame_skip`` set to the drawn number, so
    its reward uses the true interval (velocities are divided by it). Classic-control tasks
    (Pendulum, CartPole): one step of the task with the action held; rewards add up, and a step
    stops early when the episode ends. ``info[ELAPSED_TIME_KEY]`` is the simulated time that
    really passed; ``nominal_dt`` (reported at reset) is the mean over the frame range.
    Time limits keep their unit: MuJoCo episodes last their usual number of control steps (so
    their simulated length varies), classic-control ones their usual number of task steps (a
    fixed simulated time).
    """

    _STREAM = 2

    def __init__(self, env: gym.Env, min_frames: int, max_frames: int, seed: int | None = None):
        RecordConstructorArgs.__init__(self, min_frames=min_frames, max_frames=max_frames, seed=seed)
        ElapsedTimeInfo.__init__(self, env)
        if int(min_frames) != min_frames or int(max_frames) != max_frames or not 1 <= min_frames <= max_frames:
            raise ValueError(f"Irregular sampling needs integers 1 <= min_frames <= max_frames; "
                             f"got ({min_frames}, {max_frames}).")
        self.min_frames, self.max_frames = int(min_frames), int(max_frames)
        base = env.unwrapped
        self._mujoco = _is_mujoco(base)
        self.frame_time = float(base.model.opt.timestep) if self._mujoco else control_dt(env)
        self.nominal_dt = 0.5 * (self.min_frames + self.max_frames) * self.frame_time
        self._rng = _stream_rng(seed, self._STREAM)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = _stream_rng(seed, self._STREAM)
        return super().reset(seed=seed, options=options)

    def step(self, action: Any):
        frames = int(self._rng.integers(self.min_frames, self.max_frames + 1))
        if self._mujoco:
            base = self.env.unwrapped
            regular_frame_skip = base.frame_skip
            base.frame_skip = frames
            try:
                observation, reward, terminated, truncated, info = self.env.step(action)
            finally:
                base.frame_skip = regular_frame_skip
            done_frames = frames
        else:
            reward, done_frames = 0.0, 0
            while done_frames < frames:
                observation, frame_reward, terminated, truncated, info = self.env.step(action)
                reward += float(frame_reward)
                done_frames += 1
                if terminated or truncated:
                    break
        info[ELAPSED_TIME_KEY] = done_frames * self.frame_time
        return observation, reward, terminated, truncated, info


class ElapsedTimeObservation(gym.Wrapper, RecordConstructorArgs):
    """Appends ``info[ELAPSED_TIME_KEY]`` to the observation, so the policy sees the step's duration.

    Wrap an env that reports the key (:class:`ElapsedTimeInfo` or :class:`IrregularSampling`).
    """

    def __init__(self, env: gym.Env):
        RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        space = _flat_box(env, "ElapsedTimeObservation")
        self.observation_space = spaces.Box(np.append(space.low, 0.0).astype(space.dtype),
                                            np.append(space.high, np.inf).astype(space.dtype), dtype=space.dtype)

    def _append(self, observation: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        if ELAPSED_TIME_KEY not in info:
            raise ValueError(f"ElapsedTimeObservation found no info[{ELAPSED_TIME_KEY!r}] from {_env_name(self.env)}; "
                             f"wrap it in ElapsedTimeInfo or IrregularSampling first.")
        return np.append(observation, info[ELAPSED_TIME_KEY]).astype(self.observation_space.dtype, copy=False)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        observation, info = self.env.reset(seed=seed, options=options)
        return self._append(observation, info), info

    def step(self, action: Any):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return self._append(observation, info), reward, terminated, truncated, info


class NonFiniteObservationCheck(gym.Wrapper, RecordConstructorArgs):
    """Raises :class:`NonFiniteObservationError` naming the env when an observation holds NaN or infinity.

    A diverged simulation otherwise poisons the learner's statistics silently. ``env_index`` (set by
    ``ltc_rl.rl.guards.VecCheckFinite`` through ``set_wrapper_attr``) names the copy in a vectorised env.
    """

    def __init__(self, env: gym.Env):
        RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._steps = 0
        self.env_index: int | None = None

    def _check(self, observation: np.ndarray, where: str) -> None:
        finite = np.isfinite(observation)
        if not finite.all():
            bad = np.flatnonzero(~finite).tolist()
            raise NonFiniteObservationError(
                f"{_env_name(self.env)} returned a non-finite observation {where}"
                f"{'' if self.env_index is None else f' in environment {self.env_index}'} (entries {bad[:10]}"
                f"{' ...' if len(bad) > 10 else ''}: {np.asarray(observation).ravel()[bad[:10]].tolist()}); "
                f"the simulation diverged or a wrapper produced NaN. Check the actions and the env options.")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        observation, info = self.env.reset(seed=seed, options=options)
        self._steps = 0
        self._check(observation, "at reset")
        return observation, info

    def step(self, action: Any):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        self._check(observation, f"at step {self._steps} of the episode")
        return observation, reward, terminated, truncated, info
