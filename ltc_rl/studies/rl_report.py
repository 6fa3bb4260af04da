"""The report of a multi-seed RL benchmark (:mod:`ltc_rl.studies.rl_benchmark`): rliable statistics, tables, plots.

Per task, over the seeds of each policy (finished runs only; a partial benchmark reports what it has and
says how many seeds each cell holds):

- the final deterministic evaluation (mean return of the run's last periodic evaluation): IQM and mean with
  stratified-bootstrap confidence intervals, and a performance profile (fraction of runs above each return);
- learning curves: IQM over seeds at every evaluation step with a bootstrap band;
- noise robustness: IQM of the deterministic return at every observation-noise level (``noise_eval.json``),
  and where the env reports it, the share of those steps the body spent upside down (a HalfCheetah that flips
  over can keep running on its back);
- probability of improvement of the reference policy (default ``ltc``) over every other policy of the task.

The aggregate metrics are rliable's (``rliable.metrics``: interquartile mean, mean, probability of
improvement) and the performance profiles are drawn with ``rliable.plot_utils``. The intervals are rliable's
stratified percentile bootstrap (runs resampled with replacement within each task; one task per table, so
within the task), computed here because ``rliable.library`` 1.2 hands arch a ``random_state`` argument that
arch 8, the first arch that imports with pandas 3, no longer takes; it is seeded, so a report is reproducible.

Files written into the benchmark folder: ``results.md``, ``results.csv`` (one row per run) and per task
``learning_curves_<task>.png``, ``performance_profile_<task>.png``, ``noise_<task>.png``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ltc_rl.errors import ConfigError
from ltc_rl.reporting import counted, headless_pyplot
from ltc_rl.runs.files import atomic_write, save_figure
from ltc_rl.runs.layout import EVALUATIONS_FILE
from ltc_rl.runs.summary import read_run_record
from ltc_rl.studies.rl_benchmark import NOISE_FILE, SETTINGS_FILE, BenchmarkSettings, read_settings, run_folder

__all__ = ["RunResult", "Estimate", "load_results", "interval_estimate", "iqm", "write_report", "REPORT_FILES"]

REPORT_FILES = {"markdown": "results.md", "csv": "results.csv"}


# ---------------------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Estimate:
    """A point estimate and its confidence interval over ``n`` runs."""

    value: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 1) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean of ``scores`` (runs along axis 0) for each remaining column: rliable's
    ``aggregate_iqm`` (a 25% trimmed mean) applied column by column, in one vectorised call."""
    return np.asarray(stats.trim_mean(scores, proportiontocut=0.25, axis=0))


def interval_estimate(statistic: Callable[..., Any], *samples: np.ndarray, reps: int = 2000, confidence: float = 0.95,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``statistic(*samples)`` and its percentile-bootstrap interval, each sample's runs (axis 0) resampled with
    replacement on their own (rliable's ``StratifiedIndependentBootstrap``; with one sample, its
    ``StratifiedBootstrap`` of a single task). Returns (point, low, high) with the statistic's shape."""
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}.")
    rng = np.random.default_rng(seed)
    point = np.asarray(statistic(*samples), dtype=float)
    replicas = np.empty((reps, *point.shape))
    for rep in range(reps):
        replicas[rep] = statistic(*(sample[rng.integers(0, len(sample), len(sample))] for sample in samples))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(replicas, [tail, 100 - tail], axis=0)
    return point, low, high


def _estimate(statistic: Callable[..., Any], *samples: np.ndarray, reps: int, confidence: float) -> Estimate:
    point, low, high = interval_estimate(statistic, *samples, reps=reps, confidence=confidence)
    return Estimate(float(point), float(low), float(high), min(len(sample) for sample in samples))


def _metrics() -> Any:
    from rliable import metrics

    return metrics


# ---------------------------------------------------------------------------------------------- runs
@dataclass
class RunResult:
    """One planned run of the benchmark and what its folder holds so far."""

    task: str
    policy: str
    seed: int
    run_dir: Path
    finished: bool = False
    timesteps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    returns: np.ndarray = field(default_factory=lambda: np.zeros(0))  # mean return of each evaluation
    final_episodes: np.ndarray = field(default_factory=lambda: np.zeros(0))  # returns of the last evaluation
    noise: dict[float, float] = field(default_factory=dict)  # noise level -> mean deterministic return
    upside_down: dict[float, float] = field(default_factory=dict)  # noise level -> share of steps upside down
    flipped_evaluations: int | None = None  # periodic evaluations with an episode mostly upside down (if recorded)

    @property
    def final_return(self) -> float:
        return float(self.returns[-1]) if self.returns.size else math.nan

    def steps_to(self, threshold: float) -> int | None:
        """The first evaluation step whose mean return reached ``threshold`` (None if none did)."""
        reached = np.flatnonzero(self.returns >= threshold)
        return int(self.timesteps[reached[0]]) if reached.size else None


def load_results(settings: BenchmarkSettings, output: str | Path) -> list[RunResult]:
    """Every (task, policy, seed) run of ``settings`` with its evaluations and noise evaluations, if any."""
    results = []
    for task, policy in settings.cells:
        for seed in settings.seeds:
            run_dir = run_folder(output, settings, task, policy, seed)
            result = RunResult(task, policy, seed, run_dir)
            record = read_run_record(run_dir)
            if record is not None:
                result.finished, result.timesteps, result.returns = record.finished, record.timesteps, record.returns
                with np.load(run_dir / EVALUATIONS_FILE) as saved:
                    if len(saved["results"]):
                        result.final_episodes = np.asarray(saved["results"][-1], dtype=float)
                    if "upside_down" in saved.files:
                        recorded = [row for row in np.asarray(saved["upside_down"], dtype=float)
                                    if not np.isnan(row).any()]
                        result.flipped_evaluations = sum(bool((row > 0.5).any()) for row in recorded)
            try:
                document = json.loads((run_dir / NOISE_FILE).read_text())
                result.noise = {float(r["obs_noise"]): float(r["mean_return"]) for r in document["results"]}
                result.upside_down = {float(r["obs_noise"]): float(r["mean_upside_down"]) for r in document["results"]
                                      if r.get("mean_upside_down") is not None}
            except (OSError, ValueError, KeyError, TypeError):
                pass
            results.append(result)
    return results


# ---------------------------------------------------------------------------------------------- report
def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _by_policy(results: Sequence[RunResult], settings: BenchmarkSettings, task: str) -> dict[str, list[RunResult]]:
    """The finished runs of ``task`` per policy, in the benchmark's order (policies without any left out)."""
    grouped = {policy: [r for r in results if r.task == task and r.policy == policy and r.finished]
               for cell_task, policy in settings.cells if cell_task == task}
    return {policy: runs for policy, runs in grouped.items() if runs}


def _finals(runs: Sequence[RunResult]) -> np.ndarray:
    """The final returns as rliable's score matrix: runs x 1 task."""
    return np.array([[run.final_return] for run in runs])


def _curve(runs: Sequence[RunResult]) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation steps all runs reached and the returns there (runs x steps, interpolated where steps differ)."""
    end = min(int(run.timesteps[-1]) for run in runs)
    steps = np.unique(np.concatenate([run.timesteps[run.timesteps <= end] for run in runs]))
    return steps, np.stack([np.interp(steps, run.timesteps, run.returns) for run in runs])


def _seed_counts(groups: dict[str, list[RunResult]]) -> str:
    counts = sorted({len(runs) for runs in groups.values()})
    return f"{counts[0]} seeds" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} seeds"


def _labelled(policy: str, seeds: int) -> str:
    """A legend entry: the policy and how many seeds stand behind its curve."""
    return f"{policy} ({counted(seeds, 'seed')})"


def _plot_task(output: Path, task: str, groups: dict[str, list[RunResult]], levels: Sequence[float], reps: int,
               confidence: float) -> list[Path]:
    plt = headless_pyplot()
    from rliable import plot_utils

    level = f"{100 * confidence:g}%"
    seeds = _seed_counts(groups)
    colors = dict(zip(groups, plt.get_cmap("tab10").colors))
    written = []

    fig, ax = plt.subplots(figsize=(8, 5))
    for policy, runs in groups.items():
        steps, table = _curve(runs)
        point, low, high = interval_estimate(iqm, table, reps=reps, confidence=confidence)
        ax.plot(steps, point, marker="o", markersize=3, color=colors[policy], label=_labelled(policy, len(runs)))
        ax.fill_between(steps, low, high, color=colors[policy], alpha=0.2)
    ax.set(title=f"{task}: evaluation return, IQM and {level} bootstrap CI ({seeds})",
           xlabel="environment steps", ylabel="episode return (deterministic evaluation)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    written.append(save_figure(fig, output / f"learning_curves_{_slug(task)}.png"))

    finals = np.concatenate([_finals(runs)[:, 0] for runs in groups.values()])
    taus = np.linspace(finals.min(), finals.max(), 101) if finals.max() > finals.min() else finals[:1] + np.arange(-1, 2)
    profiles, intervals = {}, {}
    for policy, runs in groups.items():
        point, low, high = interval_estimate(lambda x: (x > taus).mean(axis=0), _finals(runs), reps=reps,
                                             confidence=confidence)
        profiles[_labelled(policy, len(runs))], intervals[_labelled(policy, len(runs))] = point, (low, high)
    fig, ax = plt.subplots(figsize=(8, 5))
    plot_utils.plot_performance_profiles(
        profiles, taus, performance_profile_cis=intervals, ax=ax,
        colors={_labelled(p, len(r)): colors[p] for p, r in groups.items()},
        xlabel=r"final evaluation return $\tau$", ylabel=r"fraction of runs with return $> \tau$",
        labelsize="large", ticklabelsize="medium")
    ax.set_title(f"{task}: performance profile, {level} bootstrap CI ({seeds})")
    ax.legend(loc="best", fontsize=9)
    written.append(save_figure(fig, output / f"performance_profile_{_slug(task)}.png"))

    noisy = {policy: runs for policy, runs in groups.items() if any(run.noise for run in runs)}
    if levels and noisy:
        fig, ax = plt.subplots(figsize=(8, 5))
        for policy, runs in noisy.items():
            rows = [(sigma, _noise_estimate(runs, sigma, reps, confidence)) for sigma in levels]
            rows = [(sigma, est) for sigma, est in rows if est is not None]
            if not rows:
                continue
            x = np.array([sigma for sigma, _ in rows])
            y = np.array([est.value for _, est in rows])
            err = np.array([[est.value - est.low, est.high - est.value] for _, est in rows]).T
            ax.errorbar(x, y, yerr=err, marker="o", capsize=4, color=colors[policy],
                        label=_labelled(policy, min(est.n for _, est in rows)))
        ax.set(title=f"{task}: return under observation noise, IQM and {level} CI ({_seed_counts(noisy)})",
               xlabel="observation noise sigma (Gaussian, in observation units)",
               ylabel="episode return (deterministic)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=9)
        written.append(save_figure(fig, output / f"noise_{_slug(task)}.png"))
    return written


def _noise_estimate(runs: Sequence[RunResult], sigma: float, reps: int, confidence: float) -> Estimate | None:
    values = np.array([[run.noise[sigma]] for run in runs if sigma in run.noise])
    if not values.size:
        return None
    return _estimate(_metrics().aggregate_iqm, values, reps=reps, confidence=confidence)


def _task_markdown(task: str, settings: BenchmarkSettings, results: Sequence[RunResult],
                   groups: dict[str, list[RunResult]], reps: int, confidence: float) -> list[str]:
    metrics = _metrics()
    level = f"{100 * confidence:g}%"
    spec = settings.tasks[task]
    options = ", ".join(f"{k}={v}" for k, v in spec.env_options.items())
    planned = {policy: sum(r.task == task and r.policy == policy for r in results)
               for cell_task, policy in settings.cells if cell_task == task}
    lines = [f"## {task}", "", f"Environment {spec.env_id}" + (f" ({options})" if options else "") + ".", ""]
    missing = [f"{policy} ({len(groups.get(policy, []))} of {count} seeds finished)"
               for policy, count in planned.items() if len(groups.get(policy, [])) < count]
    if missing:
        lines += ["Incomplete: " + "; ".join(missing) + ".", ""]
    if not groups:
        return lines + ["No finished run yet.", ""]
    lines += [f"Final deterministic evaluation return over seeds, {level} stratified-bootstrap CI:", "",
              f"| policy | seeds | IQM [{level} CI] | mean [{level} CI] |", "|---|---|---|---|"]
    for policy, runs in groups.items():
        finals = _finals(runs)
        lines.append(f"| {_describe(settings, policy)} | {len(runs)} | "
                     f"{_estimate(metrics.aggregate_iqm, finals, reps=reps, confidence=confidence).text()} | "
                     f"{_estimate(metrics.aggregate_mean, finals, reps=reps, confidence=confidence).text()} |")
    if settings.reference in groups and len(groups) > 1:
        reference = _finals(groups[settings.reference])
        lines += ["", f"Probability of improvement of {settings.reference} over each policy (P({settings.reference} "
                  f"> other) for a random pair of runs; 0.5 is a tie), {level} CI:", "",
                  f"| comparison | seeds | P [{level} CI] |", "|---|---|---|"]
        for policy, runs in groups.items():
            if policy != settings.reference:
                other = _finals(runs)
                estimate = _estimate(metrics.probability_of_improvement, reference, other, reps=reps,
                                     confidence=confidence)
                lines.append(f"| {settings.reference} vs {policy} | {len(reference)} vs {len(other)} | "
                             f"{estimate.text(2)} |")
    levels = [sigma for sigma in settings.noise_levels if any(sigma in run.noise for runs in groups.values()
                                                              for run in runs)]
    if levels:
        lines += ["", f"Deterministic return under observation noise ({settings.noise_episodes} episodes per run and "
                  f"level), IQM over seeds [{level} CI]:", "",
                  "| policy | seeds | " + " | ".join(f"sigma {sigma:g}" for sigma in levels) + " |",
                  "|---|---|" + "---|" * len(levels)]
        for policy, runs in groups.items():
            cells = [_noise_estimate(runs, sigma, reps, confidence) for sigma in levels]
            counts = sorted({est.n for est in cells if est is not None})
            lines.append(f"| {policy} | {'-'.join(map(str, counts)) or 0} | "
                         + " | ".join(est.text() if est is not None else "not evaluated" for est in cells) + " |")
        lines += _upside_down_table(groups, levels)
    lines += _milestones_table(groups, settings.thresholds)
    slug = _slug(task)
    lines += ["", f"![learning curves](learning_curves_{slug}.png) "
                  f"![performance profile](performance_profile_{slug}.png)"
              + (f" ![noise](noise_{slug}.png)" if levels else ""), ""]
    return lines


def _upside_down_table(groups: Mapping[str, Sequence[RunResult]], levels: Sequence[float]) -> list[str]:
    """Per policy and noise level, the share of evaluation steps spent upside down (mean over the seeds that
    report it, with the per-seed shares): a flipped runner that keeps moving still earns a return."""
    if not any(run.upside_down for runs in groups.values() for run in runs):
        return []
    lines = ["", "Share of those evaluation steps spent upside down (mean over seeds; each seed's share):", "",
             "| policy | " + " | ".join(f"sigma {sigma:g}" for sigma in levels) + " |", "|---|" + "---|" * len(levels)]
    for policy, runs in groups.items():
        cells = []
        for sigma in levels:
            shares = [run.upside_down[sigma] for run in runs if sigma in run.upside_down]
            cells.append(f"{100 * np.mean(shares):.0f} % ({', '.join(f'{100 * x:.0f}' for x in shares)})"
                         if shares else "-")
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    return lines


def _steps_text(steps: int | None) -> str:
    if steps is None:
        return "never"
    return f"{steps / 1000:g}k" if steps >= 1000 else str(steps)


def _milestones_table(groups: Mapping[str, Sequence[RunResult]], thresholds: Sequence[float]) -> list[str]:
    """Per policy and seed, the step whose evaluation first reached each threshold (sample efficiency) and how
    many periodic evaluations had an episode mostly upside down (where the runs recorded it)."""
    flips = any(run.flipped_evaluations is not None for runs in groups.values() for run in runs)
    if not thresholds and not flips:
        return []
    header = [*(f"{threshold:g} first at" for threshold in thresholds),
              *(["evaluations with a flipped episode"] if flips else [])]
    lines = ["", "Learning milestones per seed (a periodic evaluation counts as flipped when one of its episodes spent "
             "more than half of its steps upside down; - where the run did not record it):", "",
             "| policy | seeds | " + " | ".join(header) + " |", "|---|---|" + "---|" * len(header)]
    for policy, runs in groups.items():
        cells = [", ".join(_steps_text(run.steps_to(threshold)) for run in runs) for threshold in thresholds]
        if flips:
            cells.append(", ".join("-" if run.flipped_evaluations is None else str(run.flipped_evaluations)
                                   for run in runs))
        lines.append(f"| {policy} | {', '.join(str(run.seed) for run in runs)} | " + " | ".join(cells) + " |")
    return lines


def _describe(settings: BenchmarkSettings, policy: str) -> str:
    spec = settings.policies[policy]
    extra = [*spec.hp, *(f"{k}={v}" for k, v in spec.env_options.items())]
    return policy if policy == spec.policy and not extra else f"{policy} ({spec.policy}{': ' if extra else ''}" \
        f"{', '.join(extra)})"


def _csv_text(settings: BenchmarkSettings, results: Sequence[RunResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    levels = settings.noise_levels
    writer.writerow(["task", "env_id", "policy", "base_policy", "seed", "finished", "timesteps", "final_return",
                     "final_episode_std", "final_episode_min", "best_return", "best_step",
                     *(f"steps_to_{threshold:g}" for threshold in settings.thresholds),
                     *(f"noise_{sigma:g}" for sigma in levels), *(f"upside_down_{sigma:g}" for sigma in levels),
                     "flipped_evaluations", "run_dir"])
    for run in results:
        has = run.returns.size > 0
        best = int(np.argmax(run.returns)) if has else None
        writer.writerow([run.task, settings.tasks[run.task].env_id, run.policy, settings.policies[run.policy].policy,
                         run.seed, run.finished, int(run.timesteps[-1]) if has else 0,
                         f"{run.final_return:.6g}" if has else "",
                         f"{run.final_episodes.std():.6g}" if run.final_episodes.size else "",
                         f"{run.final_episodes.min():.6g}" if run.final_episodes.size else "",
                         f"{run.returns[best]:.6g}" if best is not None else "",
                         int(run.timesteps[best]) if best is not None else "",
                         *(run.steps_to(t) if has and run.steps_to(t) is not None else "" for t in settings.thresholds),
                         *(f"{run.noise[s]:.6g}" if s in run.noise else "" for s in levels),
                         *(f"{run.upside_down[s]:.4g}" if s in run.upside_down else "" for s in levels),
                         "" if run.flipped_evaluations is None else run.flipped_evaluations, run.run_dir])
    return buffer.getvalue()


def write_report(output: str | Path, settings: BenchmarkSettings | None = None, reps: int = 2000,
                 confidence: float = 0.95) -> dict[str, Path]:
    """Writes ``results.md``, ``results.csv`` and the per-task PNGs into the benchmark folder ``output`` from the
    runs finished so far; returns the files written. ``settings`` defaults to the folder's ``benchmark.yaml``."""
    output = Path(output)
    settings = settings or read_settings(output)
    if reps < 1:
        raise ConfigError(f"reps must be >= 1, got {reps}.")
    results = load_results(settings, output)
    finished = sum(run.finished for run in results)
    lines = ["# RL benchmark", "",
             f"Latest command: `{settings.command or '-'}` (the settings of every run so far: {SETTINGS_FILE}; "
             "rerunning a command skips the runs it finds finished)", "",
             f"{finished} of {len(results)} runs finished; {settings.total_timesteps or 'per-task default'} steps "
             f"each; seeds {', '.join(map(str, settings.seeds))} for every policy"
             + (f"; shared hyperparameters {', '.join(settings.hp)}" if settings.hp else "") + ".", "",
             "Statistics over the finished runs of each cell: final return = mean return of the run's last periodic "
             "deterministic evaluation; IQM = interquartile mean (rliable); confidence intervals by stratified "
             f"percentile bootstrap ({reps} resamples). Few seeds give wide or degenerate intervals; the seeds "
             "column says how many each cell holds.", ""]
    paths: dict[str, Path] = {}
    for task in dict.fromkeys(task for task, _ in settings.cells):
        groups = _by_policy(results, settings, task)
        lines += _task_markdown(task, settings, results, groups, reps, confidence)
        if groups:
            for path in _plot_task(output, task, groups, settings.noise_levels, reps, confidence):
                paths[path.name] = path
    markdown = "\n".join(lines)
    paths["markdown"] = atomic_write(output / REPORT_FILES["markdown"], lambda h: h.write(markdown.encode()))
    text = _csv_text(settings, results)
    paths["csv"] = atomic_write(output / REPORT_FILES["csv"], lambda h: h.write(text.encode()))
    return paths
