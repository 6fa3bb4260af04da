"""The paper's Half-Cheetah sequence-prediction study: every model x every seed, then the report.

:func:`run_seqpred_study` loads the splits once, trains one
:class:`~ltc_rl.seqpred.models.SequencePredictor` per (model, seed) with the paper's settings, shows
one progress bar over all epochs, and writes into ``out``:

* ``results.md``: the table (mean +- std over seeds of test MSE and MAE, parameters, seconds
  per epoch) next to the paper's test MSE, and whether the paper's claims reproduce;
* ``summary.csv`` (one row per model), ``runs.csv`` (one row per run), ``history.csv``
  (learning curves);
* ``valid_curves.png``: validation MSE per epoch;
* ``checkpoints/<model>_seed<k>.pt``: the best-validation state dicts.

Runs are independent, so ``workers > 1`` trains them in parallel processes. Each run uses
``threads`` torch threads (default 1): the models are small and sequential, so processes scale
better than threads, and more threads than free cores slow training down several times.
"""

from __future__ import annotations

import functools
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

import torch
from tqdm.auto import tqdm

from ltc_rl.devices import check_device
from ltc_rl.errors import ConfigError, OutputExistsError, check_output_name
from ltc_rl.seqpred.data import SequenceSplits, load_splits
from ltc_rl.seqpred.models import SEQPRED_MODELS, build_predictor, learning_rate_for
from ltc_rl.studies.seqpred_report import (aggregate, markdown_table, plot_validation_curves, target_check,
                                   write_history_csv, write_runs_csv, write_summary_csv)
from ltc_rl.seqpred.training import RunResult, TrainConfig, train_predictor

__all__ = ["StudyConfig", "StudyResult", "run_seqpred_study"]


@dataclass
class StudyConfig:
    """What to train and where to write; defaults are the paper's protocol."""

    data: Path
    out: Path
    models: Sequence[str] = SEQPRED_MODELS
    seeds: int = 3
    epochs: int = 200
    sparsity: float = 0.0
    units: int = 32
    batch_size: int = 16
    seq_len: int = 32
    stride: int = 10
    workers: int = 1
    threads: int = 1
    device: str = "cpu"
    command: str = ""

    def __post_init__(self) -> None:
        check_output_name(self.out, "--out")
        self.data, self.out = Path(self.data), Path(self.out)
        self.models = tuple(self.models)
        unknown = [m for m in self.models if m not in SEQPRED_MODELS]
        if unknown or not self.models:
            raise ConfigError(f"unknown or missing models {unknown}; choose from {', '.join(SEQPRED_MODELS)}.")
        if min(self.seeds, self.workers, self.units, self.threads, self.epochs, self.batch_size) < 1:
            raise ConfigError(f"seeds, workers, units, threads, epochs and batch_size must be >= 1, got {self.seeds}, "
                              f"{self.workers}, {self.units}, {self.threads}, {self.epochs}, {self.batch_size}.")
        if not 0.0 <= self.sparsity < 1.0:
            raise ConfigError(f"sparsity must lie in [0, 1), got {self.sparsity}; use 0 for dense models and e.g. 0.5 "
                              "for half.")
        check_device(self.device)
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {str(self.out)!r} is a file; pass a folder for the report (it is created if "
                              "missing).")


@dataclass
class StudyResult:
    """All runs, the per-model rows of the table, and the files written."""

    runs: list[RunResult]
    rows: list[dict[str, Any]]
    table: str
    wall_seconds: float
    files: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class _Job:
    model: str
    seed: int


def _run_job(job: _Job, splits: SequenceSplits, config: StudyConfig,
             report: Callable[[_Job, dict[str, float]], None]) -> tuple[RunResult, dict[str, torch.Tensor]]:
    model = build_predictor(job.model, splits.obs_dim, config.units, config.sparsity, seed=job.seed)
    train_config = TrainConfig(learning_rate=learning_rate_for(job.model), epochs=config.epochs,
                               batch_size=config.batch_size, seed=job.seed, device=config.device)
    return train_predictor(model, splits, train_config, name=job.model, on_epoch=functools.partial(report, job))


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _put(queue: Any, job: _Job, record: dict[str, float]) -> None:
    queue.put((job, record))


def _train_all(jobs: list[_Job], splits: SequenceSplits, config: StudyConfig,
               on_done: Callable[[_Job, tuple[RunResult, dict[str, torch.Tensor]]], None]) -> None:
    """Train every job (in this process or in ``config.workers`` processes); ``on_done`` gets each result."""
    bar = tqdm(total=len(jobs) * config.epochs, desc="seqpred", unit="epoch", dynamic_ncols=True)
    counted: dict[_Job, int] = {job: 0 for job in jobs}

    def tick(job: _Job, record: dict[str, float]) -> None:
        counted[job] += 1
        bar.update(1)
        bar.set_postfix_str(f"{job.model} seed {job.seed} epoch {int(record['epoch'])} "
                            f"valid MSE {record['valid_mse']:.3f}")

    def finish(job: _Job, outcome: tuple[RunResult, dict[str, torch.Tensor]]) -> None:
        bar.update(config.epochs - counted[job])  # runs that stopped early (diverged) leave epochs unused
        counted[job] = config.epochs
        on_done(job, outcome)
        bar.write(f"done: {job.model} seed {job.seed}: test MSE {outcome[0].test_mse:.3f} "
                  f"(best epoch {outcome[0].best_epoch})")

    try:
        if config.workers == 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(config.threads)
            try:
                for job in jobs:
                    finish(job, _run_job(job, splits, config, tick))
            finally:
                torch.set_num_threads(threads)
        else:
            context = multiprocessing.get_context("spawn")
            with context.Manager() as manager, ProcessPoolExecutor(
                    config.workers, mp_context=context, initializer=_init_worker,
                    initargs=(config.threads,)) as pool:
                queue = manager.Queue()
                futures: dict[Future, _Job] = {
                    pool.submit(_run_job, job, splits, config, functools.partial(_put, queue)): job for job in jobs}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    while True:
                        try:
                            tick(*queue.get_nowait())
                        except Empty:
                            break
                    for future in done:
                        finish(futures[future], future.result())
    finally:
        bar.close()


def _write_report(config: StudyConfig, splits: SequenceSplits, runs: list[RunResult], wall: float,
                  total_runs: int) -> tuple[list[dict[str, Any]], str, dict[str, Path]]:
    out = config.out
    rows = aggregate(runs)
    table = markdown_table(rows)
    status = "" if len(runs) == total_runs else f" **Partial: {len(runs)} of {total_runs} runs finished.**"
    header = (f"# Sequence prediction: {config.data}\n\n"
              + (f"Command: `{config.command}`\n\n" if config.command else "")
              + f"{splits.describe()}; {config.units} units, sparsity {config.sparsity}, {config.epochs} epochs, "
              f"batch {config.batch_size}, {config.seeds} seeds; Adam lr 0.01 (LTC) / 0.001 (others); test error of "
              f"the best-validation epoch; mean +- std over seeds. Wall time {wall / 60:.1f} min "
              f"({config.workers} worker{'s' if config.workers > 1 else ''}).{status}\n\n")
    files = {
        "table": out / "results.md",
        "summary_csv": write_summary_csv(rows, out / "summary.csv"),
        "runs_csv": write_runs_csv(runs, out / "runs.csv"),
        "history_csv": write_history_csv(runs, out / "history.csv"),
        "plot": plot_validation_curves(runs, out / "valid_curves.png"),
        "checkpoints": out / "checkpoints",
    }
    files["table"].write_text(header + table + "\n" + target_check(rows, config.epochs))
    return rows, table, files


def run_seqpred_study(config: StudyConfig) -> StudyResult:
    """Train every model for every seed on ``config.data`` and write the report into ``config.out``.

    The report files are rewritten after every finished run, so a long study leaves partial
    results (marked as such in ``results.md``) if it is stopped.
    """
    if config.out.exists() and any(config.out.iterdir()):
        raise OutputExistsError(f"output folder {str(config.out)!r} already exists and is not empty; choose another "
                                "--out (results are never overwritten).")
    splits = load_splits(config.data, seq_len=config.seq_len, stride=config.stride)
    tqdm.write(f"data {config.data}: {splits.describe()}")
    jobs = [_Job(m, s) for m in config.models for s in range(config.seeds)]
    order = {job: i for i, job in enumerate(jobs)}
    (config.out / "checkpoints").mkdir(parents=True, exist_ok=True)
    finished: dict[_Job, RunResult] = {}
    started = time.perf_counter()

    def on_done(job: _Job, outcome: tuple[RunResult, dict[str, torch.Tensor]]) -> None:
        run, state = outcome
        torch.save(state, config.out / "checkpoints" / f"{run.model}_seed{run.seed}.pt")
        finished[job] = run
        runs = [finished[j] for j in sorted(finished, key=order.get)]
        _write_report(config, splits, runs, time.perf_counter() - started, len(jobs))

    _train_all(jobs, splits, config, on_done)
    wall = time.perf_counter() - started
    runs = [finished[job] for job in jobs]
    rows, table, files = _write_report(config, splits, runs, wall, len(jobs))
    return StudyResult(runs=runs, rows=rows, table=table, wall_seconds=wall, files=files)
