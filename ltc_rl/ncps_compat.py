"""Import trained ``ncps.torch`` models (LTC, CfC, their cells, wired and mixed-memory variants).

Parameter names and shapes are shared with ncps, so importing is loading the state dict into the
matching :class:`~ltc_rl.sequence.LTC` or :class:`~ltc_rl.sequence.CfC`. An LTC's wiring is recovered
from the saved sparsity masks and reversal-potential signs; a CfC's settings are read from the live
model. ncps itself is only needed by :func:`from_ncps`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ltc_rl.sequence import LTC, RNN, CfC
from ltc_rl.wirings import Wiring

__all__ = ["load_ncps_state_dict", "from_ncps"]

_REQUIRED = ("gleak", "vleak", "cm", "sigma", "mu", "w", "erev", "sensory_sigma", "sensory_mu", "sensory_w",
             "sensory_erev", "sparsity_mask", "sensory_sparsity_mask")
_MEMORY_PREFIX = "lstm."


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
    """Build an :class:`LTC` from an ncps LTC state dict (mixed memory recognised by its ``lstm.`` entries).

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
    memory = {k: v for k, v in state_dict.items() if k.startswith(_MEMORY_PREFIX)}
    model = LTC(int(sensory_mask.shape[0]), wiring, input_mapping=input_mapping, output_mapping=output_mapping,
                ode_unfolds=ode_unfolds, epsilon=epsilon, implicit_param_constraints=implicit_param_constraints,
                mixed_memory=bool(memory), **ltc_kwargs)
    model = model.to(entries["w"].dtype)  # before loading, so that no value is rounded on the way
    model.rnn_cell.load_state_dict({k: v for k, v in entries.items() if not k.startswith(_MEMORY_PREFIX)},
                                   strict=True)
    if memory:
        model.lstm.load_state_dict({k[len(_MEMORY_PREFIX):]: v for k, v in memory.items()}, strict=True)
    return model


_ACTIVATION_NAMES = {"LeCun": "lecun_tanh", "LeCunTanh": "lecun_tanh", "Tanh": "tanh", "ReLU": "relu",
                     "SiLU": "silu", "GELU": "gelu"}


def _backbone_settings(cell: Any) -> dict[str, Any]:
    """An ncps ``CfCCell``'s backbone as :class:`~ltc_rl.sequence.CfC` keywords."""
    layers = int(cell.backbone_layers)
    modules = list(cell.backbone) if cell.backbone is not None else []
    linear = [m for m in modules if isinstance(m, nn.Linear)]
    activation = next((_ACTIVATION_NAMES.get(type(m).__name__) for m in modules
                       if not isinstance(m, (nn.Linear, nn.Dropout))), "lecun_tanh")
    dropout = next((float(m.p) for m in modules if isinstance(m, nn.Dropout)), 0.0)
    return {"backbone_layers": layers, "backbone_units": linear[0].out_features if linear else 128,
            "activation": activation, "backbone_dropout": dropout}


def _renumber_backbone(state_dict: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map the backbone's linear layers in order (ncps places dropout differently in ``nn.Sequential``)."""
    pattern = re.compile(r"^(.*backbone\.)(\d+)(\..*)$")

    def indices(keys) -> list[int]:
        return sorted({int(m.group(2)) for m in map(pattern.match, keys) if m})

    renumber = dict(zip(indices(state_dict), indices(target)))
    result = {}
    for key, value in state_dict.items():
        match = pattern.match(key)
        result[f"{match.group(1)}{renumber[int(match.group(2))]}{match.group(3)}" if match else key] = value
    return result


def _from_ncps_cfc(ncps_model: Any, cell: Any, **cfc_kwargs: Any) -> CfC:
    """An ncps ``CfC`` / ``CfCCell`` / ``WiredCfCCell`` as a :class:`CfC` with the same parameters."""
    wired = hasattr(cell, "_wiring")
    if wired:
        units: Any = cell._wiring
        settings: dict[str, Any] = {"mode": cell._layers[0].mode}
    else:
        units, settings = int(cell.hidden_size), {"mode": cell.mode, **_backbone_settings(cell)}
    if ncps_model is not cell:
        settings.update(proj_size=ncps_model.proj_size, return_sequences=ncps_model.return_sequences,
                        batch_first=ncps_model.batch_first, mixed_memory=bool(ncps_model.use_mixed))
    settings.update(cfc_kwargs)
    input_size = int(units.input_dim) if wired else int(cell.input_size)
    model = CfC(input_size, units, **settings)
    theirs = ncps_model.state_dict()
    if ncps_model is cell:
        theirs = {f"rnn_cell.{k}": v for k, v in theirs.items()}
    model = model.to(next(iter(theirs.values())).dtype)
    model.load_state_dict(_renumber_backbone(theirs, model.state_dict()), strict=True)
    return model.train(ncps_model.training)


def from_ncps(ncps_model: Any, **kwargs: Any) -> RNN:
    """Convert a live ncps model into ltc_rl's: ``ncps.torch.LTC`` / ``LTCCell`` into an :class:`LTC`,
    ``ncps.torch.CfC`` / ``CfCCell`` / ``WiredCfCCell`` into a :class:`CfC` (same outputs).

    ``kwargs`` override settings of the result (e.g. ``return_sequences``).
    """
    cell = getattr(ncps_model, "rnn_cell", ncps_model)
    if not hasattr(cell, "gleak"):
        if hasattr(cell, "ff1") or hasattr(cell, "_layers"):
            return _from_ncps_cfc(ncps_model, cell, **kwargs)
        raise ValueError(f"from_ncps takes an ncps.torch LTC, LTCCell, CfC, CfCCell or WiredCfCCell, "
                         f"not {type(ncps_model).__name__}.")
    settings = {
        "implicit_param_constraints": bool(getattr(cell, "_implicit_param_constraints", True)),
        "ode_unfolds": int(getattr(cell, "_ode_unfolds", 6)),
        "epsilon": float(getattr(cell, "_epsilon", 1e-8)),
        "output_size": int(cell.motor_size),
    }
    for attribute in ("return_sequences", "batch_first"):
        if hasattr(ncps_model, attribute):
            settings[attribute] = getattr(ncps_model, attribute)
    settings.update(kwargs)
    return load_ncps_state_dict(ncps_model.state_dict(), **settings).train(ncps_model.training)
