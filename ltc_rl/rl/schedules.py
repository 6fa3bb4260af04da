"""Learning-rate and clip-range schedules named in config files, in stable-baselines3's form.

A schedule is a callable of ``progress_remaining`` (1 at the start of training, 0 at the end), as
stable-baselines3 expects. Config files name one as text, rl-zoo style:

* a number: constant;
* ``lin_<start>``: linear decay from ``start`` to 0 (rl-zoo's form, stable-baselines3's :class:`LinearSchedule`);
* ``exp_<start>_<end>``: geometric from ``start`` to ``end`` (each tenth of training multiplies the value
  by the same factor). Against ``lin_<start>`` it shrinks the value early, while most of the learning happens,
  and keeps it above 0 at the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.utils import LinearSchedule

__all__ = ["ExponentialSchedule", "SCHEDULE_FORMS", "parse_schedule"]

#: What :func:`parse_schedule` accepts, for error messages.
SCHEDULE_FORMS = "a number > 0, 'lin_<start>' (linear decay to 0) or 'exp_<start>_<end>' (geometric decay)"


class ExponentialSchedule:
    """``start`` at the beginning of training, ``end`` at its end, geometric in between."""

    def __init__(self, start: float, end: float) -> None:
        if not (start > 0 and end > 0):
            raise ValueError(f"an exponential schedule needs start and end > 0, got {start} and {end}")
        self.start = float(start)
        self.end = float(end)

    def __call__(self, progress_remaining: float) -> float:
        return self.end * (self.start / self.end) ** progress_remaining

    def __repr__(self) -> str:
        return f"ExponentialSchedule(start={self.start}, end={self.end})"


def _positive(number: str | float) -> float:
    value = float(number)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(number)
    return value


def parse_schedule(value: Any) -> float | Schedule:
    """The constant or schedule that ``value`` (a number or a schedule's text) names; ``ValueError`` for
    anything else (the message is :data:`SCHEDULE_FORMS`)."""
    try:
        if isinstance(value, str) and value.startswith("lin_"):
            return LinearSchedule(_positive(value[4:]), 0.0, 1.0)
        if isinstance(value, str) and value.startswith("exp_"):
            start, end = value[4:].split("_")
            return ExponentialSchedule(_positive(start), _positive(end))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _positive(value)
    except ValueError:
        pass
    raise ValueError(SCHEDULE_FORMS)
