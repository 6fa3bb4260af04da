"""Messages the simulators repeat for every environment copy, shown once per process instead.

Installed by ``envs.make`` and by ``RecurrentPPO`` / the training pipeline when they make environments
from an id.

Making a MuJoCo v4 task prints MuJoCo's ``settotalmass is deprecated`` warning (from the task's XML) and
gymnasium's "out of date, consider upgrading to v5" deprecation warning, once per copy: 4-12 times at
every start of a run. Both still appear, each distinct message once; every other warning is untouched.

Python's own ``"once"`` warning filter cannot do this: every ``warnings.catch_warnings()`` (which libraries
and ``ltc_rl.errors.cli_main`` enter) resets its memory. So the two sources are wrapped instead: MuJoCo's
warning handler, and ``gymnasium.logger.deprecation`` for the out-of-date message alone.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from gymnasium import logger as gym_logger

__all__ = ["show_startup_messages_once"]

#: MuJoCo warnings (substrings) printed only the first time in a process.
MUJOCO_ONCE = ("settotalmass",)
#: gymnasium deprecation messages (substrings) shown only the first time in a process.
GYMNASIUM_ONCE = ("is out of date. You should consider upgrading",)

_shown: set[str] = set()


def _mujoco_warning(message: str) -> None:
    """MuJoCo's warning handler: as MuJoCo's own (``WARNING: ...`` on stderr), repeats of MUJOCO_ONCE left out."""
    if any(part in message for part in MUJOCO_ONCE):
        if message in _shown:
            return
        _shown.add(message)
    print(f"WARNING: {message}\n", file=sys.stderr)


def _once(deprecation: Callable[..., None]) -> Callable[..., None]:
    """``gymnasium.logger.deprecation`` that passes each GYMNASIUM_ONCE message on the first time only.

    It warns as the original does (``logger.warn``, DeprecationWarning), attributed to the same caller
    (gymnasium's ``make``), so gymnasium's own warning filter still shows it.
    """

    @functools.wraps(deprecation)
    def deprecation_once(msg: str, *args: Any) -> None:
        text = msg % args if args else msg
        if any(part in text for part in GYMNASIUM_ONCE):
            if text in _shown:
                return
            _shown.add(text)
        gym_logger.warn(msg, *args, category=DeprecationWarning, stacklevel=3)

    deprecation_once.shows_once = True  # type: ignore[attr-defined]
    return deprecation_once


def show_startup_messages_once() -> None:
    """Installs the once-per-process wrappers (idempotent; ``envs.make`` calls it before making an env).

    MuJoCo's warning handler is process-wide; one that someone else installed is left in place.
    """
    import mujoco  # here, not at import: importing the simulator takes a good part of a second

    if not getattr(gym_logger.deprecation, "shows_once", False):
        gym_logger.deprecation = _once(gym_logger.deprecation)
    if mujoco.get_mju_user_warning() in (None, _mujoco_warning):
        mujoco.set_mju_user_warning(_mujoco_warning)
