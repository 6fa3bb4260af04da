"""Results of a sequence-prediction study: the table next to the paper's numbers, CSVs and the curve plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ltc_rl.reporting import headless_pyplot, write_csv
from ltc_rl.seqpred.training import RunResult

__all__ = ["PAPER_EPOCHS", "PAPER_TEST_MSE", "MODEL_LABELS", "aggregate", "markdown_table", "target_check", "write_runs_csv",
           "write_summary_csv", "write_history_csv", "plot_validation_curves"]

#: Training epochs of the paper's study: shorter runs are not comparable with its numbers.
PAPER_EPOCHS = 200

#: Test MSE (mean, std) of Table 3 of Hasani et al., "Liquid Time-constant Networks", AAAI 2021.
PAPER_TEST_MSE: dict[str, tuple[float, float]] = {
    "lstm": (2.500, 0.140),
    "ctrnn": (2.838, 0.112),
    "node": (3.805, 0.313),
    "ctgru": (3.014, 0.134),
    "ltc": (2.308, 0.015),
}

MODEL_LABELS = {"ltc": "LTC", "lstm": "LSTM", "ctrnn": "CT-RNN", "node": "Neural ODE", "ctgru": "CT-GRU",
                "cfc": "CfC", "gru": "GRU"}


def _label(kind: str) -> str:
    return MODEL_LABELS.get(kind, kind)


def aggregate(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Mean and std (numpy's default, ddof=0) over seeds, one row per model in first-seen order."""
    rows = []
    for kind in dict.fromkeys(r.model for r in results):
        runs = [r for r in results if r.model == kind]
        row: dict[str, Any] = {"model": kind, "seeds": len(runs), "params": runs[0].params,
                               "diverged": sum(r.diverged for r in runs)}
        for key in ("test_mse", "test_mae", "valid_mse", "best_epoch", "seconds_per_epoch"):
            values = np.array([getattr(r, key) for r in runs], dtype=float)
            row[f"{key}_mean"], row[f"{key}_std"] = float(values.mean()), float(values.std())
        paper = PAPER_TEST_MSE.get(kind)
        row["paper_test_mse"], row["paper_test_mse_std"] = paper if paper else (math.nan, math.nan)
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The study's table: test MSE and MAE (mean +- std over seeds), size, speed, and the paper's test MSE."""
    lines = ["| model | params | test MSE | test MAE | best valid MSE | best epoch | s / epoch | paper test MSE |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        paper = ("n/a" if math.isnan(row["paper_test_mse"])
                 else f"{row['paper_test_mse']:.3f} +- {row['paper_test_mse_std']:.3f}")
        note = f" ({row['diverged']} diverged)" if row["diverged"] else ""
        lines.append(
            f"| {_label(row['model'])}{note} | {row['params']} | {row['test_mse_mean']:.3f} +- {row['test_mse_std']:.3f} "
            f"| {row['test_mae_mean']:.3f} +- {row['test_mae_std']:.3f} | {row['valid_mse_mean']:.3f} "
            f"| {row['best_epoch_mean']:.0f} | {row['seconds_per_epoch_mean']:.2f} | {paper} |")
    return "\n".join(lines) + "\n"


def target_check(rows: Sequence[dict[str, Any]], epochs: int = PAPER_EPOCHS) -> str:
    """Plain statement of the paper's claims on this run: LTC <= 2.308 and LTC < LSTM < CT-RNN (mean test MSE).

    Runs shorter than the paper's :data:`PAPER_EPOCHS` say "not comparable to the paper" instead of a verdict.
    """
    mse = {row["model"]: row["test_mse_mean"] for row in rows}
    comparable = epochs >= PAPER_EPOCHS
    short = f"not comparable to the paper ({epochs} epochs; the paper trains {PAPER_EPOCHS})"

    def verdict(holds: bool) -> str:
        return short if not comparable else "reproduced" if holds else "NOT reproduced"

    lines = []
    if "ltc" in mse:
        lines.append(f"- LTC test MSE at most the paper's {PAPER_TEST_MSE['ltc'][0]:.3f} (this run: {mse['ltc']:.3f}): "
                     f"{verdict(mse['ltc'] <= PAPER_TEST_MSE['ltc'][0])}.")
    if all(k in mse for k in ("ltc", "lstm", "ctrnn")):
        ordered = mse["ltc"] < mse["lstm"] < mse["ctrnn"]
        ranking = " < ".join(_label(k) for k in sorted(("ltc", "lstm", "ctrnn"), key=mse.get))
        lines.append(f"- Ordering LTC < LSTM < CT-RNN: {verdict(ordered)} (this run: {ranking}).")
    if mse:
        ranking = " < ".join(f"{_label(k)} {v:.3f}" for k, v in sorted(mse.items(), key=lambda kv: kv[1]))
        lines.append(f"- Ranking by mean test MSE: {ranking}.")
    return "\n".join(lines) + ("\n" if lines else "")


def write_runs_csv(results: Sequence[RunResult], path: Path) -> Path:
    """One row per trained model (model, seed, errors of the best checkpoint, timing)."""
    return write_csv([r.summary() for r in results], path)


def write_summary_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """One row per model with the mean and std over seeds and the paper's number."""
    return write_csv(rows, path)


def write_history_csv(results: Sequence[RunResult], path: Path) -> Path:
    """Learning curves: model, seed, epoch, train MSE, validation MSE and MAE."""
    return write_csv([{"model": r.model, "seed": r.seed, **h} for r in results for h in r.history], path)


def plot_validation_curves(results: Sequence[RunResult], path: Path, title: str | None = None) -> Path:
    """Validation MSE per epoch: mean over seeds (line) and min..max band, log scale, one colour per model;
    the paper's test MSE of each model as a dashed reference line in the same colour."""
    plt = headless_pyplot()
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, StrMethodFormatter

    fig, ax = plt.subplots(figsize=(8, 5))
    for kind in dict.fromkeys(r.model for r in results):
        curves = [np.array([h["valid_mse"] for h in r.history]) for r in results if r.model == kind]
        length = min(len(c) for c in curves)
        stacked = np.stack([c[:length] for c in curves])
        epochs = np.arange(length)
        line, = ax.plot(epochs, np.nanmean(stacked, axis=0), label=f"{_label(kind)} ({len(curves)} seeds)")
        if len(curves) > 1:
            ax.fill_between(epochs, np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0), color=line.get_color(),
                            alpha=0.2)
        if kind in PAPER_TEST_MSE:
            ax.axhline(PAPER_TEST_MSE[kind][0], color=line.get_color(), ls="--", lw=0.9,
                       label=f"{_label(kind)}: paper's test MSE {PAPER_TEST_MSE[kind][0]:.3f}")
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    # one set of plain labels (1, 2, 5, 10, ... or every integer step within a decade), no minor labels beside them
    ax.yaxis.set_major_locator(LogLocator(subs="all" if high / low < 20 else (1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
    ax.set_xlabel("epoch (0: before training)")
    ax.set_ylabel("validation MSE (log scale)")
    ax.set_title(title or "Half-Cheetah next-step prediction: validation error\n"
                          "line: mean over seeds; band: min..max over seeds; dashed: the paper's test MSE")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
