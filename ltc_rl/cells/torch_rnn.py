"""Adapters that put ``torch.nn.LSTMCell`` and ``torch.nn.GRUCell`` behind the cell interface.

They are discrete-time cells: ``dt`` is accepted and ignored. The LSTM's ``(h, c)`` pair is
packed into one flat state ``[h, c]`` of size ``2 * units``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ltc_rl.cells.base import RecurrentCell

__all__ = ["LSTMCell", "GRUCell"]


class LSTMCell(RecurrentCell):
    """``torch.nn.LSTMCell`` with the packed state ``[h, c]``; the output is ``h``."""

    uses_time = False

    def __init__(self, input_size: int, units: int) -> None:
        super().__init__()
        self.input_size, self.units = int(input_size), int(units)
        self.state_size, self.output_size = 2 * self.units, self.units
        self.cell = nn.LSTMCell(input_size, units)

    def forward(self, x: Tensor, state: Tensor, dt: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        h, c = self.cell(x, (state[:, : self.units], state[:, self.units:]))
        return h, torch.cat([h, c], dim=-1)


class GRUCell(RecurrentCell):
    """``torch.nn.GRUCell``; state and output are ``h``."""

    uses_time = False

    def __init__(self, input_size: int, units: int) -> None:
        super().__init__()
        self.input_size, self.units = int(input_size), int(units)
        self.state_size = self.output_size = self.units
        self.cell = nn.GRUCell(input_size, units)

    def forward(self, x: Tensor, state: Tensor, dt: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        h = self.cell(x, state)
        return h, h

