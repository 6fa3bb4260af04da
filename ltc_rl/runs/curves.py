"""The learning-curve figure of a run folder: evaluation returns and training episode returns over steps."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ltc_rl.errors import LtcRlWarning
from ltc_rl.reporting import headless_pyplot
from ltc_rl.runs.files import save_figure

__all__ = ["plot_learning_curve", "training_episodes"]


def training_episodes(monitor_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative environment steps at the end of each training episode and its return (from Monitor CSVs).

    The curve only decorates the figure: Monitor CSVs that are missing, emptied or garbled (stable-baselines3's
    reader fails on them with bare assertion, index or parser errors) leave it out with a warning.
    """
    from stable_baselines3.common.monitor import LoadMonitorResultsError, load_results

    try:
        frame = load_results(str(monitor_dir))
    except LoadMonitorResultsError:
        return np.zeros(0), np.zeros(0)
    except (AssertionError, IndexError, KeyError, ValueError) as exc:  # pandas' parser errors are ValueErrors
        warnings.warn(f"the Monitor CSVs in {monitor_dir} are unreadable ({type(exc).__name__}); the learning curve "
                      "leaves out the training episodes.", LtcRlWarning, stacklevel=2)
        return np.zeros(0), np.zeros(0)
    return np.cumsum(frame["l"].to_numpy()), frame["r"].to_numpy()


def plot_learning_curve(path: str | Path, evaluations: dict[str, np.ndarray] | None,
                        monitor_dir: str | Path | None = None, title: str = "") -> Path:
    """Write a PNG with the mean +/- std evaluation return and the smoothed training return per step."""
    plt = headless_pyplot()

    fig, ax = plt.subplots(figsize=(7, 4))
    if monitor_dir is not None:
        steps, returns = training_episodes(monitor_dir)
        if len(returns):
            window = max(1, min(20, len(returns) // 5))
            smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, color="tab:gray", alpha=0.7,
                    label=f"training episodes (mean of {window})")
    if evaluations is not None and len(evaluations.get("timesteps", [])):
        results = np.asarray(evaluations["results"], dtype=float)
        mean, std = results.mean(axis=1), results.std(axis=1)
        ax.plot(evaluations["timesteps"], mean, marker="o", color="tab:blue", label="evaluation (deterministic)")
        ax.fill_between(evaluations["timesteps"], mean - std, mean + std, color="tab:blue", alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)
