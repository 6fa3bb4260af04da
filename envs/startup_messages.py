"""Messages the simulators repeat for every environment copy, shown once per process instead.

Making a MuJoCo v4 task prints MuJoCo's ``settotalmass is deprecated`` warning (from the task's XML) and
gymnasium's "out of date, consider upgrading to v5" deprecation warning, once per copy: 4-12 times at
every start of a run. Both still appear, each distinct message once; every other warning is untouched.
"""

from __future__ import annotations

import sys
import warnings

import mujoco

__all__ = ["show_startup_messages_once"]

#: MuJoCo warnings (substrings) printed only the first time in a process.
MUJOCO_ONCE = ("settotalmass",)
#: gymnasium's out-of-date version warning (a regular expression matched from the message's start).
GYMNASIUM_OUT_OF_DATE = r".*The environment \S+ is out of date"

_shown: set[str] = set()


def _mujoco_warning(message: str) -> None:
    """MuJoCo's warning handler: as MuJoCo's own (``WARNING: ...`` on stderr), repeats of MUJOCO_ONCE left out."""
    if any(part in message for part in MUJOCO_ONCE):
        if message in _shown:
            return
        _shown.add(message)
    print(f"WARNING: {message}\n", file=sys.stderr)


def show_startup_messages_once() -> None:
    """Installs the once-per-process filters (idempotent; runs on ``import envs``).

    MuJoCo's warning handler is process-wide; one that someone else installed is left in place.
    """
    warnings.filterwarnings("once", message=GYMNASIUM_OUT_OF_DATE, category=DeprecationWarning)
    if mujoco.get_mju_user_warning() in (None, _mujoco_warning):
        mujoco.set_mju_user_warning(_mujoco_warning)
