"""Import trained ``ncps.torch.LTC`` / ``ncps.torch.LTCCell`` models.

Parameter names and shapes are shared with ncps, so importing is loading the state dict into
an :class:`~ltc_rl.sequence.LTC` whose wiring is recovered from the saved sparsity masks and
reversal-potential signs. ncps itself is only needed by :func:`from_ncps`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ltc_rl.sequence import LTC
from ltc_rl.wirings import Wiring

__all__ = ["load_ncps_state_dict", "from_ncps"]

_REQUIRED = ("gleak", "vleak", "cm", "sigma", "mu", "w", "erev", "sensory_sigma", "sensory_mu", "sensory_w",
             "sensory_erev", "sparsity_mask", "sensory_sparsity_mask")


def _cell_entries(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    prefix = "rnn_cell." if any(k.startswith("rnn_cell.") for k in state_dict) else ""
    entries = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    missing = [name for name in _REQUIRED if name not in entries]
    if missing:
        raise ValueError(f"not an ncps LTC state dict: missing {missing}. Pass ncps_model.state_dict() of an "
                         "ncps.torch.LTC or LTCCell.")
    return entries


def load_ncps_state_dict(state_dict: Mapping[str, Tensor], output_size: int | None = None,
                         implicit_param_constraints: bool = True, ode_unfolds: int = 6, epsilon: float = 1e-8,
                         **ltc_kwargs) -> LTC:
    """Build an :class:`LTC` from an ncps LTC state dict.

    Args:
        state_dict: ``ncps.torch.LTC(...).state_dict()`` (or an ``LTCCell``'s).
        output_size: number of motor neurons; read from ``output_w``/``output_b`` when present.
        implicit_param_constraints, ode_unfolds, epsilon: must match the ncps model's settings
            (ncps' ``LTC`` defaults: True, 6, 1e-8).
    """
    entries = _cell_entries(state_dict)
    if output_size is None:
        output_size = next((int(entries[k].shape[0]) for k in ("output_w", "output_b") if k in entries), None)
    if output_size is None:
        raise ValueError("this state dict has no output mapping; pass output_size (the number of motor neurons).")
    mask, sensory_mask = entries["sparsity_mask"], entries["sensory_sparsity_mask"]
    polarity = torch.where(entries["erev"] >= 0, 1.0, -1.0)
    sensory_polarity = torch.where(entries["sensory_erev"] >= 0, 1.0, -1.0)
    wiring = Wiring.from_adjacency((mask.abs() * polarity).cpu().numpy(),
                                   (sensory_mask.abs() * sensory_polarity).cpu().numpy(), output_size)
    input_mapping = "affine" if "input_b" in entries else ("linear" if "input_w" in entries else None)
    output_mapping = "affine" if "output_b" in entries else ("linear" if "output_w" in entries else None)
    model = LTC(int(sensory_mask.shape[0]), wiring, input_mapping=input_mapping, output_mapping=output_mapping,
                ode_unfolds=ode_unfolds, epsilon=epsilon, implicit_param_constraints=implicit_param_constraints,
                **ltc_kwargs)
    model = model.to(entries["w"].dtype)  # before loading, so that no value is rounded on the way
    model.rnn_cell.load_state_dict(entries, strict=True)
    return model


def from_ncps(ncps_model, **ltc_kwargs) -> LTC:
    """Convert a live ``ncps.torch.LTC`` or ``ncps.torch.LTCCell`` into an ltc_rl :class:`LTC`."""
    cell = getattr(ncps_model, "rnn_cell", ncps_model)
    if getattr(ncps_model, "use_mixed", False):
        raise ValueError("ncps LTC models with mixed_memory=True are not supported; train without mixed memory.")
    settings = {
        "implicit_param_constraints": bool(getattr(cell, "_implicit_param_constraints", True)),
        "ode_unfolds": int(getattr(cell, "_ode_unfolds", 6)),
        "epsilon": float(getattr(cell, "_epsilon", 1e-8)),
        "output_size": int(cell.motor_size),
    }
    for attribute in ("return_sequences", "batch_first"):
        if hasattr(ncps_model, attribute):
            settings[attribute] = getattr(ncps_model, attribute)
    settings.update(ltc_kwargs)
    return load_ncps_state_dict(ncps_model.state_dict(), **settings)
