"""The one recurrent-cell interface that every cell, policy and benchmark shares.

A cell maps ``(x, state, dt) -> (y, state)`` for one time step:

* ``x``: ``(batch, input_size)`` inputs;
* ``state``: ``(batch, state_size)``, always a single flat tensor (an LSTM packs ``[h, c]``),
  so RL buffers and sequence runners store every cell's state the same way;
* ``dt``: elapsed time since the previous step, ``None`` (= 1.0), a float, or a tensor
  of shape ``(batch,)``; discrete-time cells (LSTM, GRU) ignore it;
* ``y``: ``(batch, output_size)``.

:meth:`RecurrentCell.forward_sequence` runs a whole ``(batch, time, features)`` sequence with
per-step ``dt`` and per-step reset masks; cells with a fused kernel override it, everything
else inherits the plain time loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

__all__ = ["RecurrentCell", "as_timespan"]


def as_timespan(dt: Tensor | float | None, batch_size: int, like: Tensor) -> Tensor:
    """Normalise ``dt`` to a ``(batch, 1)`` tensor on ``like``'s device and dtype."""
    if dt is None:
        return torch.ones(batch_size, 1, device=like.device, dtype=like.dtype)
    if not torch.is_tensor(dt):
        return torch.full((batch_size, 1), float(dt), device=like.device, dtype=like.dtype)
    dt = dt.to(device=like.device, dtype=like.dtype)
    if dt.dim() == 0:
        return dt.expand(batch_size).unsqueeze(-1)
    dt = dt.reshape(-1, 1) if dt.dim() == 1 or dt.shape[-1] == 1 else dt
    if dt.shape != (batch_size, 1):
        raise ValueError(f"dt must be a scalar or have shape ({batch_size},), got {tuple(dt.shape)}.")
    return dt


class RecurrentCell(nn.Module, ABC):
    """Base class of all recurrent cells (LTC, CfC, CT-RNN, Neural ODE, CT-GRU, LSTM, GRU)."""

    input_size: int
    state_size: int
    output_size: int

    #: True for cells whose dynamics use the elapsed time ``dt`` (continuous-time cells).
    uses_time: bool = True

    def initial_state(self, batch_size: int, device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> Tensor:
        """The state a fresh episode or sequence starts from (zeros)."""
        reference = next(self.parameters(), None)
        device = device if device is not None else (reference.device if reference is not None else None)
        dtype = dtype if dtype is not None else (reference.dtype if reference is not None else None)
        return torch.zeros(batch_size, self.state_size, device=device, dtype=dtype)

    def reset_state(self, state: Tensor, reset_mask: Tensor | None) -> Tensor:
        """Replace the rows of ``state`` where ``reset_mask`` (``(batch,)`` bool) is True by the initial state."""
        if reset_mask is None:
            return state
        keep = (~reset_mask.to(device=state.device, dtype=torch.bool)).unsqueeze(-1).to(state.dtype)
        return state * keep + self.initial_state(state.shape[0], state.device, state.dtype) * (1 - keep)

    @abstractmethod
    def forward(self, x: Tensor, state: Tensor, dt: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        """One step: returns ``(output, new_state)``."""

    def forward_sequence(self, x: Tensor, state: Tensor | None = None, dt: Tensor | None = None,
                         resets: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run a ``(batch, time, input_size)`` sequence.

        ``dt``: ``(batch, time)`` elapsed times or None; ``resets``: ``(batch, time)`` bools,
        True where an episode starts, i.e. the state is reset *before* that step is processed.
        Returns outputs ``(batch, time, output_size)`` and the final state.
        """
        batch, steps = x.shape[0], x.shape[1]
        if state is None:
            state = self.initial_state(batch, x.device, x.dtype)
        outputs = []
        for t in range(steps):
            if resets is not None:
                state = self.reset_state(state, resets[:, t])
            y, state = self(x[:, t], state, None if dt is None else dt[:, t])
            outputs.append(y)
        return torch.stack(outputs, dim=1), state

    def apply_weight_constraints(self) -> None:
        """Project parameters back into their valid range after an optimiser step (no-op by default)."""

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, state_size={self.state_size}, output_size={self.output_size}"
