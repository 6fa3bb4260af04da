"""The project's error types, and how command-line entry points report them.

An :class:`LtcRlError` is a problem the user can fix (bad input, a corrupt or foreign file, a diverged
or interrupted run), never a bug: its message is one line that names the problem and the fix.
:func:`cli_main` turns it into ``error: <message>`` on stderr and exit code 2; every other exception is
a bug and keeps its traceback. The classes also derive from the matching built-in exception
(``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import functools
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec

__all__ = ["LtcRlError", "LtcRlWarning", "ConfigError", "DataError", "MissingFileError", "OutputExistsError",
           "ModelFileError", "SpaceMismatchError", "NonFiniteObservationError", "DivergenceError", "TrainingInterrupted",
           "check_output_name", "check_output_file", "cli_main", "one_line"]

P = ParamSpec("P")


class LtcRlError(Exception):
    """Base of the errors a user can fix; ``exit_code`` and ``label`` say how :func:`cli_main` reports it."""

    exit_code = 2
    label = "error"


class LtcRlWarning(UserWarning):
    """Something was skipped or repaired but the work goes on (e.g. an unreadable checkpoint passed over)."""


class ConfigError(LtcRlError, ValueError):
    """Bad configuration: env id, policy, hyperparameters, wiring, folders, command-line options."""


class DataError(LtcRlError, ValueError):
    """A data file or folder that exists but is malformed (wrong shape, non-finite values, unreadable)."""


class MissingFileError(LtcRlError, FileNotFoundError):
    """A file or folder the user named (data, model, run folder) that does not exist or holds nothing usable."""


class OutputExistsError(ConfigError, FileExistsError):
    """An output file or folder that already exists and would be overwritten."""


class ModelFileError(LtcRlError, ValueError):
    """A model or checkpoint file that is missing, corrupt, truncated or not a model of this project."""


class SpaceMismatchError(LtcRlError, ValueError):
    """A model (or its normalisation statistics) and an environment whose observation or action spaces differ."""


class NonFiniteObservationError(LtcRlError, FloatingPointError):
    """An environment returned NaN or infinity as an observation or a reward."""


class DivergenceError(LtcRlError, FloatingPointError):
    """Training produced NaN or infinity in the loss or the parameters."""


class TrainingInterrupted(LtcRlError):
    """Training was stopped by a signal (Ctrl-C, SIGTERM) after saving a checkpoint.

    ``exit_code`` is ``128 + signal number`` (130 for Ctrl-C, 143 for SIGTERM), as a shell reports it.
    """

    label = "stopped"

    def __init__(self, message: str, signal_number: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signal_number = int(signal_number)
        self.exit_code = 128 + self.signal_number


def check_output_name(output: Any, option: str) -> None:
    """Raises :class:`ConfigError` when the output path ``output`` is an empty name: ``Path("")`` is the current
    folder, so an empty ``--output`` would silently write there (or into a script's default folder)."""
    if not str(output).strip():
        raise ConfigError(f"{option} is an empty name; pass a path, or leave {option} out for the default.")


def check_output_file(path: str | Path, flag: str, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a :class:`Path` if a file can be written there (not a folder, no file in the way of its folder,
    one of ``suffixes`` when given); :class:`ConfigError` naming ``flag`` otherwise. Checked before any work."""
    path = Path(path)
    if not path.name or path.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} is a folder; pass a file name (e.g. {flag} out/result"
                          f"{suffixes[0] if suffixes else '.json'}).")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{flag} {str(path)!r} must end in {' or '.join(suffixes)} (that is the format written).")
    folder = next((p for p in path.absolute().parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise ConfigError(f"{flag} {str(path)!r}: {folder} is a file, not a folder; choose another path.")
    return path


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (embedded newlines of wrapped errors collapsed)."""
    return " ".join(str(error).split()) or type(error).__name__


def _show_warning(show: Callable[..., None]) -> Callable[..., None]:
    def showwarning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, LtcRlWarning):
            print(f"warning: {one_line(message) if isinstance(message, Warning) else message}", file=sys.stderr)
        else:
            show(message, category, *args, **kwargs)
    return showwarning


def cli_main(main: Callable[P, int | None]) -> Callable[P, int]:
    """Decorates a script's ``main(argv)``: :class:`LtcRlError` -> one line ``error: ...`` and its exit code
    (2), Ctrl-C outside training -> ``interrupted`` and 130; :class:`LtcRlWarning` prints as ``warning: ...``.

    Other exceptions propagate with their traceback (they are bugs); argparse's own exit (code 2) too.
    """

    @functools.wraps(main)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning(warnings.showwarning)
            try:
                code = main(*args, **kwargs)
            except LtcRlError as error:
                print(f"{error.label}: {one_line(error)}", file=sys.stderr)
                return error.exit_code
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                return 128 + signal.SIGINT
        return 0 if code is None else int(code)

    return wrapper
