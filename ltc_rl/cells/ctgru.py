"""Continuous-time GRU (CT-GRU; Mozer, Kazakov and Lindsey, 2017).

Each unit keeps ``M`` traces that decay with fixed, log-spaced time constants ``tau_k``. A
retrieval gate reads a blend of the traces, a storage gate writes the new candidate into
the traces whose time scale matches, and all traces decay by ``exp(-dt / tau_k)`` over the
elapsed time. The state is the flattened ``(units, M)`` trace matrix; the output is the sum
of the traces.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ltc_rl.cells.base import RecurrentCell, as_timespan

__all__ = ["CTGRUCell"]


class CTGRUCell(RecurrentCell):
    """CT-GRU with ``time_scales`` traces per unit, time constants ``10^(0.5 k)`` as in the LTC paper's baseline."""

    def __init__(self, input_size: int, units: int, time_scales: int = 8) -> None:
        super().__init__()
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"CTGRUCell needs a positive integer number of units, got {units!r}.")
        self.input_size, self.units, self.time_scales = int(input_size), units, int(time_scales)
        self.state_size, self.output_size = units * self.time_scales, units
        log_tau = torch.tensor([math.log(10.0 ** (0.5 * k)) for k in range(self.time_scales)])
        self.register_buffer("log_tau", log_tau)
        self.retrieval = nn.Linear(input_size + units, units * self.time_scales)
        self.storage = nn.Linear(input_size + units, units * self.time_scales)
        self.candidate_input = nn.Linear(input_size, units)
        self.candidate_recurrent = nn.Linear(units, units, bias=False)

    def _scale_weights(self, layer: nn.Linear, z: Tensor) -> Tensor:
        """Softmax over time scales of how close each scale is to the requested (log) time constant."""
        requested = layer(z).view(-1, self.units, self.time_scales)
        return torch.softmax(-torch.square(requested - self.log_tau), dim=-1)

    def forward(self, x: Tensor, state: Tensor, dt: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        traces = state.view(-1, self.units, self.time_scales)
        h = traces.sum(dim=-1)
        z = torch.cat([x, h], dim=-1)
        retrieved = (self._scale_weights(self.retrieval, z) * traces).sum(dim=-1)
        candidate = torch.tanh(self.candidate_input(x) + self.candidate_recurrent(retrieved))
        store = self._scale_weights(self.storage, z)
        decay = torch.exp(-as_timespan(dt, x.shape[0], x).unsqueeze(-1) / self.log_tau.exp())
        traces = ((1.0 - store) * traces + store * candidate.unsqueeze(-1)) * decay
        return traces.sum(dim=-1), traces.reshape(-1, self.state_size)
