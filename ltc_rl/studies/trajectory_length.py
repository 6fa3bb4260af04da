"""Expressivity by trajectory length (Section 5 of Hasani et al., "Liquid Time-constant Networks", AAAI 2021).

A circular 2-D input ``(sin t, cos t)``, ``t`` in ``[0, 2 pi]`` over ``steps`` samples, is fed through
randomly initialised networks; the arc length of the latent trajectory (the hidden states over
time) measures how much the network stretches its input. The paper finds that LTC trajectories
grow longer than CT-RNN and Neural ODE trajectories as width, depth and weight variance grow.

The networks are the shared cells (:func:`ltc_rl.cells.make_cell`); ``depth`` stacks layers,
layer ``l`` reading layer ``l - 1``'s states. Every cell step integrates the elapsed time
``dt = 2 pi / steps`` with ``ode_unfolds`` sub-steps (CT-RNN and Neural ODE are built with
``unfold_dt = 1 / ode_unfolds`` so that the three models integrate the same time span).

Random initialisation (weights ``N(0, sigma_w^2 / fan_in)``, biases ``N(0, sigma_b^2)``, the
convention of the paper's theorems; the paper's MATLAB code draws weights with standard deviation
``sigma_w`` without the fan-in scaling):

* CT-RNN and Neural ODE: the weight matrix of ``[x, h]`` and the bias;
* LTC: synaptic conductances ``w`` (fan-in = neurons) and ``sensory_w`` (fan-in = inputs) as
  ``|N(0, sigma_w^2 / fan_in)|`` (they must be positive), reversal potentials ``erev`` and
  ``sensory_erev`` (the ``A`` of the paper's Eq. 1) as ``N(0, sigma_w^2)`` like the paper's code,
  and the biases ``vleak``, ``mu``, ``sensory_mu`` as ``N(0, sigma_b^2)``; the sigmoid gains,
  ``gleak`` and ``cm`` keep the cell's default initialisation.

The LTC runs its reference step (``fast=False``): one forward pass per configuration, where
compiling the fast kernel for every new width and solver would cost more than it saves.

Solvers: the LTC takes ``"fused"``, ``"euler"`` or ``"rk4"``; CT-RNN always integrates with explicit
Euler and Neural ODE with Runge-Kutta 4 (their cells have one solver each).

The length is reported for the last layer, both of the 2-D PCA projection (as in the paper's
plots) and of the full ``width``-dimensional trajectory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ltc_rl.cells import SOLVERS, RecurrentCell, make_cell
from ltc_rl.errors import ConfigError, DivergenceError
from ltc_rl.reporting import headless_pyplot, write_csv
from ltc_rl.wirings import FullyConnected

__all__ = ["EXPRESSIVITY_MODELS", "TrajectoryConfig", "circle_inputs", "build_network", "randomize_",
           "latent_trajectories", "arc_length", "pca_project", "measure", "sweep", "DEFAULT_AXES",
           "sweep_table", "plot_sweep", "run_trajectory_study"]

EXPRESSIVITY_MODELS = ("ltc", "ctrnn", "node")
_LABELS = {"ltc": "LTC", "ctrnn": "CT-RNN", "node": "Neural ODE"}


@dataclass(frozen=True)
class TrajectoryConfig:
    """One measurement: network ``kind`` of ``depth`` layers of ``width`` neurons, randomly initialised."""

    kind: str = "ltc"
    width: int = 25
    depth: int = 1
    sigma_w: float = 2.0
    sigma_b: float = 1.0
    solver: str = "fused"
    ode_unfolds: int = 6
    steps: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in EXPRESSIVITY_MODELS:
            raise ConfigError(f"unknown model {self.kind!r}; choose one of {EXPRESSIVITY_MODELS}.")
        if self.solver not in SOLVERS:
            raise ConfigError(f"unknown solver {self.solver!r}; choose one of {SOLVERS}.")
        if min(self.width, self.depth, self.ode_unfolds) < 1 or self.steps < 3:
            raise ConfigError("width, depth and ode_unfolds must be >= 1 and steps >= 3.")
        if self.sigma_w <= 0 or self.sigma_b < 0:
            raise ConfigError(f"sigma_w must be > 0 and sigma_b >= 0, got {self.sigma_w} and {self.sigma_b}.")


def circle_inputs(steps: int = 100) -> tuple[Tensor, float]:
    """The circular input ``(sin t, cos t)`` as a ``(1, steps, 2)`` batch and the sampling interval ``2 pi / steps``."""
    t = torch.linspace(0.0, 2 * math.pi, steps, dtype=torch.float64)
    return torch.stack([torch.sin(t), torch.cos(t)], dim=-1).unsqueeze(0), 2 * math.pi / steps


def _normal_(param: nn.Parameter, std: float, generator: torch.Generator, absolute: bool = False) -> None:
    values = torch.randn(param.shape, generator=generator, dtype=param.dtype) * std
    param.data.copy_(values.abs() if absolute else values)


def randomize_(cell: RecurrentCell, sigma_w: float, sigma_b: float, generator: torch.Generator) -> RecurrentCell:
    """Draw ``cell``'s parameters as described in the module docstring (in place)."""
    with torch.no_grad():
        if cell.__class__.__name__ == "LTCCell":
            _normal_(cell.w, sigma_w / math.sqrt(cell.state_size), generator, absolute=True)
            _normal_(cell.sensory_w, sigma_w / math.sqrt(cell.input_size), generator, absolute=True)
            for name in ("erev", "sensory_erev"):
                _normal_(getattr(cell, name), sigma_w, generator)
            for name in ("vleak", "mu", "sensory_mu"):
                _normal_(getattr(cell, name), sigma_b, generator)
        else:
            _normal_(cell.linear.weight, sigma_w / math.sqrt(cell.linear.in_features), generator)
            _normal_(cell.linear.bias, sigma_b, generator)
    return cell


def build_network(config: TrajectoryConfig, input_size: int = 2) -> list[RecurrentCell]:
    """``config.depth`` randomly initialised layers of ``config.kind`` (float64, deterministic in ``config.seed``)."""
    generator = torch.Generator().manual_seed(config.seed)
    layers = []
    with torch.random.fork_rng(devices=[]):  # the cells' default initialisation draws from the global generator
        torch.manual_seed(config.seed)
        for layer in range(config.depth):
            layers.append(_random_layer(config, input_size if layer == 0 else config.width, layer, generator))
    return layers


def _random_layer(config: TrajectoryConfig, inputs: int, layer: int, generator: torch.Generator) -> RecurrentCell:
    if config.kind == "ltc":
        cell = make_cell("ltc", inputs, FullyConnected(config.width, seed=config.seed + layer), solver=config.solver,
                         ode_unfolds=config.ode_unfolds, input_mapping=None, output_mapping=None,
                         implicit_param_constraints=False, fast=False)
    else:
        cell = make_cell(config.kind, inputs, config.width, ode_unfolds=config.ode_unfolds,
                         unfold_dt=1.0 / config.ode_unfolds)
    return randomize_(cell.double(), config.sigma_w, config.sigma_b, generator)


@torch.no_grad()
def latent_trajectories(layers: Sequence[RecurrentCell], inputs: Tensor, dt: float) -> list[Tensor]:
    """Each layer's states over the input sequence, ``(steps, width)`` per layer, starting from zeros."""
    x = inputs
    timespans = torch.full(inputs.shape[:2], dt, dtype=inputs.dtype)
    trajectories = []
    for cell in layers:
        x, _ = cell.forward_sequence(x, dt=timespans)
        trajectories.append(x[0])
    return trajectories


def arc_length(points: Tensor | np.ndarray) -> float:
    """Length of the polyline through ``points`` (``(steps, dims)``): the sum of the chord lengths."""
    points = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def pca_project(points: Tensor | np.ndarray, dims: int = 2) -> np.ndarray:
    """Coordinates of ``points`` on their first ``dims`` principal components (zero-padded if fewer exist)."""
    points = np.asarray(points, dtype=np.float64)
    centred = points - points.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ vt[:dims].T
    if projected.shape[1] < dims:
        projected = np.pad(projected, ((0, 0), (0, dims - projected.shape[1])))
    return projected


def measure(config: TrajectoryConfig) -> dict[str, Any]:
    """Arc lengths of the last layer's trajectory (2-D PCA projection and full) for one random network."""
    inputs, dt = circle_inputs(config.steps)
    last = latent_trajectories(build_network(config), inputs, dt)[-1].numpy()
    if not np.all(np.isfinite(last)):
        raise DivergenceError(f"the latent trajectory of {config} is not finite; lower sigma_w or use more "
                              "ode_unfolds.")
    return {**asdict(config), "length_pca": arc_length(pca_project(last)), "length_full": arc_length(last),
            "input_length": arc_length(inputs[0].numpy())}


#: The paper's sweeps (MATLAB ``main.m``): one axis varied at a time around width 25, depth 1, sigma_w 2.
DEFAULT_AXES: dict[str, Sequence[Any]] = {
    "width": (10, 25, 50, 100, 150, 200),
    "depth": (1, 2, 3, 4),
    "sigma_w": (1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
    "solver": SOLVERS,
}


def sweep(base: TrajectoryConfig = TrajectoryConfig(), axes: dict[str, Sequence[Any]] | None = None,
          samples: int = 5, models: Sequence[str] = EXPRESSIVITY_MODELS, progress: bool = True) -> list[dict[str, Any]]:
    """Measure every model at every value of every axis (others at ``base``), ``samples`` random networks each.

    Returns one row per (axis, value, model, sample) with the axis name under ``"axis"``.
    """
    from tqdm.auto import tqdm

    axes = DEFAULT_AXES if axes is None else axes
    unknown = [a for a in axes if a not in TrajectoryConfig.__dataclass_fields__ or a in ("kind", "seed")]
    if unknown:
        raise ConfigError(f"cannot sweep {unknown}; sweepable: width, depth, sigma_w, sigma_b, solver, ode_unfolds, "
                          "steps.")
    if samples < 1 or not any(axes.values()):
        raise ConfigError(f"nothing to measure (samples={samples}, axes {dict(axes)}); pass samples >= 1 and at least "
                          "one value to sweep.")
    configs = [(axis, value, replace(base, kind=kind, seed=base.seed + sample, **{axis: value}))
               for axis, values in axes.items() for value in values for kind in models for sample in range(samples)]
    rows = []
    for axis, value, config in tqdm(configs, desc="trajectory length", disable=not progress):
        rows.append({"axis": axis, "value": value, **measure(config)})
    return rows


def _stats(rows: Sequence[dict[str, Any]], axis: str, value: Any, kind: str, key: str) -> tuple[float, float]:
    values = np.array([r[key] for r in rows if r["axis"] == axis and r["value"] == value and r["kind"] == kind])
    return (float(values.mean()), float(values.std())) if len(values) else (math.nan, math.nan)


def sweep_table(rows: Sequence[dict[str, Any]], key: str = "length_pca") -> str:
    """Markdown table: mean +- std length per model for every swept value, and LTC's ratio to the others."""
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    others = [k for k in kinds if k != "ltc"]
    header = (["axis", "value"] + [_LABELS[k] for k in kinds]
              + ([f"LTC / {_LABELS[k]}" for k in others] if "ltc" in kinds else []))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
    for axis, value in dict.fromkeys((r["axis"], r["value"]) for r in rows):
        means = {k: _stats(rows, axis, value, k, key) for k in kinds}
        cells = [axis, str(value)] + [f"{m:.3g} +- {s:.2g}" for m, s in means.values()]
        if "ltc" in kinds:
            cells += [f"{means['ltc'][0] / means[k][0]:.2f}" for k in others]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(rows: Sequence[dict[str, Any]], path: str | Path, base: TrajectoryConfig = TrajectoryConfig(),
               key: str = "length_pca") -> Path:
    """One panel per swept axis (mean +- std length, log scale) plus the base networks' projected trajectories."""
    plt = headless_pyplot()

    axes_names = list(dict.fromkeys(r["axis"] for r in rows))
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    panels = len(axes_names) + 1
    columns = min(3, panels)
    fig, grid = plt.subplots(math.ceil(panels / columns), columns, figsize=(5 * columns, 4 * math.ceil(panels / columns)),
                             squeeze=False)
    flat = grid.ravel()
    for ax, axis in zip(flat, axes_names):
        values = list(dict.fromkeys(r["value"] for r in rows if r["axis"] == axis))
        positions = np.arange(len(values)) if isinstance(values[0], str) else np.asarray(values, dtype=float)
        for kind in kinds:
            stats = np.array([_stats(rows, axis, v, kind, key) for v in values])
            ax.errorbar(positions, stats[:, 0], yerr=stats[:, 1], marker="o", capsize=3, label=_LABELS[kind])
        if isinstance(values[0], str):
            ax.set_xticks(positions, values)
        elif axis in ("width", "sigma_w"):
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel("trajectory length" + (" (2-D PCA)" if key == "length_pca" else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    example = flat[len(axes_names)]
    inputs, dt = circle_inputs(base.steps)
    example.plot(inputs[0, :, 0], inputs[0, :, 1], color="red", label="input")
    for kind in kinds:
        latent = pca_project(latent_trajectories(build_network(replace(base, kind=kind)), inputs, dt)[-1].numpy())
        example.plot(latent[:, 0], latent[:, 1], label=f"{_LABELS[kind]} (l = {arc_length(latent):.3g})")
    example.set_title(f"latent trajectories, width {base.width}, depth {base.depth}, sigma_w {base.sigma_w}")
    example.set_xlabel("1st latent dimension")
    example.set_ylabel("2nd latent dimension")
    example.legend(fontsize=8)
    for ax in flat[panels:]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_trajectory_study(out: str | Path, base: TrajectoryConfig = TrajectoryConfig(),
                         axes: dict[str, Sequence[Any]] | None = None, samples: int = 5,
                         progress: bool = True) -> dict[str, Any]:
    """Run :func:`sweep` and write ``trajectory_length.md`` (tables), ``.csv`` (all measurements) and ``.png``."""
    out = Path(out)
    rows = sweep(base, axes, samples, progress=progress)
    tables = {key: sweep_table(rows, key) for key in ("length_pca", "length_full")}
    text = (f"# Trajectory length of randomly initialised networks\n\nCircular input over {base.steps} steps; base "
            f"network: width {base.width}, depth {base.depth}, sigma_w {base.sigma_w}, sigma_b {base.sigma_b}, LTC "
            f"solver {base.solver}, {base.ode_unfolds} unfolds; one axis varied at a time; mean +- std over "
            f"{samples} random networks; last layer. Input length {rows[0]['input_length']:.3f}.\n\n"
            f"## Length of the 2-D PCA projection\n\n{tables['length_pca']}\n"
            f"## Length of the full trajectory\n\n{tables['length_full']}")
    files = {"table": out / "trajectory_length.md", "csv": write_csv(rows, out / "trajectory_length.csv"),
             "plot": plot_sweep(rows, out / "trajectory_length.png", base)}
    files["table"].write_text(text)
    return {"rows": rows, "tables": tables, "text": text, "files": files}
