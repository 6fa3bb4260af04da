"""Sequence modules in the ``ncps.torch`` call convention: ``LTC(input_size, units_or_wiring)``.

``RNN`` wraps any :class:`~ltc_rl.cells.RecurrentCell` and runs it over a sequence with the
options ncps users know (``batch_first``, ``return_sequences``, an initial state ``hx``,
per-step ``timespans``) plus per-step ``resets`` (True where an episode starts).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ltc_rl.cells import CfCCell, LTCCell, RecurrentCell
from ltc_rl.wirings import Wiring

__all__ = ["RNN", "LTC", "CfC"]


class RNN(nn.Module):
    """Run a recurrent cell over ``(batch, time, features)`` (or time-major / unbatched) inputs."""

    def __init__(self, cell: RecurrentCell, return_sequences: bool = True, batch_first: bool = True) -> None:
        super().__init__()
        self.rnn_cell = cell
        self.return_sequences = return_sequences
        self.batch_first = batch_first

    @property
    def input_size(self) -> int:
        return self.rnn_cell.input_size

    @property
    def state_size(self) -> int:
        return self.rnn_cell.state_size

    @property
    def output_size(self) -> int:
        return self.rnn_cell.output_size

    def _to_batch_first(self, tensor: Tensor | None, unbatched: bool) -> Tensor | None:
        if tensor is None:
            return None
        if unbatched:
            return tensor.unsqueeze(0)
        return tensor if self.batch_first else tensor.transpose(0, 1)

    def forward(self, input: Tensor, hx: Tensor | None = None, timespans: Tensor | float | None = None,
                resets: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Returns ``(outputs, final_state)``.

        Args:
            input: ``(batch, time, input_size)`` if ``batch_first`` else ``(time, batch, input_size)``;
                ``(time, input_size)`` for a single unbatched sequence.
            hx: initial state ``(batch, state_size)`` (``(state_size,)`` unbatched); zeros if None.
            timespans: elapsed time per step, shaped like ``input`` without the feature axis (a
                trailing axis of 1 is accepted), or a float for all steps; 1.0 if None.
            resets: bools shaped like ``timespans``; True resets the state before that step.
        """
        if input.dim() not in (2, 3):
            raise ValueError(f"input must be 2-D (time, features) or 3-D batched, got shape {tuple(input.shape)}.")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input has {input.shape[-1]} features but the network expects {self.input_size}.")
        unbatched = input.dim() == 2
        x = self._to_batch_first(input, unbatched)
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
        outputs, state = self.rnn_cell.forward_sequence(x, hx, dt, resets)
        if self.return_sequences:
            readout = outputs if self.batch_first or unbatched else outputs.transpose(0, 1)
        else:
            readout = outputs[:, -1]
        if unbatched:
            readout, state = readout.squeeze(0), state.squeeze(0)
        return readout, state


class LTC(RNN):
    """A Liquid Time-Constant network over a wiring, called like ``ncps.torch.LTC``.

    ``LTC(17, 64)`` is fully connected with 64 neurons; ``LTC(17, wirings.AutoNCP(32, 6))`` is a
    sparse neural circuit with 6 motor outputs. Keyword arguments beyond ncps': ``solver``.
    """

    def __init__(self, input_size: int, units: int | Wiring, return_sequences: bool = True,
                 batch_first: bool = True, input_mapping: str | None = "affine", output_mapping: str | None = "affine",
                 ode_unfolds: int = 6, epsilon: float = 1e-8, implicit_param_constraints: bool = True,
                 solver: str = "fused") -> None:
        cell = LTCCell(input_size, units, solver=solver, ode_unfolds=ode_unfolds, input_mapping=input_mapping,
                       output_mapping=output_mapping, epsilon=epsilon,
                       implicit_param_constraints=implicit_param_constraints)
        super().__init__(cell, return_sequences=return_sequences, batch_first=batch_first)

    @property
    def wiring(self) -> Wiring:
        return self.rnn_cell.wiring


class CfC(RNN):
    """A Closed-form Continuous-time network, called like ``ncps.torch.CfC`` (integer units)."""

    def __init__(self, input_size: int, units: int, return_sequences: bool = True, batch_first: bool = True,
                 **cell_kwargs: Any) -> None:
        if isinstance(units, Wiring):
            raise ValueError("CfC takes an integer number of units; use LTC for sparse wirings.")
        super().__init__(CfCCell(input_size, units, **cell_kwargs), return_sequences=return_sequences,
                         batch_first=batch_first)
