"""The sequence predictor of the paper's Half-Cheetah study: one recurrent cell plus a linear readout.

Every model comes from the shared cells (:func:`ltc_rl.cells.make_cell`) and runs sequences
through ``cell.forward_sequence``, so it uses whatever fast path a cell has.

Sparsity follows the paper's code (``cheetah.py --sparsity``): the LTC is built on a
:class:`~ltc_rl.wirings.Random` wiring that drops that share of its synapses and sensory
synapses; for the other cells a fixed random mask zeroes that share of every weight matrix
(biases stay dense) at construction and again after every optimiser step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ltc_rl import wirings
from ltc_rl.cells import CELL_TYPES, RecurrentCell, make_cell

__all__ = ["SEQPRED_MODELS", "PAPER_LEARNING_RATES", "SequencePredictor", "build_predictor", "learning_rate_for",
           "count_parameters"]

#: The cells the study compares (the paper's five plus CfC).
SEQPRED_MODELS = ("ltc", "lstm", "ctrnn", "node", "ctgru", "cfc")

#: Adam learning rates of the paper's code: 0.01 for LTC ("LTC needs a higher learning rate"), 0.001 otherwise.
PAPER_LEARNING_RATES = {"ltc": 0.01}
DEFAULT_LEARNING_RATE = 0.001


class SequencePredictor(nn.Module):
    """``cell`` over the whole window, then a linear map of every step's output to ``obs_dim`` predictions."""

    def __init__(self, cell: RecurrentCell, obs_dim: int) -> None:
        super().__init__()
        self.cell = cell
        self.readout = nn.Linear(cell.output_size, obs_dim)
        self._masks: dict[str, Tensor] = {}

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, time, obs_dim)`` observations -> ``(batch, time, obs_dim)`` next-step predictions."""
        outputs, _ = self.cell.forward_sequence(x)
        return self.readout(outputs)

    def sparsify_weights(self, sparsity: float, generator: torch.Generator) -> None:
        """Zero a random ``sparsity`` share of every weight matrix of the cell, now and after every step."""
        for name, param in self.cell.named_parameters():
            if param.dim() >= 2:
                keep = torch.rand(param.shape, generator=generator) >= sparsity
                self._masks[name] = keep.to(param.dtype)
        self.apply_weight_constraints()

    def apply_weight_constraints(self) -> None:
        """The cell's own constraints (LTC clipping) and the sparsity masks; call after each optimiser step."""
        self.cell.apply_weight_constraints()
        if self._masks:
            params = dict(self.cell.named_parameters())
            with torch.no_grad():
                for name, mask in self._masks.items():
                    params[name].mul_(mask.to(params[name].device))


def build_predictor(kind: str, obs_dim: int, units: int = 32, sparsity: float = 0.0, seed: int = 0) -> SequencePredictor:
    """A seeded predictor of cell ``kind`` with ``units`` neurons (the paper uses 32).

    The LTC follows the paper's cell: fused solver, 6 unfolds, affine input mapping, the full
    state as output (no output mapping, the linear readout follows) and weights clipped at zero.
    """
    if kind not in CELL_TYPES:
        raise ValueError(f"unknown model {kind!r}; choose from {', '.join(SEQPRED_MODELS)}.")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}; use 0 for dense models and e.g. 0.5 for half.")
    torch.manual_seed(seed)
    if kind == "ltc":
        wiring = (wirings.Random(units, output_size=units, sparsity_level=sparsity, seed=seed) if sparsity > 0
                  else wirings.FullyConnected(units, output_size=units, seed=seed))
        cell = make_cell("ltc", obs_dim, wiring, solver="fused", ode_unfolds=6, input_mapping="affine",
                         output_mapping=None, implicit_param_constraints=False)
        return SequencePredictor(cell, obs_dim)
    model = SequencePredictor(make_cell(kind, obs_dim, units), obs_dim)
    if sparsity > 0:
        model.sparsify_weights(sparsity, torch.Generator().manual_seed(seed))
    return model


def learning_rate_for(kind: str) -> float:
    """The paper's Adam learning rate for ``kind``."""
    return PAPER_LEARNING_RATES.get(kind, DEFAULT_LEARNING_RATE)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameter entries (masked-out weights of sparse models included)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
