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
computes the same function as the fast path the agent uses; LTC cells in their export form
(:attr:`~ltc_rl.cells.LTCCell.export_form`: input mapping, ``cm / h`` and, for ONNX, a sparse wiring's
unreached neurons folded out of the per-unfold operations; the output mapping folded into the action layer),
the same step in float rounding with fewer operations on the batch. ``export_torchscript(..., kernel="native")``
instead records the LTC cells' step as one call of ltc_rl's native kernel (the operator
``ltc_rl::inference``, fused solver on CPU): the agent's own code, about as fast, but the file then runs
only where ltc_rl's kernel is loaded (:func:`load_torchscript` loads it, as does
``ltc_rl.kernels.native.build()`` before a plain ``torch.jit.load``; without it loading fails with
"Unknown builtin op: ltc_rl::inference"). ONNX files always hold the portable reference graph.
"""

from __future__ import annotations

import copy
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from agents.agent import LTCAgent
from agents.network import PolicyNetwork
from ltc_rl.cells import LTCCell
from ltc_rl.kernels import native

__all__ = ["export_torchscript", "export_onnx", "load_torchscript", "metadata", "example_inputs", "KERNELS"]

METADATA_FILE = "metadata.json"
#: What a TorchScript export runs for the LTC cells: the portable reference code, or ltc_rl's native kernel.
KERNELS = ("reference", "native")


def _network(source: LTCAgent | PolicyNetwork) -> PolicyNetwork:
    return source.network if isinstance(source, LTCAgent) else source


def _exportable(network: PolicyNetwork, kernel: str = "reference", crop_rows: bool = False) -> PolicyNetwork:
    """A CPU copy of ``network`` in eval mode whose cells run their reference (uncompiled) code, the LTC cells
    in their export form (``crop_rows``: see :attr:`LTCCell.crop_rows`), except the LTC cells with
    ``kernel="native"``, which keep the fast path (traced as the native kernel's operator)."""
    if network.dict_observations:
        raise ValueError(f"cannot export a policy on Dict observations (keys {sorted(network.observation_shape)}): "
                         "the exported step takes one obs array; train on flattened observations "
                         "(gymnasium.wrappers.FlattenObservation) to export, or deploy with LTCAgent.")
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}.")
    network = copy.deepcopy(network).cpu().eval().requires_grad_(False)
    if kernel == "native":
        _check_native(network)
    for module in network.modules():
        if hasattr(module, "fast"):
            module.fast = kernel == "native" and isinstance(module, LTCCell)
        if isinstance(module, LTCCell):
            module.export_form = not module.fast
            module.crop_rows = crop_rows and module.export_form
    _fold_output_mapping(network)
    return network


def _fold_output_mapping(network: PolicyNetwork) -> None:
    """Folds the LTC cell's output scale and shift into the action layer that follows it (an affine map of an
    affine map), two operations fewer per exported step; reference-form cells feeding a plain ``nn.Linear``
    only (the native kernel applies the mapping itself)."""
    cell, linear = network.cell, network.action_net
    if not (isinstance(cell, LTCCell) and cell.export_form and cell.output_mapping is not None
            and network.empty_head and type(linear) is nn.Linear):
        return
    with torch.no_grad():
        shift = linear.weight @ cell.output_b if cell.output_mapping == "affine" else None
        if shift is not None and linear.bias is None:
            linear.bias = nn.Parameter(shift, requires_grad=False)
        elif shift is not None:
            linear.bias.add_(shift)
        linear.weight.mul_(cell.output_w)
    cell.output_mapping = None
    network.action_net = linear  # drops the network's cached step parts, which hold the old bias


def _check_native(network: PolicyNetwork) -> None:
    """Raises a one-line ``ValueError`` unless every LTC cell of ``network`` can be traced as the native kernel."""
    cells = [module for module in network.modules() if isinstance(module, LTCCell)]
    if not cells:
        raise ValueError("kernel='native' runs LTC cells through ltc_rl's kernel, and this policy has none; "
                         "export it with kernel='reference'.")
    for cell in cells:
        if cell.solver != "fused":
            raise ValueError(f"kernel='native' runs the fused solver only; this LTC cell uses {cell.solver!r}: "
                             "export it with kernel='reference'.")
        if not native.applies(cell.gleak, cell.gleak, cell.solver):
            raise ValueError(f"kernel='native' needs ltc_rl's native kernel for {cell.gleak.dtype} on the CPU, "
                             "which this process does not have (LTC_RL_NATIVE=0, no compiler, or another dtype); "
                             "export with kernel='reference'.")


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


def export_torchscript(source: LTCAgent | PolicyNetwork, path: str | Path, kernel: str = "reference") -> Path:
    """Trace the policy step to a frozen TorchScript file (load with :func:`load_torchscript` or ``torch.jit.load``).

    Frozen means inference-only: the weights are constants of the graph, not parameters. ``kernel``:
    ``"reference"`` (default) traces the cells' reference code, a graph of plain torch operators that any
    ``torch.jit.load`` runs; ``"native"`` traces each LTC cell's step as one call of ltc_rl's native kernel
    (fused solver, CPU; batch rows one after another on one thread, as suits control loops), which runs where
    ltc_rl is installed (:func:`load_torchscript`).
    """
    network = _exportable(_network(source), kernel)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks fixed at trace time are fine; TorchScript's deprecation notice is known.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # Frozen: the weights become constants, so the parameter preparation (softplus, masks) is
        # folded once at export instead of running on every step.
        traced = torch.jit.freeze(torch.jit.trace(network, example_inputs(network, 2), check_trace=False))
        extra = json.dumps({**metadata(network), "kernel": kernel})
        torch.jit.save(traced, str(path), _extra_files={METADATA_FILE: extra})
    return path


def _stored_metadata(path: Path) -> dict[str, Any]:
    """The metadata of a TorchScript file read from its archive, without loading the graph (which may need the
    native kernel's operator); empty for files without it (and for non-archives, which torch.jit.load reports)."""
    if not zipfile.is_zipfile(path):
        return {}
    with zipfile.ZipFile(path) as archive:
        name = next((name for name in archive.namelist() if name.endswith(f"/extra/{METADATA_FILE}")), None)
        return json.loads(archive.read(name)) if name is not None else {}


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """A TorchScript export and its metadata; loads ltc_rl's native kernel first for a ``kernel="native"`` export
    (raising :class:`~ltc_rl.kernels.native.NativeBuildError`, one line, where it cannot be had)."""
    if _stored_metadata(Path(path)).get("kernel") == "native":
        native.build()  # registers the operator ltc_rl::inference that the graph calls
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
    network = _exportable(_network(source), crop_rows=True)
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
