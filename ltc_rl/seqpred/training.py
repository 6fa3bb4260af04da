"""Training with best-validation checkpointing, as in the paper's ``cheetah.py``.

Per epoch: shuffle the training windows, take ``len // batch_size`` full batches (the
remainder is dropped, as in the paper), one Adam step on the mean squared error per batch
(then the model's weight constraints: LTC clipping, sparsity masks), and evaluate MSE and MAE
on the validation windows. The state with the lowest validation MSE (epoch 0 = untrained
included) is kept, and the test error is that checkpoint's. A non-finite training loss stops
the run early, as the paper's code does.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ltc_rl.seqpred.data import SequenceSplit, SequenceSplits
from ltc_rl.seqpred.models import SequencePredictor, count_parameters

__all__ = ["TrainConfig", "RunResult", "prediction_errors", "train_predictor"]


@dataclass
class TrainConfig:
    """Optimisation settings; the defaults are the paper's (``learning_rate`` is per model, see
    :func:`ltc_rl.seqpred.models.learning_rate_for`)."""

    learning_rate: float
    epochs: int = 200
    batch_size: int = 16
    seed: int = 0
    eval_batch_size: int = 1024
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError(f"epochs, batch_size and eval_batch_size must be >= 1, got {self.epochs}, "
                             f"{self.batch_size}, {self.eval_batch_size}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}.")


@dataclass
class RunResult:
    """One trained model: errors of the best-validation checkpoint and the learning curves."""

    model: str
    seed: int
    params: int
    epochs_run: int
    best_epoch: int
    valid_mse: float
    valid_mae: float
    test_mse: float
    test_mae: float
    seconds_per_epoch: float
    diverged: bool
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The scalar fields (everything but the history), e.g. for a CSV row."""
        row = asdict(self)
        row.pop("history")
        return row


@torch.no_grad()
def prediction_errors(model: SequencePredictor, split: SequenceSplit, batch_size: int = 1024,
             device: str = "cpu") -> tuple[float, float]:
    """Mean squared and mean absolute error over every step and feature of ``split``."""
    was_training = model.training
    model.eval()
    squared, absolute, count = 0.0, 0.0, 0
    for start in range(0, len(split), batch_size):
        x = split.x[start:start + batch_size].to(device)
        error = model(x) - split.y[start:start + batch_size].to(device)
        squared += float(error.square().sum())
        absolute += float(error.abs().sum())
        count += error.numel()
    model.train(was_training)
    return squared / count, absolute / count


def _batches(split: SequenceSplit, batch_size: int, rng: np.random.Generator):
    order = torch.from_numpy(rng.permutation(len(split)))
    for i in range(len(split) // batch_size):
        index = order[i * batch_size:(i + 1) * batch_size]
        yield split.x[index], split.y[index]


def train_predictor(model: SequencePredictor, splits: SequenceSplits, config: TrainConfig, name: str = "model",
                    on_epoch: Callable[[dict[str, float]], None] | None = None
                    ) -> tuple[RunResult, dict[str, Tensor]]:
    """Train ``model`` and return its :class:`RunResult` and the best-validation state dict.

    ``on_epoch`` receives each epoch's record (``epoch``, ``train_mse``, ``valid_mse``, ``valid_mae``),
    e.g. to drive a progress bar.
    """
    if len(splits.train) < config.batch_size:
        raise ValueError(f"only {len(splits.train)} training windows for batch size {config.batch_size}; "
                         "use longer or more traces, or a smaller batch size.")
    device = config.device
    model.to(device).train()
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)

    valid_mse, valid_mae = prediction_errors(model, splits.valid, config.eval_batch_size, device)
    history = [{"epoch": 0, "train_mse": math.nan, "valid_mse": valid_mse, "valid_mae": valid_mae}]
    best_epoch, best_state = 0, copy.deepcopy(model.state_dict())
    best_valid = (valid_mse, valid_mae) if math.isfinite(valid_mse) else (math.inf, math.inf)
    diverged, seconds = False, 0.0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        losses = []
        for x, y in _batches(splits.train, config.batch_size, rng):
            loss = torch.mean(torch.square(model(x.to(device)) - y.to(device)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            model.apply_weight_constraints()
            losses.append(float(loss.detach()))
        valid_mse, valid_mae = prediction_errors(model, splits.valid, config.eval_batch_size, device)
        seconds += time.perf_counter() - started
        record = {"epoch": epoch, "train_mse": float(np.mean(losses)), "valid_mse": valid_mse, "valid_mae": valid_mae}
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if math.isfinite(valid_mse) and valid_mse < best_valid[0]:
            best_epoch, best_valid = epoch, (valid_mse, valid_mae)
            best_state = copy.deepcopy(model.state_dict())
        if not math.isfinite(record["train_mse"]):
            diverged = True
            break

    model.load_state_dict(best_state)
    test_mse, test_mae = prediction_errors(model, splits.test, config.eval_batch_size, device)
    result = RunResult(model=name, seed=config.seed, params=count_parameters(model), epochs_run=len(history) - 1,
                       best_epoch=best_epoch, valid_mse=best_valid[0], valid_mae=best_valid[1], test_mse=test_mse,
                       test_mae=test_mae, seconds_per_epoch=seconds / max(1, len(history) - 1), diverged=diverged,
                       history=history)
    return result, best_state
