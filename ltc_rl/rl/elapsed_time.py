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
``dt = 1``, irregular ones relative to it. Environments that report nothing (a plain ``gymnasium.make``)
still have a period: their ``dt`` attribute (MuJoCo, Pendulum) or ``tau`` (CartPole), see
:func:`nominal_period`; their steps then count as that period, so a model trained on a plain env and one
trained through ``envs.make`` read the same ``dt`` the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from ltc_rl.env_api import DEFAULT_ELAPSED_TIME, ELAPSED_TIME_KEY, PERIOD_ATTRIBUTES, env_period, positive_period
from ltc_rl.errors import LtcRlWarning

__all__ = ["ELAPSED_TIME_KEY", "DEFAULT_ELAPSED_TIME", "PERIOD_ATTRIBUTES", "elapsed_times", "reset_infos",
           "nominal_elapsed_time", "nominal_period", "env_period", "check_dt_scale"]

#: A ``dt`` further than this factor from the model's time unit is probably in another unit (see
#: :func:`check_dt_scale`).
DT_SCALE_TOLERANCE = 10.0
_warned_scales: set[float] = set()


def elapsed_times(infos: Sequence[dict[str, Any]], dones: np.ndarray | None = None,
                  reset_infos: Sequence[dict[str, Any]] | None = None,
                  default: float = DEFAULT_ELAPSED_TIME) -> np.ndarray:
    """The elapsed time of the observations a ``VecEnv.step`` just returned, one per environment.

    Where an episode ended (``dones``), the returned observation is the first of a new episode,
    so its time comes from the reset ``info`` (``VecEnv.reset_infos``), not from the step ``info``
    (which describes the terminal observation). Environments that report none get ``default`` (pass the
    policy's time unit: one nominal step).
    """
    times = np.full(len(infos), default, dtype=np.float32)
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


def nominal_period(venv: VecEnv) -> float | None:
    """``venv``'s nominal control period: what its first environment reported at its latest reset, else
    that environment's ``dt`` (MuJoCo, Pendulum) or ``tau`` (CartPole) attribute; None if neither exists.

    This is the ``time_unit`` recurrent policies are trained with, so a plain ``gymnasium.make`` env and
    ``envs.make`` (which reports the same period) give models that read ``dt`` alike.
    """
    reported = nominal_elapsed_time(venv)
    if reported is not None:
        return reported
    periods = (positive_period(venv.get_attr(attribute, indices=[0])[0]) for attribute in PERIOD_ATTRIBUTES
               if venv.has_attr(attribute))
    return next((period for period in periods if period is not None), None)


def check_dt_scale(dt: Any, time_unit: float | None) -> None:
    """Warns (once per time unit and process) when ``dt`` is far from ``time_unit``: probably another unit.

    A model trained with a time unit of 0.05 s reads ``dt=1.0`` as twenty steps; the usual cause is a
    ``dt`` counted in steps fed to a model that counts seconds, or the reverse.
    """
    if dt is None or time_unit is None or time_unit in _warned_scales:
        return
    values = np.asarray(dt, dtype=np.float64).ravel()
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return
    ratio = float(np.median(values)) / time_unit
    if 1.0 / DT_SCALE_TOLERANCE <= ratio <= DT_SCALE_TOLERANCE:
        return
    _warned_scales.add(time_unit)
    warnings.warn(f"dt={float(np.median(values)):g} is {ratio:g} times the model's time unit ({time_unit:g}, its "
                  f"nominal step); dt is the elapsed time in the environment's unit (envs.make reports seconds in "
                  f"info['elapsed_time']); pass dt=None for one nominal step.", LtcRlWarning, stacklevel=3)
