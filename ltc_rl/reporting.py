"""Small writers shared by reports and progress messages."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_csv", "counted", "headless_pyplot"]


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` (dicts sharing the first row's keys) as a CSV file with a header; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, in the plural unless ``count`` is 1: "1 episode", "5 episodes"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def headless_pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, which draws into files without a display (servers, CI); imported
    when a plot is made, so that importing a module with plots stays light."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
