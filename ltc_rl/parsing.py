"""Lists and seeds written as text (``"ltc, lstm"``, ``"3"``, ``"0,4,7"``): how the commands' flags and the
study files read them, one way for both."""

from __future__ import annotations

from collections.abc import Sequence

from ltc_rl.errors import ConfigError

__all__ = ["parse_list", "parse_seeds"]


def parse_list(text: str) -> list[str]:
    """``"ltc, lstm"`` -> ``["ltc", "lstm"]``."""
    return [part.strip() for part in str(text).split(",") if part.strip()]


def parse_seeds(values: str | int | Sequence[str | int]) -> list[int]:
    """``--seeds``: one number is a count (``3`` -> ``[0, 1, 2]``), a list (comma- or space-separated) the seeds
    themselves (``3,7`` -> ``[3, 7]``; ``5,`` -> ``[5]``)."""
    items = [str(values)] if isinstance(values, (str, int)) else [str(v) for v in values]
    parts = [part for item in items for part in parse_list(item)]
    try:
        seeds = [int(part) for part in parts]
    except ValueError:
        seeds = []
    if not seeds:
        raise ConfigError(f"--seeds takes a count (e.g. 3 for seeds 0,1,2) or a list of seeds (e.g. 0,4,7), got "
                          f"{' '.join(items)!r}.")
    if len(items) == 1 and "," not in items[0]:  # a count
        if seeds[0] < 1:
            raise ConfigError(f"--seeds COUNT must be >= 1, got {seeds[0]}; --seed N (or --seeds N,) runs the one "
                              "seed N.")
        return list(range(seeds[0]))
    return seeds
