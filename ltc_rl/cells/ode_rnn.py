"""The continuous-time baselines of the LTC paper: CT-RNN and Neural ODE RNN.

Both integrate a hidden state ``h`` with a fixed number of solver sub-steps per cell step;
the sub-step is ``unfold_dt * dt``, so with the default ``dt = 1`` they run the paper's
6 unfolds of 0.1 and irregularly sampled inputs stretch or shrink the integration time.

* CT-RNN: ``dh/dt = -h / tau + tanh(W [x, h] + b)``, explicit Euler.
* Neural ODE: ``dh/dt = tanh(W [x, h] + b)``, Runge-Kutta 4.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ltc_rl.cells.base import RecurrentCell, as_timespan

__all__ = ["CTRNNCell", "NODECell"]


class _ODERNNCell(RecurrentCell):
    """Shared layout: one affine map of ``[x, h]`` inside the vector field."""

    def __init__(self, input_size: int, units: int, ode_unfolds: int = 6, unfold_dt: float = 0.1) -> None:
        super().__init__()
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"{type(self).__name__} needs a positive integer number of units, got {units!r}.")
        self.input_size, self.state_size, self.output_size = int(input_size), units, units
        self.ode_unfolds, self.unfold_dt = int(ode_unfolds), float(unfold_dt)
        self.linear = nn.Linear(input_size + units, units)

    def vector_field(self, x: Tensor, h: Tensor) -> Tensor:
        raise NotImplementedError


class CTRNNCell(_ODERNNCell):
    """Continuous-time RNN with a fixed time constant ``tau``, explicit Euler."""

    def __init__(self, input_size: int, units: int, ode_unfolds: int = 6, unfold_dt: float = 0.1,
                 tau: float = 1.0) -> None:
        super().__init__(input_size, units, ode_unfolds, unfold_dt)
        self.tau = float(tau)

    def vector_field(self, x: Tensor, h: Tensor) -> Tensor:
        return -h / self.tau + torch.tanh(self.linear(torch.cat([x, h], dim=-1)))

    def forward(self, x: Tensor, state: Tensor, dt: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        step = as_timespan(dt, x.shape[0], x) * self.unfold_dt
        h = state
        for _ in range(self.ode_unfolds):
            h = h + step * self.vector_field(x, h)
        return h, h


class NODECell(_ODERNNCell):
    """Neural ODE RNN: an MLP vector field integrated with Runge-Kutta 4."""

    def vector_field(self, x: Tensor, h: Tensor) -> Tensor:
        return torch.tanh(self.linear(torch.cat([x, h], dim=-1)))

    def forward(self, x: Tensor, state: Tensor, dt: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        step = as_timespan(dt, x.shape[0], x) * self.unfold_dt
        h = state
        for _ in range(self.ode_unfolds):
            k1 = self.vector_field(x, h)
            k2 = self.vector_field(x, h + 0.5 * step * k1)
            k3 = self.vector_field(x, h + 0.5 * step * k2)
            k4 = self.vector_field(x, h + step * k3)
            h = h + step / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        return h, h
