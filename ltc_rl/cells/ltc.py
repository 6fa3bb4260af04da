"""The Liquid Time-Constant cell (Hasani et al., AAAI 2021), readable reference implementation.

Each neuron ``i`` follows the ODE

    cm_i dv_i/dt = gleak_i (vleak_i - v_i) + sum_j w_ji s(v_j) (erev_ji - v_i)
                   + sum_k sw_ki s(x_k) (serev_ki - v_i)

with sigmoidal synapses ``s(v) = sigmoid(sigma (v - mu))``. The synaptic conductances
make the time constant of every neuron depend on its inputs ("liquid").
One cell step integrates the ODE over the elapsed time ``dt`` with ``ode_unfolds`` sub-steps
of one of three solvers:

* ``"fused"``: the paper's semi-implicit (fused explicit/implicit Euler) update, which keeps
  the state inside the range of ``v``, ``vleak`` and the reversal potentials (Theorem 2);
* ``"euler"``: explicit Euler;
* ``"rk4"``: classical Runge-Kutta.

Parameter names and shapes are those of ``ncps.torch.LTCCell`` so trained ncps models import
directly (see :mod:`ltc_rl.ncps_compat`).

This file is the readable reference. By default (``fast=True``) :meth:`LTCCell.forward` and
:meth:`LTCCell.forward_sequence` run the same dynamics through :mod:`ltc_rl.kernels.ltc_fast`
(no stored synapse tensors, sparse wirings compressed, compiled steps); ``fast=False``
selects the code below, which the tests compare the fast path against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ltc_rl.cells.base import RecurrentCell, as_timespan
from ltc_rl.kernels import ltc_fast
from ltc_rl.wirings import FullyConnected, Wiring, from_ncps, is_ncps_wiring

__all__ = ["LTCCell", "SynapseTerms", "SOLVERS", "INIT_RANGES"]

SOLVERS = ("fused", "euler", "rk4")
_MAPPINGS = ("affine", "linear", None)


class SynapseTerms(NamedTuple):
    """The parameter-only terms of one synapse population, laid out ``(post, pre)``.

    A synapse's activation is ``sigmoid(slope * v_pre + offset)`` with ``slope = sigma`` and
    ``offset = -sigma mu``; ``weighted_erev`` is ``w erev`` and ``weight`` the positive, masked ``w``.
    Post-synaptic-major, so each neuron's sums run along contiguous memory; computed once per cell
    step (not per unfold), and folded into constants by exports.
    """

    slope: Tensor
    offset: Tensor
    weighted_erev: Tensor
    weight: Tensor
    #: Post-synaptic neurons left out before and after the rows held (exports crop a sparse wiring's
    #: neurons without synapses of this population; their sums are zero).
    padding: tuple[int, int] = (0, 0)


#: ncps's initialisation: each parameter drawn uniformly from its range (``init_ranges`` overrides any of them).
INIT_RANGES = {
    "gleak": (0.001, 1.0),
    "vleak": (-0.2, 0.2),
    "cm": (0.4, 0.6),
    "w": (0.001, 1.0),
    "sigma": (3.0, 8.0),
    "mu": (0.3, 0.8),
    "sensory_w": (0.001, 1.0),
    "sensory_sigma": (3.0, 8.0),
    "sensory_mu": (0.3, 0.8),
}


def _check_init_ranges(init_ranges: Mapping[str, Sequence[float]] | None) -> dict[str, tuple[float, float]]:
    """``init_ranges`` as ``{name: (low, high)}``, or one clear error naming what is wrong."""
    checked = {}
    for name, bounds in (init_ranges or {}).items():
        if name not in INIT_RANGES:
            raise ValueError(f"init_ranges: unknown parameter {name!r}; choose from {sorted(INIT_RANGES)}.")
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise ValueError(f"init_ranges[{name!r}] must be two numbers (low, high), got {bounds!r}.") from None
        if not (np.isfinite(low) and np.isfinite(high) and low <= high):
            raise ValueError(f"init_ranges[{name!r}] must be finite with low <= high, got ({low}, {high}).")
        checked[name] = (low, high)
    return checked


def make_wiring(units_or_wiring: Any, input_size: int) -> Wiring:
    """An int means a fully connected wiring of that many units; wirings are built for ``input_size``.

    An ``ncps.wirings`` object is converted synapse for synapse (see :func:`ltc_rl.wirings.from_ncps`).
    """
    if is_ncps_wiring(units_or_wiring):
        return from_ncps(units_or_wiring, input_size)
    wiring = units_or_wiring if isinstance(units_or_wiring, Wiring) else FullyConnected(units_or_wiring)
    return wiring.build(input_size)


def _is_wiring(value: Any) -> bool:
    return isinstance(value, Wiring) or is_ncps_wiring(value)


def _cell_arguments(input_size: Any, units_or_wiring: Any, wiring: Any = None,
                   in_features: int | None = None) -> tuple[int, Any]:
    """``(input_size, units_or_wiring)`` from this package's order or ncps's ``(wiring, in_features)``.

    ncps's keywords ``wiring=`` and ``in_features=`` are accepted too; without an input size the
    wiring must already be built.
    """
    if wiring is not None:
        if units_or_wiring is not None:
            raise ValueError("pass the wiring once: either units_or_wiring or wiring=, not both.")
        units_or_wiring = wiring
    if _is_wiring(input_size) and not _is_wiring(units_or_wiring):  # ncps's order: (wiring, in_features)
        input_size, units_or_wiring = units_or_wiring, input_size
    if in_features is not None:
        if input_size is not None:
            raise ValueError("pass the input size once: either input_size or in_features=, not both.")
        input_size = in_features
    if units_or_wiring is None:
        raise ValueError("an LTC cell needs units_or_wiring: a number of neurons or a wiring, "
                         "e.g. LTCCell(input_size, 64) or LTCCell(input_size, wirings.AutoNCP(32, 6)).")
    if input_size is None:
        input_size = getattr(units_or_wiring, "input_dim", None)
        if input_size is None:
            raise ValueError("the wiring is not built, so the input size is unknown: pass it, "
                             "e.g. LTCCell(input_size, wiring) or LTCCell(wiring, in_features).")
    return input_size, units_or_wiring


class LTCCell(RecurrentCell):
    """One step of an LTC network over a wiring.

    Args:
        input_size: number of input features (sensory neurons).
        units_or_wiring: number of fully connected neurons, or a :class:`~ltc_rl.wirings.Wiring`
            (an ``ncps.wirings`` object is converted exactly). ncps's order ``LTCCell(wiring, in_features)``
            and its keywords ``wiring=`` / ``in_features=`` work too.
        solver: ``"fused"`` (paper, default), ``"euler"`` or ``"rk4"``.
        ode_unfolds: solver sub-steps per cell step.
        input_mapping / output_mapping: ``"affine"``, ``"linear"`` or None (per-feature scale and shift).
        epsilon: keeps the fused solver's denominator away from zero.
        implicit_param_constraints: keep ``w``, ``sensory_w``, ``cm`` and ``gleak`` positive through
            softplus (True) or by clipping after each optimiser step with
            :meth:`apply_weight_constraints` (False), as in ncps.
        fast: run :mod:`ltc_rl.kernels.ltc_fast` (default); False runs this readable reference
            (also needed for double backward and ``torch.func`` transforms).
        init_ranges: ``{name: (low, high)}`` replacing the uniform initialisation range of any parameter of
            :data:`INIT_RANGES` (ncps's); e.g. ``{"w": (0.0001, 0.1)}`` starts the recurrent synapses ten
            times weaker (their summed conductance grows with the number of neurons; BENCHMARKS.md, "Why the
            LSTM is ahead").
    """

    #: Run the fast path (class default, so cells pickled before the option existed use it too).
    fast: bool = True
    #: The reference step in the form exports trace (:mod:`agents.export` sets it on its copy): the input
    #: mapping folded into the sensory synapses and, without ``dt``, the fused update divided by ``cm / h``,
    #: so the traced graph has fewer operations on the batch per unfold once the parameter-only products are
    #: constants. The same function in float rounding, but its ``cm`` gradient is a few times less accurate,
    #: so the reference that checks the fast path keeps the plain form.
    export_form: bool = False
    #: Crop the recurrent synapses to the neurons that receive any (:meth:`recurrent_terms`), another export
    #: option: fewer elements per unfold for two padding operations, which pays in ONNX Runtime (per-element
    #: cost) and not in TorchScript's interpreter (per-operation cost), so only ONNX exports set it.
    crop_rows: bool = False

    def __init__(
        self,
        input_size: int | None = None,
        units_or_wiring: int | Wiring | None = None,
        solver: str = "fused",
        ode_unfolds: int = 6,
        input_mapping: str | None = "affine",
        output_mapping: str | None = "affine",
        epsilon: float = 1e-8,
        implicit_param_constraints: bool = False,
        fast: bool = True,
        *,
        wiring: Wiring | None = None,
        in_features: int | None = None,
        init_ranges: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        input_size, units_or_wiring = _cell_arguments(input_size, units_or_wiring, wiring, in_features)
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}.")
        if input_mapping not in _MAPPINGS or output_mapping not in _MAPPINGS:
            raise ValueError(f"input_mapping and output_mapping must be one of {_MAPPINGS}.")
        if int(ode_unfolds) < 1:
            raise ValueError(f"ode_unfolds must be >= 1, got {ode_unfolds}.")
        self.wiring = make_wiring(units_or_wiring, input_size)
        self.input_size = int(input_size)
        self.state_size = self.wiring.units
        self.output_size = self.wiring.output_size
        self.solver = solver
        self.ode_unfolds = int(ode_unfolds)
        self.input_mapping = input_mapping
        self.output_mapping = output_mapping
        self.epsilon = float(epsilon)
        self.implicit_param_constraints = bool(implicit_param_constraints)
        self.fast = bool(fast)
        self.init_ranges = _check_init_ranges(init_ranges)
        self._allocate_parameters()

    # ------------------------------------------------------------------ parameters
    def _uniform(self, name: str, *shape: int) -> nn.Parameter:
        low, high = self.init_ranges.get(name, INIT_RANGES[name])
        return nn.Parameter(torch.rand(*shape) * (high - low) + low)

    def _allocate_parameters(self) -> None:
        units, inputs = self.state_size, self.input_size
        adjacency = torch.as_tensor(self.wiring.adjacency, dtype=torch.float32)
        sensory = torch.as_tensor(self.wiring.sensory_adjacency, dtype=torch.float32)
        self.gleak = self._uniform("gleak", units)
        self.vleak = self._uniform("vleak", units)
        self.cm = self._uniform("cm", units)
        self.sigma = self._uniform("sigma", units, units)
        self.mu = self._uniform("mu", units, units)
        self.w = self._uniform("w", units, units)
        self.erev = nn.Parameter(adjacency.clone())
        self.sensory_sigma = self._uniform("sensory_sigma", inputs, units)
        self.sensory_mu = self._uniform("sensory_mu", inputs, units)
        self.sensory_w = self._uniform("sensory_w", inputs, units)
        self.sensory_erev = nn.Parameter(sensory.clone())
        self.register_buffer("sparsity_mask", adjacency.abs())
        self.register_buffer("sensory_sparsity_mask", sensory.abs())
        if self.input_mapping in ("affine", "linear"):
            self.input_w = nn.Parameter(torch.ones(inputs))
        if self.input_mapping == "affine":
            self.input_b = nn.Parameter(torch.zeros(inputs))
        if self.output_mapping in ("affine", "linear"):
            self.output_w = nn.Parameter(torch.ones(self.output_size))
        if self.output_mapping == "affine":
            self.output_b = nn.Parameter(torch.zeros(self.output_size))

    def positive(self, param: Tensor) -> Tensor:
        """The value used for a positivity-constrained parameter (softplus in implicit mode)."""
        return nn.functional.softplus(param) if self.implicit_param_constraints else param

    def apply_weight_constraints(self) -> None:
        """Clip ``w``, ``sensory_w``, ``cm`` and ``gleak`` at zero (explicit-constraint mode only)."""
        if not self.implicit_param_constraints:
            with torch.no_grad():
                for param in (self.w, self.sensory_w, self.cm, self.gleak):
                    param.clamp_(min=0.0)

    @property
    def synapse_count(self) -> int:
        return self.wiring.synapse_count

    @property
    def sensory_size(self) -> int:
        """ncps's name of :attr:`input_size`."""
        return self.input_size

    @property
    def motor_size(self) -> int:
        """ncps's name of :attr:`output_size` (the motor neurons)."""
        return self.output_size

    @property
    def sensory_synapse_count(self) -> int:
        return self.wiring.sensory_synapse_count

    # ------------------------------------------------------------------ dynamics
    def map_inputs(self, x: Tensor) -> Tensor:
        if self.input_mapping in ("affine", "linear"):
            x = x * self.input_w
        if self.input_mapping == "affine":
            x = x + self.input_b
        return x

    def map_outputs(self, state: Tensor) -> Tensor:
        y = state if self.output_size == state.shape[1] else state[:, : self.output_size]
        if self.output_mapping in ("affine", "linear"):
            y = y * self.output_w
        if self.output_mapping == "affine":
            y = y + self.output_b
        return y

    @staticmethod
    def synapse_terms(weight: Tensor, mu: Tensor, sigma: Tensor, erev: Tensor, mask: Tensor,
                      scale: Tensor | None = None) -> SynapseTerms:
        """The :class:`SynapseTerms` of a population from its ``(pre, post)`` parameters and positive weights;
        ``scale`` ``(post,)``, when given, multiplies each post-synaptic neuron's weights."""
        weight = weight * mask if scale is None else weight * (mask * scale)
        return SynapseTerms(sigma.t().contiguous(), (-(mu * sigma)).t().contiguous(),
                            (weight * erev).t().contiguous(), weight.t().contiguous())

    @staticmethod
    def synapse_sums(pre: Tensor, terms: SynapseTerms) -> tuple[Tensor, Tensor]:
        """Summed ``w s(pre) erev`` and ``w s(pre)`` per post-synaptic neuron, ``(batch, post)`` each."""
        s = torch.sigmoid(torch.addcmul(terms.offset, pre.unsqueeze(1), terms.slope))  # (batch, post, pre)
        numerator, conductance = (s * terms.weighted_erev).sum(-1), (s * terms.weight).sum(-1)
        if terms.padding != (0, 0):
            numerator = nn.functional.pad(numerator, terms.padding)
            conductance = nn.functional.pad(conductance, terms.padding)
        return numerator, conductance

    def recurrent_terms(self, scale: Tensor | None = None) -> SynapseTerms:
        """The recurrent synapses' :class:`SynapseTerms` (weights times ``scale`` per neuron, when given).

        With :attr:`crop_rows`, cropped to the neurons that receive recurrent synapses when that leaves out
        at least a quarter of them (an NCP's sensory-driven inter neurons): the dense per-unfold operations
        then run on the rows that matter, at the price of padding the two sums back (two small operations).
        """
        terms = self.synapse_terms(self.positive(self.w), self.mu, self.sigma, self.erev, self.sparsity_mask, scale)
        if not self.crop_rows:
            return terms
        receiving = np.flatnonzero(np.abs(self.wiring.adjacency).sum(0))
        if len(receiving) == 0:
            return terms
        first, end = int(receiving[0]), int(receiving[-1]) + 1
        if 4 * (end - first) > 3 * self.state_size:
            return terms
        return SynapseTerms(*(term[first:end] for term in terms[:4]), padding=(first, self.state_size - end))

    def sensory_drive(self, x: Tensor, scale: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Input synapses' contribution (constant over the unfolds of one step; weights times ``scale`` per
        neuron, when given). In :attr:`export_form` the input mapping is folded into the terms,
        ``sigma (x w_in + b_in - mu) = (sigma w_in) x + sigma (b_in - mu)``."""
        terms = self.synapse_terms(self.positive(self.sensory_w), self.sensory_mu, self.sensory_sigma,
                                   self.sensory_erev, self.sensory_sparsity_mask, scale)
        if not self.export_form:
            return self.synapse_sums(self.map_inputs(x), terms)
        if self.input_mapping == "affine":
            terms = terms._replace(offset=terms.offset + terms.slope * self.input_b)
        if self.input_mapping in ("affine", "linear"):
            terms = terms._replace(slope=terms.slope * self.input_w)
        return self.synapse_sums(x, terms)

    def derivative(self, v: Tensor, drive: tuple[Tensor, Tensor], terms: SynapseTerms | None = None) -> Tensor:
        """dv/dt of the LTC ODE for state ``v`` under the given sensory drive (``terms``: the recurrent
        :meth:`recurrent_terms`, computed here when not given)."""
        numerator, conductance = self.synapse_sums(v, self.recurrent_terms() if terms is None else terms)
        gleak = self.positive(self.gleak)
        current = gleak * (self.vleak - v) + numerator + drive[0] - (conductance + drive[1]) * v
        return current / self.positive(self.cm)

    def kernel_spec(self) -> ltc_fast.LTCSpec:
        """This cell's tensors and settings, as the fast path (:mod:`ltc_rl.kernels.ltc_fast`) takes them."""
        # Direct lookups in one merged dict: this runs on every control step.
        tensors = ltc_fast.CellTensors._make(map({**self._buffers, **self._parameters}.get,
                                                 ltc_fast.CellTensors._fields))
        return ltc_fast.LTCSpec(tensors, self.solver, self.ode_unfolds, self.epsilon,
                                self.implicit_param_constraints, self.output_size)

    def forward(self, x: Tensor, state: Tensor, dt: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        if self.fast:
            return ltc_fast.cell_step(self.kernel_spec(), x, state,
                                      None if dt is None else as_timespan(dt, x.shape[0], x))
        # Without dt every step has the nominal length: h a number, so cm / h is parameter-only (exports fold it).
        h = 1.0 / self.ode_unfolds if dt is None else as_timespan(dt, x.shape[0], x) / self.ode_unfolds
        # Export form, fused solver, fixed step: the update's numerator and denominator are divided by cm / h,
        # and h / cm is folded into the (parameter-only) synapse weights, which saves the product cm / h v on
        # every unfold.
        scale = h / self.positive(self.cm) if self.export_form and self.solver == "fused" and dt is None else None
        drive = self.sensory_drive(x, scale)
        terms = self.recurrent_terms(scale)
        v = state
        if self.solver == "fused":
            # v' = (cm/h v + gleak vleak + num + sensory num) / (cm/h + gleak + cond + sensory cond + epsilon);
            # the terms that stay the same over the unfolds of one step are summed once.
            gleak = self.positive(self.gleak)
            if scale is None:
                cm_t = self.positive(self.cm) / h
                top_rest, bottom_rest = gleak * self.vleak + drive[0], cm_t + (gleak + self.epsilon) + drive[1]
            else:  # divided by cm / h: v's own factor is 1
                cm_t = None
                top_rest = gleak * self.vleak * scale + drive[0]
                bottom_rest = (gleak + self.epsilon) * scale + 1.0 + drive[1]
            for _ in range(self.ode_unfolds):
                numerator, conductance = self.synapse_sums(v, terms)
                top = top_rest + v if cm_t is None else torch.addcmul(top_rest, cm_t, v)
                v = (top + numerator) / (bottom_rest + conductance)
        elif self.solver == "euler":
            for _ in range(self.ode_unfolds):
                v = v + h * self.derivative(v, drive, terms)
        else:
            for _ in range(self.ode_unfolds):
                k1 = self.derivative(v, drive, terms)
                k2 = self.derivative(v + 0.5 * h * k1, drive, terms)
                k3 = self.derivative(v + 0.5 * h * k2, drive, terms)
                k4 = self.derivative(v + h * k3, drive, terms)
                v = v + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        return self.map_outputs(v), v

    def forward_sequence(self, x: Tensor, state: Tensor | None = None, dt: Tensor | None = None,
                         resets: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.fast:
            return ltc_fast.cell_sequence(self.kernel_spec(), x, state, dt, resets)
        return super().forward_sequence(x, state, dt, resets)

    def time_constants(self, x: Tensor, state: Tensor) -> Tensor:
        """The liquid system time constant ``cm / (gleak + total synaptic conductance)`` per neuron."""
        drive = self.sensory_drive(x)
        _, conductance = self.synapse_sums(state, self.recurrent_terms())
        return self.positive(self.cm) / (self.positive(self.gleak) + conductance + drive[1])

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, wiring={self.wiring!r}, solver={self.solver!r}, "
                f"ode_unfolds={self.ode_unfolds}, implicit_param_constraints={self.implicit_param_constraints}, "
                f"fast={self.fast}")

