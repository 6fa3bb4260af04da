"""Recurrent cells behind one interface (:class:`RecurrentCell`), and a registry by name."""

from __future__ import annotations

from typing import Any

from ltc_rl.cells.base import RecurrentCell, as_timespan
from ltc_rl.cells.cfc import CfCCell, WiredCfCCell
from ltc_rl.cells.ctgru import CTGRUCell
from ltc_rl.cells.ltc import SOLVERS, LTCCell
from ltc_rl.cells.ode_rnn import CTRNNCell, NODECell
from ltc_rl.cells.stacked import StackedCell
from ltc_rl.cells.torch_rnn import GRUCell, LSTMCell
from ltc_rl.wirings import Wiring

__all__ = ["RecurrentCell", "as_timespan", "LTCCell", "CfCCell", "WiredCfCCell", "CTRNNCell", "NODECell", "CTGRUCell",
           "LSTMCell", "GRUCell", "StackedCell", "SOLVERS", "CELL_TYPES", "make_cell"]

CELL_TYPES: dict[str, type[RecurrentCell]] = {
    "ltc": LTCCell,
    "cfc": CfCCell,
    "ctrnn": CTRNNCell,
    "node": NODECell,
    "ctgru": CTGRUCell,
    "lstm": LSTMCell,
    "gru": GRUCell,
}


def make_cell(kind: str, input_size: int, units_or_wiring: int | Wiring, **kwargs: Any) -> RecurrentCell:
    """Build a cell by name (``"ltc"``, ``"cfc"``, ``"ctrnn"``, ``"node"``, ``"ctgru"``, ``"lstm"``, ``"gru"``).

    ``units_or_wiring``: a number of fully connected units, or (``"ltc"``, and ``"cfc"`` as ncps's wired CfC,
    :class:`WiredCfCCell`) a :class:`~ltc_rl.wirings.Wiring`, as ncps names the argument.
    """
    try:
        cls = CELL_TYPES[kind]
    except KeyError:
        raise ValueError(f"unknown cell {kind!r}; choose one of {sorted(CELL_TYPES)}.") from None
    if isinstance(units_or_wiring, Wiring) and cls is CfCCell:
        return WiredCfCCell(input_size, units_or_wiring, **kwargs)
    if isinstance(units_or_wiring, Wiring) and cls is not LTCCell:
        raise ValueError(f"cell {kind!r} takes an integer number of units; sparse wirings need the 'ltc' or "
                         "'cfc' cell.")
    return cls(input_size, units_or_wiring, **kwargs)
