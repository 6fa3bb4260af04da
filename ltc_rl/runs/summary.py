"""Results across seeds: final evaluation returns (mean, std, confidence interval) and learning-curve bands.

Works on any set of run folders written by :mod:`ltc_rl.runs.training` (``scripts/train.py`` runs, sweep
trials): each folder's ``config.yaml`` says what was trained, its ``evaluations.npz`` holds the periodic
evaluations. Runs are grouped by environment, policy and configuration (everything in ``config.yaml``
except the seed, the device and the bookkeeping); a run counts once it finished, that is once its last
evaluation reached the configured number of steps (runs that were interrupted or stopped early by a
scheduler are listed as excluded).

    records = find_runs("runs/sweep")
    groups, excluded = summarize(records)
    write_summary(records, "runs/sweep")   # summary.md, summary.csv, learning_curves.png
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ltc_rl.errors import ConfigError, DataError, MissingFileError
from ltc_rl.reporting import headless_pyplot
from ltc_rl.runs.files import save_figure, write_text
from ltc_rl.runs.layout import CONFIG_FILE, EVALUATIONS_FILE
from ltc_rl.runs.run_folder import RunFolderError, read_config_file

__all__ = ["RunRecord", "GroupSummary", "read_run_record", "find_runs", "confidence_interval", "summarize",
           "format_markdown", "write_summary", "is_finished", "SUMMARY_FILES", "rank_search_trials",
           "write_search_table", "SEARCH_FILES"]

SUMMARY_FILES = {"markdown": "summary.md", "csv": "summary.csv", "curves": "learning_curves.png"}
SEARCH_FILES = {"markdown": "search.md", "csv": "search.csv", "curves": "search_curves.png"}
#: config.yaml entries that do not change what is learned (or are the seed, which the summary aggregates over).
_NOT_CONFIGURATION = ("seed", "device", "versions", "sessions", "vec_env")


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


@dataclass(frozen=True)
class RunRecord:
    """One run folder: what was trained and its evaluation history (mean return per evaluation)."""

    run_dir: Path
    env_id: str
    policy: str
    seed: int
    total_timesteps: int
    configuration: dict[str, Any]
    timesteps: np.ndarray
    returns: np.ndarray
    #: why the folder could not be read (then it only appears among the excluded runs); None when it could.
    problem: str | None = None

    @classmethod
    def unreadable(cls, run_dir: Path, problem: str) -> RunRecord:
        """A run folder whose files are corrupt: listed as excluded, never summarised."""
        return cls(run_dir, "?", "?", -1, 0, {}, np.zeros(0, dtype=np.int64), np.zeros(0), problem)

    @property
    def steps_reached(self) -> int:
        """Steps of the last evaluation (0 without one; fewer than configured when stopped early)."""
        return int(self.timesteps[-1]) if self.timesteps.size else 0

    @property
    def finished(self) -> bool:
        return self.problem is None and bool(self.timesteps.size) and self.steps_reached >= self.total_timesteps

    @property
    def final_return(self) -> float:
        """Mean return of the last evaluation (NaN without one)."""
        return float(self.returns[-1]) if self.returns.size else math.nan

    @property
    def config_key(self) -> str:
        """Short hash of the configuration: runs with the same key differ only in their seed."""
        text = json.dumps(self.configuration, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:8]


def read_run_record(run_dir: str | Path) -> RunRecord | None:
    """The :class:`RunRecord` of ``run_dir``, or None when it has no ``config.yaml`` or no evaluations yet.

    Raises :class:`DataError` when either file is unreadable or not what :mod:`ltc_rl.runs.training` writes.
    """
    run_dir = Path(run_dir)
    config_path, evaluations_path = run_dir / CONFIG_FILE, run_dir / EVALUATIONS_FILE
    if not config_path.is_file() or not evaluations_path.is_file():
        return None
    try:
        config = read_config_file(config_path)
    except RunFolderError as exc:
        raise DataError(str(exc)) from exc
    missing = [key for key in ("env_id", "policy", "seed", "total_timesteps") if key not in config]
    if missing:
        raise DataError(f"{config_path} lacks {missing}; it was not written by ltc_rl.runs.training.")
    try:
        with np.load(evaluations_path, allow_pickle=False) as saved:
            timesteps = np.asarray(saved["timesteps"], dtype=np.int64).reshape(-1)
            results = np.asarray(saved["results"], dtype=float)
        seed, total_timesteps = int(config["seed"]), int(config["total_timesteps"])
        returns = results.mean(axis=1) if results.size else np.zeros(0)
    except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile) as exc:
        raise DataError(f"{evaluations_path} or its config.yaml is unreadable or malformed "
                        f"({type(exc).__name__}).") from exc
    if returns.shape != timesteps.shape:
        raise DataError(f"{evaluations_path} holds {timesteps.size} evaluation steps but {returns.size} results.")
    rest = {k: v for k, v in config.items() if k not in (*_NOT_CONFIGURATION, "hyperparams")}
    configuration = {**_flatten(config.get("hyperparams") or {}), **_flatten(rest)}
    return RunRecord(run_dir, str(config["env_id"]), str(config["policy"]), seed, total_timesteps, configuration,
                     timesteps, returns)


def is_finished(run_dir: str | Path) -> bool:
    """Whether the run in ``run_dir`` trained all its configured steps (its final evaluation is written); False
    when its files are unreadable (so a sweep trains it again)."""
    try:
        record = read_run_record(run_dir)
    except DataError:
        return False
    return record is not None and record.finished


def find_runs(*roots: str | Path) -> list[RunRecord]:
    """Every run folder at or below ``roots`` that has evaluations, sorted by path; folders with corrupt files
    come back as :meth:`RunRecord.unreadable` (so a summary lists them as excluded instead of failing).

    Raises :class:`MissingFileError` when a root does not exist or holds no run folder.
    """
    records: list[RunRecord] = []
    for root in map(Path, roots):
        if not root.exists():
            raise MissingFileError(f"{root} does not exist; pass run folders or folders that contain them.")
        for config_path in sorted(root.rglob(CONFIG_FILE)):
            try:
                record = read_run_record(config_path.parent)
            except DataError as exc:
                record = RunRecord.unreadable(config_path.parent, str(exc))
            if record is not None:
                records.append(record)
    if not records:
        raise MissingFileError(f"no run folders ({CONFIG_FILE} + {EVALUATIONS_FILE}) under {', '.join(map(str, roots))}.")
    return sorted(records, key=lambda r: str(r.run_dir))


def confidence_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean of ``values`` (NaNs with fewer than two values)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return math.nan, math.nan
    mean = float(values.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, values.size - 1)) * float(values.std(ddof=1)) / math.sqrt(values.size)
    return mean - half, mean + half


@dataclass
class GroupSummary:
    """The finished runs of one (environment, policy, configuration) and their final-return statistics."""

    env_id: str
    policy: str
    config_key: str
    runs: list[RunRecord]
    confidence: float = 0.95
    varying: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.policy + (f" [{self.config_key}]" if self.varying else "")

    @property
    def finals(self) -> np.ndarray:
        return np.array([run.final_return for run in self.runs])

    @property
    def mean(self) -> float:
        return float(self.finals.mean())

    @property
    def std(self) -> float:
        return float(self.finals.std(ddof=1)) if len(self.runs) > 1 else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        return confidence_interval(self.finals, self.confidence)

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Evaluation steps, mean return over seeds and its confidence band, on the steps all runs reached."""
        end = min(int(run.timesteps[-1]) for run in self.runs)
        steps = np.unique(np.concatenate([run.timesteps[run.timesteps <= end] for run in self.runs]))
        table = np.stack([np.interp(steps, run.timesteps, run.returns) for run in self.runs])
        bands = np.array([confidence_interval(column, self.confidence) for column in table.T]).reshape(-1, 2)
        return steps, table.mean(axis=0), bands[:, 0], bands[:, 1]


def summarize(records: Iterable[RunRecord], confidence: float = 0.95) -> tuple[list[GroupSummary], list[RunRecord]]:
    """Finished runs grouped by environment, policy and configuration; and the unfinished (excluded) runs."""
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}.")
    grouped: dict[tuple[str, str, str], list[RunRecord]] = {}
    excluded: list[RunRecord] = []
    for record in records:
        if record.finished:
            grouped.setdefault((record.env_id, record.policy, record.config_key), []).append(record)
        else:
            excluded.append(record)
    groups = [GroupSummary(env, policy, key, sorted(runs, key=lambda r: r.seed), confidence)
              for (env, policy, key), runs in sorted(grouped.items())]
    for group in groups:  # name what tells apart several configurations of the same policy
        siblings = [g for g in groups if (g.env_id, g.policy) == (group.env_id, group.policy)]
        if len(siblings) > 1:
            names = sorted(set().union(*(g.runs[0].configuration for g in siblings)))
            group.varying = {name: group.runs[0].configuration.get(name) for name in names
                             if len({json.dumps(g.runs[0].configuration.get(name), default=str) for g in siblings}) > 1}
    return groups, excluded


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def _varying_text(group: GroupSummary) -> str:
    return ", ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
                     for name, value in group.varying.items())


def _legend_text(group: GroupSummary) -> str:
    """A plot legend entry: the policy and what sets its configuration apart (last name parts, unset ones left out)."""
    parts = [f"{name.rsplit('.', 1)[-1]}={value:.4g}" if isinstance(value, float) else f"{name.rsplit('.', 1)[-1]}={value}"
             for name, value in group.varying.items() if value is not None]
    return f"{group.policy}: {', '.join(parts)}" if parts else group.policy


def format_markdown(groups: Sequence[GroupSummary], excluded: Sequence[RunRecord]) -> str:
    """The summary table (and the list of excluded runs) as markdown."""
    level = int(round(100 * groups[0].confidence)) if groups else 95
    lines = [f"# Final evaluation return across seeds ({sum(len(g.runs) for g in groups)} finished runs)", "",
             "Return of the last evaluation of each run (deterministic policy, mean over its evaluation episodes); "
             f"mean +- sample std over seeds and the {level}% confidence interval of the mean (Student t).", "",
             f"| env | policy | hyperparameters | seeds | steps | final return (mean +- std) | {level}% CI |",
             "|---|---|---|---|---|---|---|"]
    for group in groups:
        low, high = group.ci
        steps = sorted({run.total_timesteps for run in group.runs})
        lines.append(f"| {group.env_id} | {group.label} | {_varying_text(group)} | {len(group.runs)} | "
                     f"{', '.join(map(str, steps))} | {_number(group.mean)} +- {_number(group.std)} | "
                     f"[{_number(low)}, {_number(high)}] |")
    if excluded:
        lines += ["", f"Excluded (unfinished, interrupted, stopped early or unreadable): {len(excluded)} runs", ""]
        lines += [f"- {run.run_dir}: unreadable, {run.problem}" if run.problem is not None else
                  f"- {run.run_dir}: reached {run.steps_reached} of "
                  f"{run.total_timesteps} steps" for run in excluded]
    return "\n".join(lines) + "\n"


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _csv_text(groups: Sequence[GroupSummary]) -> str:
    header = ["env_id", "policy", "config", "hyperparameters", "n_seeds", "seeds", "total_timesteps",
              "mean", "std", "ci_low", "ci_high", "confidence", "finals", "run_dirs"]
    return _csv(header, ([group.env_id, group.policy, group.config_key, _varying_text(group), len(group.runs),
                          " ".join(str(run.seed) for run in group.runs),
                          " ".join(sorted({str(run.total_timesteps) for run in group.runs})),
                          group.mean, group.std, *group.ci, group.confidence,
                          " ".join(f"{value:.6g}" for value in group.finals),
                          " ".join(str(run.run_dir) for run in group.runs)] for group in groups))


def _plot_curves(path: Path, groups: Sequence[GroupSummary]) -> Path:
    plt = headless_pyplot()

    envs = sorted({group.env_id for group in groups})
    fig, axes = plt.subplots(1, len(envs), figsize=(7 * len(envs), 4.5), squeeze=False)
    level = int(round(100 * groups[0].confidence))
    for ax, env in zip(axes[0], envs):
        for group in (g for g in groups if g.env_id == env):
            steps, mean, low, high = group.curve()
            line, = ax.plot(steps, mean, marker="o", markersize=3, label=f"{_legend_text(group)} ({len(group.runs)} seed{'s' if len(group.runs) != 1 else ''})")
            if len(group.runs) > 1:
                ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
        ax.set_title(f"{env}: evaluation return, mean and {level}% CI over seeds")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("episode return")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def write_summary(records: Iterable[RunRecord], out_dir: str | Path, confidence: float = 0.95) -> dict[str, Path]:
    """Writes ``summary.md``, ``summary.csv`` and ``learning_curves.png`` into ``out_dir``; returns their paths.

    Raises :class:`MissingFileError` when none of ``records`` finished.
    """
    groups, excluded = summarize(records, confidence)
    if not groups:
        raise MissingFileError(f"none of the {len(excluded)} runs finished; nothing to summarize "
                         f"(e.g. {excluded[0].run_dir if excluded else '-'}).")
    out_dir = Path(out_dir)
    markdown = format_markdown(groups, excluded)
    paths = {"markdown": write_text(out_dir / SUMMARY_FILES["markdown"], markdown),
             "csv": write_text(out_dir / SUMMARY_FILES["csv"], _csv_text(groups))}
    paths["curves"] = _plot_curves(out_dir / SUMMARY_FILES["curves"], groups)
    return paths


# ------------------------------------------------------------------------------------------ search trials
def rank_search_trials(records: Iterable[RunRecord]) -> list[RunRecord]:
    """The readable trials of a search with an evaluation, best first.

    Trials that went further rank first (an early-stopping scheduler stops the weaker ones at its rungs), then
    by the return of their last evaluation: the order in which the scheduler judged them.
    """
    trials = [record for record in records if record.problem is None and record.timesteps.size]
    return sorted(trials, key=lambda record: (-record.steps_reached, -record.final_return))


def _value_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, list) else str(value)


def write_search_table(records: Iterable[RunRecord], names: Sequence[str], out_dir: str | Path) -> dict[str, Path]:
    """Writes ``search.md``, ``search.csv`` and ``search_curves.png``: every trial of a search, ranked, with the
    values it tried and its evaluations.

    Raises :class:`MissingFileError` when no trial has an evaluation yet.
    """
    trials = rank_search_trials(records)
    if not trials:
        raise MissingFileError("no trial of the search has an evaluation yet; nothing to rank.")
    header = ["rank", *names, "steps", "last return", "best return", "status", "run"]
    rows = [[str(rank), *(_value_text(trial.configuration.get(name)) for name in names), str(trial.steps_reached),
             _number(trial.final_return), _number(float(trial.returns.max())),
             "finished" if trial.finished else "not to the end", trial.run_dir.name]
            for rank, trial in enumerate(trials, 1)]
    finished = sum(trial.finished for trial in trials)
    lines = [f"# Search trials ({len(trials)}, {finished} trained to the end)", "",
             "Ranked by the steps each trial reached (the scheduler stops weaker trials early), then by the return "
             "of its last evaluation (deterministic policy, mean over its evaluation episodes). One seed per "
             "configuration: a ranking to choose candidates from, not a comparison with confidence intervals.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    out_dir = Path(out_dir)
    return {"markdown": write_text(out_dir / SEARCH_FILES["markdown"], "\n".join(lines) + "\n"),
            "csv": write_text(out_dir / SEARCH_FILES["csv"], _csv(header, rows)),
            "curves": _plot_search_curves(out_dir / SEARCH_FILES["curves"], trials)}


def _plot_search_curves(path: Path, ranked: Sequence[RunRecord]) -> Path:
    """Every trial's evaluations, labelled by its rank in ``search.md``: where the scheduler stopped each one
    (dashed) and how the finished ones (solid) got there."""
    plt = headless_pyplot()

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(ranked)))
    for rank, (trial, color) in enumerate(zip(ranked, colors), 1):
        state = "finished" if trial.finished else f"stopped at {trial.steps_reached // 1000}k"
        ax.plot(trial.timesteps, trial.returns, color=color, marker="o", markersize=2.5,
                linestyle="-" if trial.finished else "--", linewidth=2.0 if rank <= 3 else 1.2,
                label=f"#{rank}: {_number(trial.final_return)} ({state})")
    envs = ", ".join(sorted({trial.env_id for trial in ranked}))
    ax.set_title(f"{envs}: every search trial's evaluation return (ranks as in search.md)")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return (deterministic, mean over evaluation episodes)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7, ncol=2 if len(ranked) > 12 else 1)
    return save_figure(fig, path)
