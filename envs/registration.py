"""The task ids ltc_rl is tested on, the "NoVel" (velocities hidden) variants it registers with gymnasium,
and the check that an id is registered at all (any registered gymnasium id trains)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import gymnasium as gym
from gymnasium.envs.registration import WrapperSpec

from ltc_rl.errors import ConfigError
from ltc_rl.env_api import check_registered_env_id

__all__ = ["BASE_ENV_IDS", "NOVEL_ENV_IDS", "available_ids", "check_env_id", "import_gym_packages", "register_envs"]

#: gymnasium tasks with a known observation layout, so a NoVel variant (MuJoCo first, classic control for
#: quick tests); :func:`envs.make` takes any other registered id too.
BASE_ENV_IDS: tuple[str, ...] = (
    "HalfCheetah-v4", "Hopper-v4", "Walker2d-v4", "Ant-v4", "Swimmer-v4", "Pendulum-v1", "CartPole-v1",
    "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Swimmer-v5",
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
    """The shipped ids (with a known observation layout): the base tasks followed by their NoVel variants.

    :func:`envs.make` also takes any other id registered with gymnasium (see :func:`check_env_id`).
    """
    return BASE_ENV_IDS + tuple(NOVEL_ENV_IDS)


def check_env_id(env_id: str) -> None:
    """Raises ConfigError (a ValueError) when ``env_id`` is not registered with gymnasium, naming the closest
    registered ids (register your own env, or import the package that does, first)."""
    check_registered_env_id(str(env_id))


def import_gym_packages(packages: Sequence[str]) -> None:
    """Imports ``packages`` (modules that register environments with gymnasium on import, as rl-zoo's
    ``--gym-packages``); ConfigError naming the package when one cannot be imported."""
    for package in packages:
        try:
            importlib.import_module(package)
        except ImportError as exc:
            raise ConfigError(f"cannot import gym package {package!r} ({exc}); install it or fix --gym-packages."
                              ) from exc
