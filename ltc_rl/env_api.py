"""What ltc_rl expects of an environment, shared by :mod:`envs` and the learners (:mod:`ltc_rl.rl`) with no
heavy dependency: the ``info`` keys of the elapsed time between observations and of an upside-down body, a
task's control period, and the check that an environment id is registered.

See :mod:`ltc_rl.rl.elapsed_time` for how the learners read the elapsed time.
"""

from __future__ import annotations

import difflib
from typing import Any

from ltc_rl.errors import ConfigError

__all__ = ["ELAPSED_TIME_KEY", "UPSIDE_DOWN_KEY", "DEFAULT_ELAPSED_TIME", "PERIOD_ATTRIBUTES", "positive_period",
           "env_period", "check_registered_env_id", "VEC_ENVS", "vec_env_class"]

#: ``info`` key under which an environment reports the time since its previous observation.
ELAPSED_TIME_KEY = "elapsed_time"

#: ``info`` key under which an environment reports (True / False) that its body is upside down after a step: a
#: planar runner (HalfCheetah) that flips over keeps running on its back, so the return alone hides the fall.
UPSIDE_DOWN_KEY = "upside_down"

#: Elapsed time assumed when an environment neither reports it nor has a period attribute.
DEFAULT_ELAPSED_TIME = 1.0

#: Attributes of an unwrapped environment holding the seconds one step covers (MuJoCo and Pendulum: ``dt``,
#: CartPole: ``tau``).
PERIOD_ATTRIBUTES = ("dt", "tau")


def positive_period(value: Any) -> float | None:
    """``value`` as a control period: a positive number, else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def env_period(env: Any) -> float | None:
    """Seconds one step of a gymnasium env covers, from its ``dt`` / ``tau`` attribute; None if it has neither."""
    base = getattr(env, "unwrapped", env)
    periods = (positive_period(getattr(base, attribute, None)) for attribute in PERIOD_ATTRIBUTES)
    return next((period for period in periods if period is not None), None)


#: The vectorisations a run can use (``vec_env``): the name of stable-baselines3's class for each (imported
#: by :func:`vec_env_class` where a VecEnv is made, so this module stays light).
VEC_ENVS = {"dummy": "DummyVecEnv", "subproc": "SubprocVecEnv"}


def vec_env_class(name: str) -> type:
    """stable-baselines3's VecEnv class of the vectorisation ``name`` (a key of :data:`VEC_ENVS`)."""
    from stable_baselines3.common import vec_env

    return getattr(vec_env, VEC_ENVS[name])


def check_registered_env_id(env_id: str) -> None:
    """Raises :class:`~ltc_rl.errors.ConfigError` when ``env_id`` is not registered with gymnasium, naming the
    closest registered ids."""
    import gymnasium as gym  # here, not at import: this module stays light for subprocess workers

    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    raise ConfigError(f"unknown environment id {env_id!r}{hint}; any id registered with gymnasium works: register "
                      "yours, or import the package that does (scripts: --gym-packages PACKAGE).")
