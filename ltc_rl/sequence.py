"""Sequence modules in the ``ncps.torch`` call convention: ``LTC(input_size, units_or_wiring)``.

``RNN`` wraps any :class:`~ltc_rl.cells.RecurrentCell` and runs it over a sequence with the
options ncps users know (``batch_first``, ``return_sequences``, an initial state ``hx``,
per-step ``timespans``, ``mixed_memory``, CfC's ``proj_size``) plus per-step ``resets`` (True where
an episode starts). A call with one time step, as control loops make, runs the cell's single-step
path (for an LTC on CPU without gradients: one native kernel call).

The state is one flat tensor everywhere: with ``mixed_memory=True`` it is ``[h, c]`` of size
``2 * units`` (ncps uses the pair ``(h, c)``, which ``hx`` accepts as well).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ltc_rl.cells import CfCCell, LTCCell, RecurrentCell, WiredCfCCell
from ltc_rl.wirings import Wiring, is_ncps_wiring

__all__ = ["RNN", "LTC", "CfC", "MemoryCell"]


class MemoryCell(nn.Module):
    """The LSTM of ncps's ``mixed_memory`` (``ncps.torch.lstm.LSTMCell``): same parameters and update.

    It runs before the recurrent cell at every step and hands it its hidden state, so that long-term
    information can live in the LSTM's cell state ``c``.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_map = nn.Linear(input_size, 4 * hidden_size, bias=True)
        self.recurrent_map = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        nn.init.xavier_uniform_(self.input_map.weight)
        nn.init.uniform_(self.input_map.bias, -0.1, 0.1)
        nn.init.orthogonal_(self.recurrent_map.weight)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i, ig, fg, og = (self.input_map(x) + self.recurrent_map(h)).chunk(4, 1)
        c = c * torch.sigmoid(fg + 1.0) + torch.tanh(i) * torch.sigmoid(ig)
        return torch.tanh(c) * torch.sigmoid(og), c


class RNN(nn.Module):
    """Run a recurrent cell over ``(batch, time, features)`` (or time-major / unbatched) inputs.

    Args:
        cell: the recurrent cell.
        return_sequences / batch_first: as in ncps.
        mixed_memory: run ncps's memory LSTM (:class:`MemoryCell`) before the cell at every step.
        proj_size: a linear layer from the cell's outputs to ``proj_size`` features (ncps's CfC option).
    """

    def __init__(self, cell: RecurrentCell, return_sequences: bool = True, batch_first: bool = True,
                 mixed_memory: bool = False, proj_size: int | None = None) -> None:
        super().__init__()
        self.rnn_cell = cell
        self.return_sequences = return_sequences
        self.batch_first = batch_first
        self.use_mixed = bool(mixed_memory)
        if self.use_mixed:
            self.lstm = MemoryCell(cell.input_size, cell.state_size)
        self.proj_size = proj_size
        self.fc: nn.Module = nn.Identity() if proj_size is None else nn.Linear(cell.output_size, int(proj_size))

    @property
    def input_size(self) -> int:
        return self.rnn_cell.input_size

    @property
    def state_size(self) -> int:
        """Size of the flat state (``2 * units`` with mixed memory)."""
        return self.rnn_cell.state_size * (2 if self.use_mixed else 1)

    @property
    def output_size(self) -> int:
        return self.rnn_cell.output_size if self.proj_size is None else int(self.proj_size)

    @property
    def wiring(self) -> Wiring | None:
        """The cell's wiring (LTC, wired CfC), None for unwired cells."""
        return getattr(self.rnn_cell, "wiring", None)

    def _to_batch_first(self, tensor: Tensor | None, unbatched: bool) -> Tensor | None:
        if tensor is None:
            return None
        if unbatched:
            return tensor.unsqueeze(0)
        return tensor if self.batch_first else tensor.transpose(0, 1)

    def forward(self, input: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None,
                timespans: Tensor | float | None = None, resets: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Returns ``(outputs, final_state)``.

        Args:
            input: ``(batch, time, input_size)`` if ``batch_first`` else ``(time, batch, input_size)``;
                ``(time, input_size)`` for a single unbatched sequence.
            hx: initial state ``(batch, state_size)`` (``(state_size,)`` unbatched); zeros if None.
                With mixed memory also ncps's pair ``(h, c)``.
            timespans: elapsed time per step, shaped like ``input`` without the feature axis (a
                trailing axis of 1 is accepted), or a float for all steps; 1.0 if None.
            resets: bools shaped like ``timespans``; True resets the state before that step.
        """
        if (input.dim() == 3 and input.shape[1 if self.batch_first else 0] == 1 and resets is None
                and not self.use_mixed and not isinstance(hx, (tuple, list))):
            return self._one_step(input, hx, timespans)
        if input.dim() not in (2, 3):
            raise ValueError(f"input must be 2-D (time, features) or 3-D batched, got shape {tuple(input.shape)}.")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input has {input.shape[-1]} features but the network expects {self.input_size}.")
        unbatched = input.dim() == 2
        x = self._to_batch_first(input, unbatched)
        if isinstance(hx, (tuple, list)):
            if not self.use_mixed:
                raise ValueError("hx is a pair (h, c) but this network has no mixed memory; pass one state tensor.")
            hx = torch.cat(tuple(hx), dim=-1)
        if hx is not None:
            expected_dim = 1 if unbatched else 2
            if hx.dim() != expected_dim or hx.shape[-1] != self.state_size:
                raise ValueError(f"hx must have shape {'(state_size,)' if unbatched else '(batch, state_size)'} "
                                 f"with state_size={self.state_size}, got {tuple(hx.shape)}.")
            hx = hx.unsqueeze(0) if unbatched else hx
        dt = None
        if timespans is not None:
            if isinstance(timespans, (int, float)):
                dt = x.new_full(x.shape[:2], float(timespans))
            else:
                if timespans.dim() == input.dim():
                    timespans = timespans.squeeze(-1)
                dt = self._to_batch_first(timespans, unbatched)
        if resets is not None:
            resets = self._to_batch_first(resets.squeeze(-1) if resets.dim() == input.dim() else resets, unbatched)
        if self.use_mixed:
            outputs, state = self._mixed_sequence(x, hx, dt, resets)
        else:
            outputs, state = self.rnn_cell.forward_sequence(x, hx, dt, resets)
        outputs = self.fc(outputs)
        if self.return_sequences:
            readout = outputs if self.batch_first or unbatched else outputs.transpose(0, 1)
        else:
            readout = outputs[:, -1]
        if unbatched:
            readout, state = readout.squeeze(0), state.squeeze(0)
        return readout, state

    def _one_step(self, input: Tensor, hx: Tensor | None, timespans: Tensor | float | None) -> tuple[Tensor, Tensor]:
        """A batched call with one time step, as control loops make it: the cell's single-step path.

        For an LTC on CPU without gradients that is one native kernel call; the checks here are the
        general path's, kept few because a control step's budget is microseconds.
        """
        batch = input.shape[0 if self.batch_first else 1]
        x = input.view(batch, input.shape[-1])
        if x.shape[1] != self.input_size:
            raise ValueError(f"input has {x.shape[1]} features but the network expects {self.input_size}.")
        if hx is None:
            hx = self.rnn_cell.initial_state(batch, x.device, x.dtype)
        elif hx.shape != (batch, self.state_size):
            raise ValueError(f"hx must have shape (batch, state_size) = {(batch, self.state_size)}, "
                             f"got {tuple(hx.shape)}.")
        dt = timespans if timespans is None or isinstance(timespans, (int, float)) else timespans.reshape(batch)
        y, state = self.rnn_cell(x, hx, dt)
        if self.proj_size is not None:
            y = self.fc(y)
        return (y.unsqueeze(1 if self.batch_first else 0) if self.return_sequences else y), state

    def _mixed_sequence(self, x: Tensor, state: Tensor | None, dt: Tensor | None,
                        resets: Tensor | None) -> tuple[Tensor, Tensor]:
        """The time loop with the memory LSTM before the cell at every step, as ncps runs it."""
        units = self.rnn_cell.state_size
        if state is None:
            state = x.new_zeros(x.shape[0], 2 * units)
        h, c = state[:, :units], state[:, units:]
        outputs = []
        for t in range(x.shape[1]):
            if resets is not None:
                keep = (~resets[:, t].to(torch.bool)).unsqueeze(-1).to(x.dtype)
                h, c = h * keep, c * keep
            h, c = self.lstm(x[:, t], h, c)
            y, h = self.rnn_cell(x[:, t], h, None if dt is None else dt[:, t])
            outputs.append(y)
        return torch.stack(outputs, dim=1), torch.cat([h, c], dim=-1)


class LTC(RNN):
    """A Liquid Time-Constant network over a wiring, called like ``ncps.torch.LTC``.

    ``LTC(17, 64)`` is fully connected with 64 neurons; ``LTC(17, wirings.AutoNCP(32, 6))`` is a
    sparse neural circuit with 6 motor outputs (an ``ncps.wirings`` object works too). Keyword
    arguments beyond ncps': ``solver``.
    """

    def __init__(self, input_size: int, units: int | Wiring, return_sequences: bool = True,
                 batch_first: bool = True, mixed_memory: bool = False, input_mapping: str | None = "affine",
                 output_mapping: str | None = "affine", ode_unfolds: int = 6, epsilon: float = 1e-8,
                 implicit_param_constraints: bool = True, solver: str = "fused") -> None:
        cell = LTCCell(input_size, units, solver=solver, ode_unfolds=ode_unfolds, input_mapping=input_mapping,
                       output_mapping=output_mapping, epsilon=epsilon,
                       implicit_param_constraints=implicit_param_constraints)
        super().__init__(cell, return_sequences=return_sequences, batch_first=batch_first, mixed_memory=mixed_memory)

    @property
    def sensory_size(self) -> int:
        return self.rnn_cell.sensory_size

    @property
    def motor_size(self) -> int:
        return self.rnn_cell.motor_size

    @property
    def synapse_count(self) -> int:
        return self.rnn_cell.synapse_count

    @property
    def sensory_synapse_count(self) -> int:
        return self.rnn_cell.sensory_synapse_count


class CfC(RNN):
    """A Closed-form Continuous-time network, called like ``ncps.torch.CfC`` (same arguments and order).

    ``units``: a number of neurons (a CfC with an MLP backbone), or a wiring (ncps's wired CfC,
    :class:`~ltc_rl.cells.WiredCfCCell`, which has no backbone). ``activation``: the backbone's
    activation (``"lecun_tanh"``, ``"tanh"``, ``"relu"``, ``"silu"``, ``"gelu"``); ``backbone_*``
    default to 128 units, 1 layer, no dropout.
    """

    def __init__(self, input_size: int, units: int | Wiring | Any, proj_size: int | None = None,
                 return_sequences: bool = True, batch_first: bool = True, mixed_memory: bool = False,
                 mode: str = "default", activation: str = "lecun_tanh", backbone_units: int | None = None,
                 backbone_layers: int | None = None, backbone_dropout: float | None = None) -> None:
        cell: RecurrentCell
        if isinstance(units, Wiring) or is_ncps_wiring(units):
            given = [name for name, value in (("backbone_units", backbone_units), ("backbone_layers", backbone_layers),
                                              ("backbone_dropout", backbone_dropout)) if value is not None]
            if given:
                raise ValueError(f"{', '.join(given)} cannot be used with a wiring (the wired CfC has no "
                                 "backbone); pass an integer number of units for a CfC with a backbone.")
            cell = WiredCfCCell(input_size, units, mode)
        else:
            cell = CfCCell(input_size, units, mode, activation, 128 if backbone_units is None else backbone_units,
                           1 if backbone_layers is None else backbone_layers,
                           0.0 if backbone_dropout is None else backbone_dropout)
        super().__init__(cell, return_sequences=return_sequences, batch_first=batch_first, mixed_memory=mixed_memory,
                         proj_size=proj_size)
