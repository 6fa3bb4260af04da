"""Guards of the algorithm against NaN / infinity in the model (the guards of a run's environments and
its stop signals are in :mod:`ltc_rl.runs.guards`).

* :func:`non_finite_state` finds NaN / infinity in a model's parameters or optimiser state;
  :func:`guard_updates` checks every minibatch step of the optimiser (gradients before it, parameters after
  it) and stops training with :class:`~ltc_rl.errors.DivergenceError` at the first NaN / infinity, so a bad
  minibatch never reaches the next one; :class:`DivergenceCallback` installs it (for any algorithm) and also
  checks after each update (parameters, optimiser state, logged losses), before any checkpoint can save it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from ltc_rl.errors import DivergenceError

__all__ = ["non_finite_state", "divergence_error", "guard_updates", "DivergenceCallback"]


def non_finite_state(model: BaseAlgorithm) -> str | None:
    """A description of the first NaN / infinity in the policy's parameters or optimiser state, or None."""
    for name, parameter in model.policy.named_parameters():
        if not torch.isfinite(parameter).all():
            return f"parameter {name!r} holds NaN/inf"
    optimizer = getattr(model.policy, "optimizer", None)
    if optimizer is not None:
        for state in optimizer.state.values():
            for key, value in state.items():
                if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
                    return f"optimizer state {key!r} holds NaN/inf"
    return None


def divergence_error(model: BaseAlgorithm, problem: str) -> DivergenceError:
    """The error that stops a run whose update at the current timestep produced ``problem``."""
    return DivergenceError(f"training diverged in the update at timestep {model.num_timesteps}: {problem}; stopped "
                           "without saving it. Retrain with a lower learning_rate or max_grad_norm (or check the "
                           "scale of the rewards and observations).")


def _first_non_finite(named: list[tuple[str, Tensor | None]]) -> str | None:
    tensors = [t for _, t in named if t is not None]
    if not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
        return None
    return next(name for name, t in named if t is not None and not torch.isfinite(t).all())


def guard_updates(model: BaseAlgorithm) -> None:
    """Check every step of ``model.policy.optimizer``: non-finite gradients raise :func:`divergence_error`
    before the step changes anything, non-finite parameters right after it (idempotent)."""
    optimizer = model.policy.optimizer
    if getattr(optimizer, "_ltc_rl_guarded", False):
        return
    names = {id(p): name for name, p in model.policy.named_parameters()}

    def parameters() -> list[Any]:
        return [p for group in optimizer.param_groups for p in group["params"]]

    def before(*_: Any) -> None:
        bad = _first_non_finite([(names.get(id(p), "?"), p.grad) for p in parameters()])
        if bad is not None:
            raise divergence_error(model, f"a minibatch gave parameter {bad!r} a NaN/inf gradient (the loss or "
                                          "the gradients overflowed), and was not applied")

    def after(*_: Any) -> None:
        bad = _first_non_finite([(names.get(id(p), "?"), p.detach()) for p in parameters()])
        if bad is not None:
            raise divergence_error(model, f"parameter {bad!r} holds NaN/inf after a minibatch step")

    optimizer.register_step_pre_hook(before)
    optimizer.register_step_post_hook(after)
    optimizer._ltc_rl_guarded = True  # type: ignore[attr-defined]


class DivergenceCallback(BaseCallback):
    """Raises :class:`DivergenceError` at the first minibatch (:func:`guard_updates`) or update that left NaN /
    infinity in the model, its gradients or its logged loss.

    Besides the minibatch guard it checks at the start of each rollout and at the end of training, i.e. after
    every update and before the callbacks of the next steps can save anything; put it first in the callback
    list.
    """

    #: Logged values checked: the losses (``train/explained_variance`` is legitimately NaN for constant returns).
    LOSS_PREFIX, LOSS_MARK = "train/", "loss"

    def _init_callback(self) -> None:
        guard_updates(self.model)

    def _problem(self) -> str | None:
        for key, value in self.logger.name_to_value.items():
            if key.startswith(self.LOSS_PREFIX) and self.LOSS_MARK in key \
                    and isinstance(value, (float, int, np.floating)) and not np.isfinite(value):
                return f"the logged {key} is {value}"
        return non_finite_state(self.model)

    def _check(self) -> None:
        problem = self._problem()
        if problem is not None:
            raise divergence_error(self.model, problem)

    def _on_rollout_start(self) -> None:
        self._check()

    def _on_training_end(self) -> None:
        self._check()

    def _on_step(self) -> bool:
        return True
