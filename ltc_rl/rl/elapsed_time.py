"""Elapsed time between observations, as reported by environments in their ``info`` dicts.

Continuous-time cells (LTC, CfC, ...) integrate their dynamics over the time that really passed
between two observations. An environment (or wrapper) that knows this time reports it under
:data:`ELAPSED_TIME_KEY` in the ``info`` of ``step`` (time from the previous observation to the
returned one) and, optionally, of ``reset`` (time "before" the first observation). Without the key,
one step lasts ``1.0``.

Environments report time in their own unit (``envs`` reports simulated seconds: 0.05 s per
HalfCheetah step), while the cells' initialisation is tuned for steps of about ``1.0``. A policy
therefore divides every elapsed time by its ``time_unit``, the environment's *nominal* control
period (what ``reset`` reports, see :func:`nominal_elapsed_time`): regular steps reach the cells as
``dt = 1``, irregular ones relative to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

__all__ = ["ELAPSED_TIME_KEY", "DEFAULT_ELAPSED_TIME", "elapsed_times", "reset_infos", "nominal_elapsed_time"]

#: ``info`` key under which an environment reports the time since its previous observation.
ELAPSED_TIME_KEY = "elapsed_time"

#: Elapsed time assumed when an environment does not report it.
DEFAULT_ELAPSED_TIME = 1.0


def elapsed_times(infos: Sequence[dict[str, Any]], dones: np.ndarray | None = None,
                  reset_infos: Sequence[dict[str, Any]] | None = None) -> np.ndarray:
    """The elapsed time of the observations a ``VecEnv.step`` just returned, one per environment.

    Where an episode ended (``dones``), the returned observation is the first of a new episode,
    so its time comes from the reset ``info`` (``VecEnv.reset_infos``), not from the step ``info``
    (which describes the terminal observation).
    """
    times = np.full(len(infos), DEFAULT_ELAPSED_TIME, dtype=np.float32)
    for idx, info in enumerate(infos):
        source = info
        if dones is not None and dones[idx]:
            source = reset_infos[idx] if reset_infos is not None and idx < len(reset_infos) else {}
        value = source.get(ELAPSED_TIME_KEY) if source else None
        if value is not None:
            times[idx] = float(value)
    return times


def reset_infos(venv: VecEnv) -> list[dict[str, Any]]:
    """The ``info`` dicts of the latest resets of ``venv``'s environments.

    They live on the innermost VecEnv: wrappers such as ``VecNormalize`` keep an empty list of their own.
    """
    while isinstance(venv, VecEnvWrapper):
        venv = venv.venv
    return list(getattr(venv, "reset_infos", [{}] * venv.num_envs))


def nominal_elapsed_time(venv: VecEnv) -> float | None:
    """The elapsed time ``venv``'s first environment reported at its latest reset (its nominal control period).

    None when it reports none (or ``venv`` was not reset yet).
    """
    infos = reset_infos(venv)
    value = infos[0].get(ELAPSED_TIME_KEY) if infos and infos[0] else None
    return None if value is None else float(value)
