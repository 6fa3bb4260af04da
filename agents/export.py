"""Deployment export of the recurrent policy step ``(obs, state, dt) -> (action, new_state)``.

Both formats take raw observations ``(batch, *obs_shape)`` float32 (the saved normalisation is
inside), the recurrent state ``(batch, state_size)`` float32 (zeros at an episode start) and the
elapsed time ``dt`` ``(batch,)`` float32 in the environment's unit (pass ``time_unit`` for a regular
step), and return the deterministic action and the next state; the batch size is free. The
metadata (``state_size``, ``time_unit``, shapes, input names) travel with the file: TorchScript as the
extra file ``metadata.json``, ONNX as ``metadata_props``. The ONNX graph leaves out inputs the policy
does not use (``dt`` for LSTM / GRU / feed-forward policies, ``state`` for feed-forward ones); its
``inputs`` metadata (and ``session.get_inputs()``) name the ones it takes.

Image policies (``Cnn*Policy``) export with their ``NatureCNN``, taking channel-first observations as the
policy does. Policies on Dict observations (``MultiInput*Policy``) do not export (one ``obs`` input per
format); :func:`export_torchscript` and :func:`export_onnx` refuse them with a ``ValueError``.

Exports run the cells' reference implementation (``fast=False``: no compiled kernels), which
computes the same function as the fast path the agent uses.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from agents.agent import LTCAgent
from agents.network import PolicyNetwork

__all__ = ["export_torchscript", "export_onnx", "load_torchscript", "metadata", "example_inputs"]

METADATA_FILE = "metadata.json"


def _network(source: LTCAgent | PolicyNetwork) -> PolicyNetwork:
    return source.network if isinstance(source, LTCAgent) else source


def _exportable(network: PolicyNetwork) -> PolicyNetwork:
    """A CPU copy of ``network`` in eval mode whose cells run their reference (uncompiled) code."""
    if network.dict_observations:
        raise ValueError(f"cannot export a policy on Dict observations (keys {sorted(network.observation_shape)}): "
                         "the exported step takes one obs array; train on flattened observations "
                         "(gymnasium.wrappers.FlattenObservation) to export, or deploy with LTCAgent.")
    network = copy.deepcopy(network).cpu().eval().requires_grad_(False)
    for module in network.modules():
        if hasattr(module, "fast"):
            module.fast = False
    return network


def metadata(source: LTCAgent | PolicyNetwork) -> dict[str, Any]:
    """What a deployment needs besides the weights: state size, time unit, shapes and the action type."""
    network = _network(source)
    return {"inputs": ["obs", "state", "dt"], "outputs": ["action", "new_state"],
            "observation_shape": list(network.observation_shape), "state_size": network.state_size,
            "time_unit": network.time_unit, "discrete_actions": network.discrete,
            "action_shape": list(network.action_shape),
            "cell": type(network.cell).__name__ if network.cell is not None else None}


def example_inputs(source: LTCAgent | PolicyNetwork, batch_size: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Zero observations, the initial state and nominal steps for ``batch_size`` environments (CPU)."""
    network = _network(source)
    return (torch.zeros(batch_size, *network.observation_shape),
            torch.zeros(batch_size, network.state_size),
            torch.full((batch_size,), 1.0 if network.time_unit is None else network.time_unit))


def export_torchscript(source: LTCAgent | PolicyNetwork, path: str | Path) -> Path:
    """Trace the policy step to a frozen TorchScript file (load with :func:`load_torchscript` or ``torch.jit.load``).

    Frozen means inference-only: the weights are constants of the graph, not parameters.
    """
    network = _exportable(_network(source))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks fixed at trace time are fine; TorchScript's deprecation notice is known.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # Frozen: the weights become constants, so the parameter preparation (softplus, masks) is
        # folded once at export instead of running on every step.
        traced = torch.jit.freeze(torch.jit.trace(network, example_inputs(network, 2), check_trace=False))
        torch.jit.save(traced, str(path), _extra_files={METADATA_FILE: json.dumps(metadata(network))})
    return path


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """A TorchScript export and its metadata."""
    extra = {METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), _extra_files=extra)
    return module, json.loads(extra[METADATA_FILE])


def export_onnx(source: LTCAgent | PolicyNetwork, path: str | Path, opset_version: int = 17) -> Path:
    """Export the policy step to ONNX (needs the ``onnx`` package: ``pip install ltc_rl[export]``)."""
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX export needs the onnx package: pip install 'ltc_rl[export]' "
                          "(onnx, and onnxruntime to run the file).") from exc
    network = _exportable(_network(source))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = {"obs": {0: "batch"}, "state": {0: "batch"}, "dt": {0: "batch"}, "action": {0: "batch"},
             "new_state": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation notices of the TorchScript-based exporter
        torch.onnx.export(network, example_inputs(network, 2), str(path), input_names=["obs", "state", "dt"],
                          output_names=["action", "new_state"], dynamic_axes=names, opset_version=opset_version,
                          dynamo=False)
    model = onnx.load(str(path))
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value.name for value in model.graph.input if value.name not in initializers]
    for key, value in {**metadata(network), "inputs": inputs}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(path))
    return path
