"""Closed-form Continuous-time cell (CfC; Hasani et al., Nature Machine Intelligence 2022).

CfC replaces the ODE solve of an LTC by its closed-form approximation: a learned, time-dependent
gate interpolates between two candidate states,

    h' = (1 - g) * tanh(f1(z)) + g * tanh(f2(z)),   g = sigmoid(a(z) * dt + b(z)),

where ``z = backbone([x, h])``. Modes ``"pure"`` (direct closed-form solution) and ``"no_gate"``
are the paper's ablations; names and layout follow ``ncps.torch.CfCCell``.

:class:`WiredCfCCell` is ncps's wired CfC: one backbone-free CfC layer per wiring layer (an NCP's
inter, command and motor neurons), each fed by the previous layer through the wiring's synapses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ltc_rl.cells.base import RecurrentCell, as_timespan
from ltc_rl.wirings import Wiring, from_ncps, is_ncps_wiring

__all__ = ["CfCCell", "WiredCfCCell", "LeCunTanh"]

MODES = ("default", "pure", "no_gate")


class LeCunTanh(nn.Module):
    """LeCun's scaled tanh, ``1.7159 tanh(0.666 x)``."""

    def forward(self, x: Tensor) -> Tensor:
        return 1.7159 * torch.tanh(0.666 * x)


_ACTIVATIONS = {"lecun_tanh": LeCunTanh, "tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}


class CfCCell(RecurrentCell):
    """CfC step with an MLP backbone over ``[x, h]`` (``backbone_layers=0``: no backbone).

    ``sparsity_mask`` ``(input_size + units, units)`` (0/1 or polarities, as ncps takes it) masks the
    weights of ``ff1`` and ``ff2``: the wired CfC's synapses.
    """

    def __init__(self, input_size: int, units: int, mode: str = "default", backbone_activation: str = "lecun_tanh",
                 backbone_units: int = 128, backbone_layers: int = 1, backbone_dropout: float = 0.0,
                 sparsity_mask: np.ndarray | None = None) -> None:
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
        if sparsity_mask is None:
            self.sparsity_mask: Tensor | None = None
        else:
            mask = torch.as_tensor(np.abs(np.asarray(sparsity_mask, dtype=np.float32)).T.copy())
            if mask.shape != (units, width):
                raise ValueError(f"sparsity_mask must have shape ({width}, {units}), got {tuple(mask.T.shape)}.")
            self.register_buffer("sparsity_mask", mask)

    def _masked(self, layer: nn.Linear, z: Tensor) -> Tensor:
        weight = layer.weight if self.sparsity_mask is None else layer.weight * self.sparsity_mask
        return nn.functional.linear(z, weight, layer.bias)

    def forward(self, x: Tensor, state: Tensor, dt: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        ts = as_timespan(dt, x.shape[0], x)
        z = self.backbone(torch.cat([x, state], dim=-1))
        ff1 = self._masked(self.ff1, z)
        if self.mode == "pure":
            h = -self.A * torch.exp(-ts * (self.w_tau.abs() + ff1.abs())) * ff1 + self.A
        else:
            ff1, ff2 = torch.tanh(ff1), torch.tanh(self._masked(self.ff2, z))
            gate = torch.sigmoid(self.time_a(z) * ts + self.time_b(z))
            h = ff1 + gate * ff2 if self.mode == "no_gate" else ff1 * (1.0 - gate) + gate * ff2
        return h, h


class WiredCfCCell(RecurrentCell):
    """ncps's wired CfC (``ncps.torch.WiredCfCCell``): backbone-free CfC layers along a wiring's layers.

    Layer ``l`` holds the neurons ``wiring.get_neurons_of_layer(l)``; its inputs are the sensory
    inputs (first layer) or the previous layer's neurons, masked by the wiring's synapses, plus its
    own neurons (all-to-all). The state is the layers' states one after the other (for an NCP:
    inter, command, motor, as in ncps), and the output is the last (motor) layer.

    Args:
        input_size: number of input features.
        wiring: a :class:`~ltc_rl.wirings.Wiring` or an ``ncps.wirings`` object (converted exactly).
        mode: ``"default"``, ``"pure"`` or ``"no_gate"`` (see :class:`CfCCell`).
    """

    def __init__(self, input_size: int, wiring: Wiring | Any, mode: str = "default") -> None:
        super().__init__()
        wiring = from_ncps(wiring, input_size) if is_ncps_wiring(wiring) else wiring.build(input_size)
        self.wiring = wiring
        self.input_size, self.state_size, self.output_size = int(input_size), wiring.units, wiring.output_size
        self.layer_sizes: list[int] = []
        width, previous = self.input_size, None
        for layer in range(wiring.num_layers):
            neurons = wiring.get_neurons_of_layer(layer)
            synapses = (wiring.sensory_adjacency[:, neurons] if previous is None
                        else wiring.adjacency[np.ix_(previous, neurons)])
            mask = np.concatenate([synapses, np.ones((len(neurons), len(neurons)))], axis=0)
            self.add_module(f"layer_{layer}", CfCCell(width, len(neurons), mode, backbone_layers=0,
                                                      sparsity_mask=mask))
            self.layer_sizes.append(len(neurons))
            width, previous = len(neurons), neurons

    def forward(self, x: Tensor, state: Tensor, dt: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        ts = as_timespan(dt, x.shape[0], x)
        states = []
        for layer, layer_state in zip(self.children(), torch.split(state, self.layer_sizes, dim=1)):
            x, _ = layer(x, layer_state, ts)
            states.append(x)
        return x, torch.cat(states, dim=1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, wiring={self.wiring!r}"
