"""Stacked recurrent layers behind the one-cell interface (sb3-contrib's ``n_lstm_layers`` for every cell).

:class:`StackedCell` runs its layers one above the other, each layer's output the next one's input, and keeps
their states side by side in ONE flat state ``[layer 0 | layer 1 | ...]``, so buffers, ``predict``, agents
and exports handle a stack exactly as a single cell.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ltc_rl.cells.base import RecurrentCell
from ltc_rl.wirings import Wiring

__all__ = ["StackedCell"]


class StackedCell(RecurrentCell):
    """Recurrent layers in series; the state is the concatenation of the layers' states.

    Args:
        layers: the cells, bottom first; each layer's ``output_size`` must equal the next one's ``input_size``.
    """

    def __init__(self, layers: Sequence[RecurrentCell]) -> None:
        super().__init__()
        if not layers:
            raise ValueError("StackedCell needs at least one layer.")
        for lower, upper in zip(layers[:-1], layers[1:]):
            if lower.output_size != upper.input_size:
                raise ValueError(f"layer outputs {lower.output_size} values but the layer above takes "
                                 f"{upper.input_size}; build each layer with the previous layer's output_size.")
        self.layers = nn.ModuleList(layers)
        self.input_size = layers[0].input_size
        self.output_size = layers[-1].output_size
        self.state_sizes = [layer.state_size for layer in layers]
        self.state_size = sum(self.state_sizes)
        self.uses_time = any(layer.uses_time for layer in layers)

    @property
    def wiring(self) -> Wiring | None:
        """The top layer's wiring (the one whose motor neurons give the outputs), None if it has none."""
        return getattr(self.layers[-1], "wiring", None)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> Tensor:
        return torch.cat([layer.initial_state(batch_size, device, dtype) for layer in self.layers], dim=-1)

    def forward(self, x: Tensor, state: Tensor, dt: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        states = []
        for layer, layer_state in zip(self.layers, state.split(self.state_sizes, dim=-1)):
            x, layer_state = layer(x, layer_state, dt if layer.uses_time else None)
            states.append(layer_state)
        return x, torch.cat(states, dim=-1)

    def forward_sequence(self, x: Tensor, state: Tensor | None = None, dt: Tensor | None = None,
                         resets: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Each layer runs the whole sequence (its own fused path, if any) before the layer above."""
        if state is None:
            state = self.initial_state(x.shape[0], x.device, x.dtype)
        states = []
        for layer, layer_state in zip(self.layers, state.split(self.state_sizes, dim=-1)):
            x, layer_state = layer.forward_sequence(x, layer_state, dt if layer.uses_time else None, resets)
            states.append(layer_state)
        return x, torch.cat(states, dim=-1)

    def apply_weight_constraints(self) -> None:
        for layer in self.layers:
            layer.apply_weight_constraints()
