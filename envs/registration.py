"""The task ids ltc_rl supports, and the "NoVel" (velocities hidden) variants it registers with gymnasium."""

from __future__ import annotations

import difflib

import gymnasium as gym
from gymnasium.envs.registration import WrapperSpec

from ltc_rl.errors import ConfigError

__all__ = ["BASE_ENV_IDS", "NOVEL_ENV_IDS", "available_ids", "check_env_id", "register_envs"]

#: gymnasium tasks that :func:`envs.make` supports (MuJoCo first, classic control for quick tests).
BASE_ENV_IDS: tuple[str, ...] = (
    "HalfCheetah-v4", "Hopper-v4", "Walker2d-v4", "Ant-v4", "Swimmer-v4", "Pendulum-v1", "CartPole-v1",
)


def _novel_id(base_id: str) -> str:
    name, version = base_id.rsplit("-", 1)
    return f"{name}NoVel-{version}"


#: Partially observable variant id -> the task it hides the velocities of (e.g. "HalfCheetahNoVel-v4").
NOVEL_ENV_IDS: dict[str, str] = {_novel_id(base_id): base_id for base_id in BASE_ENV_IDS}


def register_envs() -> None:
    """Registers the NoVel ids with gymnasium (idempotent; runs on ``import envs``).

    Each NoVel id is its base task (same entry point, kwargs, time limit and reward threshold)
    followed by :class:`envs.wrappers.VelocityHidden`, so ``gym.make("HalfCheetahNoVel-v4")``
    works anywhere ``envs`` has been imported, and ``env.spec`` recreates it.
    """
    for novel_id, base_id in NOVEL_ENV_IDS.items():
        if novel_id in gym.registry:
            continue
        base = gym.spec(base_id)
        gym.register(
            id=novel_id, entry_point=base.entry_point, reward_threshold=base.reward_threshold,
            max_episode_steps=base.max_episode_steps, kwargs=dict(base.kwargs),
            additional_wrappers=(WrapperSpec("VelocityHidden", "envs.wrappers:VelocityHidden", {}),),
        )


def available_ids() -> tuple[str, ...]:
    """All ids :func:`envs.make` accepts: the base tasks followed by their NoVel variants."""
    return BASE_ENV_IDS + tuple(NOVEL_ENV_IDS)


def check_env_id(env_id: str) -> None:
    """Raises ConfigError (a ValueError) naming the available ids when ``env_id`` is not one of them."""
    ids = available_ids()
    if env_id in ids:
        return
    close = difflib.get_close_matches(str(env_id), ids, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"Unknown environment id {env_id!r}.{hint} Available ids: {', '.join(ids)}.")
