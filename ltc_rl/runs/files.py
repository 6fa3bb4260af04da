"""Writing a run's files atomically: the one way every file of a run folder, report or study is written.

Every file is written into a temporary sibling, flushed and fsynced, then renamed over the target (and the
folder fsynced), so a process killed at any moment leaves either the previous or the new version, never a
torn one. :func:`remove_stale_temporaries` deletes the temporaries a killed process left behind.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ltc_rl.errors import ConfigError

__all__ = ["atomic_write", "write_text", "save_figure", "remove_stale_temporaries"]

_TEMPORARY = ".*.tmp"


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary sibling, fsync it, then rename it into place.

    If ``write`` fails the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except IsADirectoryError as exc:  # a folder where the file belongs: nothing this process can fix by itself
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: a folder of that name is in the way; move it away.") from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """``text`` (UTF-8) to ``path`` atomically."""
    data = text.encode()
    return atomic_write(path, lambda handle: handle.write(data))


def save_figure(fig: Any, path: str | Path, dpi: int = 110, bbox_inches: str | None = "tight") -> Path:
    """The matplotlib figure ``fig`` as a PNG at ``path``, atomically; the figure is closed afterwards."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches=bbox_inches)
    finally:
        plt.close(fig)
    return atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files :func:`atomic_write` left in ``folder`` (and below) when a process was killed."""
    stale = [path for path in Path(folder).rglob(_TEMPORARY) if path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
