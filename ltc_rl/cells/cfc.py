"""Closed-form Continuous-time cell (CfC; Hasani et al., Nature Machine Intelligence 2022).

CfC replaces the ODE solve of an LTC by its closed-form approximation: a learned, time-dependent
gate interpolates between two candidate states,

    h' = (1 - g) * tanh(f1(z)) + g * tanh(f2(z)),   g = sigmoid(a(z) * dt + b(z)),

where ``z = backbone([x, h])``. Modes ``"pure"`` (direct closed-form solution) and ``"no_gate"``
are the paper's ablations; names and layout follow ``ncps.torch.CfCCell``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ltc_rl.cells.base import RecurrentCell, as_timespan

__all__ = ["CfCCell", "LeCunTanh"]

MODES = ("default", "pure", "no_gate")


class LeCunTanh(nn.Module):
    """LeCun's scaled tanh, ``1.7159 tanh(0.666 x)``."""

    def forward(self, x: Tensor) -> Tensor:
        return 1.7159 * torch.tanh(0.666 * x)


_ACTIVATIONS = {"lecun_tanh": LeCunTanh, "tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}


class CfCCell(RecurrentCell):
    """CfC step with an MLP backbone over ``[x, h]``."""

    def __init__(self, input_size: int, units: int, mode: str = "default", backbone_activation: str = "lecun_tanh",
                 backbone_units: int = 128, backbone_layers: int = 1, backbone_dropout: float = 0.0) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown CfC mode {mode!r}; choose one of {MODES}.")
        if backbone_activation not in _ACTIVATIONS:
            raise ValueError(f"unknown backbone_activation {backbone_activation!r}; choose one of {sorted(_ACTIVATIONS)}.")
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"CfCCell needs a positive integer number of units, got {units!r}.")
        self.input_size, self.state_size, self.output_size = int(input_size), units, units
        self.mode = mode
        layers: list[nn.Module] = []
        width = input_size + units
        for _ in range(backbone_layers):
            layers += [nn.Linear(width, backbone_units), _ACTIVATIONS[backbone_activation]()]
            if backbone_dropout > 0:
                layers.append(nn.Dropout(backbone_dropout))
            width = backbone_units
        self.backbone = nn.Sequential(*layers)
        self.ff1 = nn.Linear(width, units)
        if mode == "pure":
            self.w_tau = nn.Parameter(torch.zeros(1, units))
            self.A = nn.Parameter(torch.ones(1, units))
        else:
            self.ff2 = nn.Linear(width, units)
            self.time_a = nn.Linear(width, units)
            self.time_b = nn.Linear(width, units)
        for param in self.parameters():
            if param.dim() == 2:
                nn.init.xavier_uniform_(param)

    def forward(self, x: Tensor, state: Tensor, dt: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        ts = as_timespan(dt, x.shape[0], x)
        z = self.backbone(torch.cat([x, state], dim=-1))
        ff1 = self.ff1(z)
        if self.mode == "pure":
            h = -self.A * torch.exp(-ts * (self.w_tau.abs() + ff1.abs())) * ff1 + self.A
        else:
            ff1, ff2 = torch.tanh(ff1), torch.tanh(self.ff2(z))
            gate = torch.sigmoid(self.time_a(z) * ts + self.time_b(z))
            h = ff1 + gate * ff2 if self.mode == "no_gate" else ff1 * (1.0 - gate) + gate * ff2
        return h, h
