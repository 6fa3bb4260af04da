"""Multi-seed RL benchmark: policies x tasks x seeds, each run a ``scripts/train.py`` run, then noise robustness.

Every run goes through :func:`ltc_rl.runs.sweep.run_trial` (so through :func:`ltc_rl.runs.training.train` /
:func:`~ltc_rl.runs.training.resume`, the code behind ``scripts/train.py``), in worker processes of this machine
(a spawn-context ``ProcessPoolExecutor``, no Ray needed) or as Ray tasks. Afterwards each finished run is
evaluated deterministically at every observation-noise level by an injected evaluator (``scripts/benchmark_rl.py``
passes :func:`agents.evaluation.evaluate_run_noise`, the code of ``scripts/evaluate.py``).

What runs comes from command-line lists and, for what they cannot express, a study file::

    tasks:                                   # name -> env id and env options (obs_noise, irregular, dt_in_obs)
      HalfCheetah-v4: {policies: [ltc, ncp, lstm, mlp]}
      HalfCheetahNoVel-v4-irregular: {env: HalfCheetahNoVel-v4, irregular: [1, 9], policies: [ltc, ltc-nodt]}
    policies:                                # name -> base policy (train.py --policy), --hp overrides, env options
      ltc-nodt: {policy: ltc, hp: ["policy_kwargs.use_elapsed_time=false"]}
      lstm-dtobs: {policy: lstm, dt_in_obs: true}
    seeds: [0, 1, 2]
    total_timesteps: 1000000
    hp: []                                   # NAME=VALUE for every run
    noise: [0.0, 0.1, 0.2]                   # observation-noise levels of the robustness evaluation
    noise_episodes: 10
    thresholds: [3000]                       # report: steps until the evaluation return first reaches each
    reference: ltc                           # report: probability of improvement of this policy over the others

A task without ``policies`` runs every policy named on the command line (``--policies``) or, without it, every
policy the study defines. A name that the study does not define is a plain env id (tasks) or a ``train.py``
policy name (policies). Every (task, policy) cell runs with the same seeds.

The output folder::

    benchmark.yaml                          the settings (a rerun must agree; seeds, tasks, policies may be added)
    runs/<task>/<policy>/<env>_<base policy>_seed<seed>/   one run folder each (ltc_rl.runs.training layout)
        noise_eval.json                     deterministic returns at every noise level
    logs/<task>__<policy>__seed<seed>.log   what training printed (periodic evaluations), and a failed run's traceback
    results.md, results.csv, *.png          the report (ltc_rl.studies.rl_report)

Resuming: a finished run is not trained again (only missing noise levels are evaluated), a run with a
checkpoint continues from it, a run killed before its first checkpoint starts afresh; so rerunning the same
command after Ctrl-C, SIGKILL or the end of a session continues where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ltc_rl.parsing import parse_list, parse_seeds
from ltc_rl.errors import ConfigError, DataError, TrainingInterrupted, one_line
from ltc_rl.runs.files import atomic_write
from ltc_rl.runs.layout import EVALUATIONS_FILE
from ltc_rl.runs.run_files import latest_checkpoint
from ltc_rl.runs.summary import is_finished, read_run_record
from ltc_rl.runs.sweep import SweepSettings, check_sweep, require_ray, run_trial, trial_name
from ltc_rl.runs.config import POLICIES, parse_overrides, read_yaml_file
from ltc_rl.runs.training import EnvFactory, sb3_make_vec

__all__ = ["TaskSpec", "PolicySpec", "BenchmarkSettings", "PlannedRun", "RunOutcome", "BenchmarkResult",
           "NoiseEvaluator", "load_study", "build_settings", "merge_settings", "prepare_output", "read_settings",
           "run_folder", "plan_runs", "run_benchmark", "SETTINGS_FILE", "NOISE_FILE", "ENV_OPTIONS"]

SETTINGS_FILE = "benchmark.yaml"
NOISE_FILE = "noise_eval.json"
RUNS_DIR = "runs"
LOGS_DIR = "logs"
#: Env options a task or a policy variant may set (``scripts/train.py``'s --obs-noise, --irregular, --dt-in-obs).
ENV_OPTIONS: dict[str, Any] = {"obs_noise": 0.0, "irregular": None, "dt_in_obs": False}
_STUDY_KEYS = ("tasks", "policies", "seeds", "total_timesteps", "hp", "noise", "noise_episodes", "thresholds",
               "reference")

#: ``evaluate(run_dir, noise_levels, episodes) -> [{"obs_noise", "mean_return", "returns", ...} per level]``;
#: a module-level function, so that worker processes can receive it.
NoiseEvaluator = Callable[[Path, Sequence[float], int], list[dict[str, Any]]]


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class TaskSpec:
    """A benchmark task: an env id and the env options it is trained with (only those that differ from the default)."""

    env_id: str
    env_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicySpec:
    """A policy variant: a ``train.py`` policy name, its ``--hp`` overrides and env options (e.g. dt_in_obs)."""

    policy: str
    hp: tuple[str, ...] = ()
    env_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkSettings:
    """Everything a benchmark trains and evaluates (saved as ``benchmark.yaml``).

    ``cells``: the (task name, policy name) pairs that run, each with every seed. ``reference``,
    ``thresholds`` and ``command`` only shape the report and may change between reruns; ``device`` does not
    change what is learned.
    """

    tasks: Mapping[str, TaskSpec]
    policies: Mapping[str, PolicySpec]
    cells: tuple[tuple[str, str], ...]
    seeds: tuple[int, ...]
    total_timesteps: int | None = None
    hp: tuple[str, ...] = ()
    noise_levels: tuple[float, ...] = ()
    noise_episodes: int = 10
    device: str = "auto"
    reference: str = "ltc"
    thresholds: tuple[float, ...] = ()
    command: str = ""

    def __post_init__(self) -> None:
        if not self.cells:
            raise ConfigError("the benchmark has no (task, policy) pair to run; name tasks (--tasks) and policies "
                              "(--policies), or a study file (--study).")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct and at least one, got {list(self.seeds)}.")
        if self.total_timesteps is not None and (not isinstance(self.total_timesteps, int) or self.total_timesteps < 1):
            raise ConfigError(f"total_timesteps must be an integer >= 1, got {self.total_timesteps!r}.")
        if any(not level >= 0 for level in self.noise_levels):
            raise ConfigError(f"noise levels must be >= 0, got {list(self.noise_levels)}.")
        if not isinstance(self.noise_episodes, int) or self.noise_episodes < 1:
            raise ConfigError(f"noise_episodes must be an integer >= 1, got {self.noise_episodes!r}.")
        parse_overrides(self.hp)
        for task, policy in self.cells:
            if task not in self.tasks or policy not in self.policies:
                raise ConfigError(f"cell ({task}, {policy}) names an undefined task or policy.")
            self.env_options(task, policy)  # conflicting options fail here

    def env_options(self, task: str, policy: str) -> dict[str, Any]:
        """The env options of a cell: the defaults, then the task's, then the policy variant's."""
        task_options, policy_options = self.tasks[task].env_options, self.policies[policy].env_options
        clash = sorted(k for k in set(task_options) & set(policy_options) if task_options[k] != policy_options[k])
        if clash:
            raise ConfigError(f"task {task} and policy {policy} set {', '.join(clash)} differently; set it in one of "
                              "them.")
        return {**ENV_OPTIONS, **task_options, **policy_options}

    def sweep_settings(self, task: str, policy: str) -> SweepSettings:
        """The runs of one cell as a seed sweep, for :func:`ltc_rl.runs.sweep.run_trial`."""
        variant = self.policies[policy]
        return SweepSettings(env_id=self.tasks[task].env_id, policies=(variant.policy,), seeds=self.seeds,
                             total_timesteps=self.total_timesteps, overrides=(*self.hp, *variant.hp),
                             device=self.device, env_options=self.env_options(task, policy))

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": {name: {"env": spec.env_id, **spec.env_options} for name, spec in self.tasks.items()},
                "policies": {name: {"policy": spec.policy, "hp": list(spec.hp), **spec.env_options}
                             for name, spec in self.policies.items()},
                "cells": [list(cell) for cell in self.cells], "seeds": list(self.seeds),
                "total_timesteps": self.total_timesteps, "hp": list(self.hp), "noise": list(self.noise_levels),
                "noise_episodes": self.noise_episodes, "device": self.device, "reference": self.reference,
                "thresholds": list(self.thresholds), "command": self.command}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> BenchmarkSettings:
        return cls(tasks={name: _task_spec(name, entry) for name, entry in document["tasks"].items()},
                   policies={name: _policy_spec(name, entry) for name, entry in document["policies"].items()},
                   cells=tuple(tuple(cell) for cell in document["cells"]),  # type: ignore[misc]
                   seeds=tuple(document["seeds"]), total_timesteps=document.get("total_timesteps"),
                   hp=tuple(document.get("hp") or ()), noise_levels=tuple(map(float, document.get("noise") or ())),
                   noise_episodes=int(document.get("noise_episodes", 10)), device=document.get("device", "auto"),
                   reference=document.get("reference", "ltc"),
                   thresholds=tuple(map(float, document.get("thresholds") or ())),
                   command=document.get("command", ""))


def _env_options(where: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    options = {key: entry[key] for key in ENV_OPTIONS if key in entry}
    noise = options.get("obs_noise", 0.0)
    if not isinstance(noise, (int, float)) or isinstance(noise, bool) or noise < 0:
        raise ConfigError(f"{where}: obs_noise must be a number >= 0, got {noise!r}.")
    irregular = options.get("irregular")
    if irregular is not None and not (isinstance(irregular, (list, tuple)) and len(irregular) == 2
                                      and all(isinstance(v, int) and v >= 1 for v in irregular)
                                      and irregular[0] <= irregular[1]):
        raise ConfigError(f"{where}: irregular must be [MIN, MAX] frame counts (1 <= MIN <= MAX), got {irregular!r}.")
    if irregular is not None:
        options["irregular"] = list(irregular)
    if not isinstance(options.get("dt_in_obs", False), bool):
        raise ConfigError(f"{where}: dt_in_obs must be true or false, got {options['dt_in_obs']!r}.")
    return options


def _check_keys(where: str, entry: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(allowed)}.")


def _task_spec(name: str, entry: Mapping[str, Any] | None) -> TaskSpec:
    entry = dict(entry or {})
    _check_keys(f"task {name}", entry, ("env", "policies", *ENV_OPTIONS))
    return TaskSpec(str(entry.get("env", name)), _env_options(f"task {name}", entry))


def _policy_spec(name: str, entry: Mapping[str, Any] | None) -> PolicySpec:
    entry = dict(entry or {})
    _check_keys(f"policy {name}", entry, ("policy", "hp", *ENV_OPTIONS))
    base = str(entry.get("policy", name))
    if base not in POLICIES:
        raise ConfigError(f"policy {name}: {base!r} is not a train.py policy; set 'policy:' to one of "
                          f"{', '.join(POLICIES)}.")
    hp = entry.get("hp") or []
    if isinstance(hp, str) or not all(isinstance(item, str) for item in hp):
        raise ConfigError(f"policy {name}: hp must be a list of NAME=VALUE strings, got {hp!r}.")
    parse_overrides(hp)
    return PolicySpec(base, tuple(hp), _env_options(f"policy {name}", entry))


def load_study(path: str | Path) -> dict[str, Any]:
    """A study file, checked: ``tasks`` ({name: (TaskSpec, policy names | None)}), ``policies`` ({name:
    PolicySpec}) and the other keys as written (see the module docstring). Raises :class:`ConfigError`."""
    document = read_yaml_file(path, "study file")
    if not isinstance(document, Mapping):
        raise ConfigError(f"study file {path} must be a mapping with keys such as tasks, policies, seeds.")
    _check_keys(f"study file {path}", document, _STUDY_KEYS)
    study = dict(document)
    for key in ("tasks", "policies"):
        if not isinstance(study.get(key) or {}, Mapping):
            raise ConfigError(f"study file {path}: '{key}' must map names to entries (e.g. ltc-nodt: {{policy: ltc}}).")
    study["policies"] = {name: _policy_spec(name, entry) for name, entry in (study.get("policies") or {}).items()}
    tasks = {}
    for name, entry in (study.get("tasks") or {}).items():
        listed = (entry or {}).get("policies")
        if listed is not None and (isinstance(listed, str) or not listed):
            raise ConfigError(f"task {name}: policies must be a non-empty list of policy names.")
        tasks[name] = (_task_spec(name, entry), None if listed is None else [str(p) for p in listed])
    study["tasks"] = tasks
    return study


def _names(text: str | None) -> list[str] | None:
    return None if text is None else parse_list(text)


def _floats(what: str, values: Any) -> tuple[float, ...]:
    if isinstance(values, str):
        values = values.split(",")
    try:
        return tuple(float(value) for value in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} takes numbers (e.g. 0 0.1 0.2), got {values!r}.") from None


def build_settings(study: Mapping[str, Any] | None = None, tasks: str | None = None, policies: str | None = None,
                   seeds: str | Sequence[int] | None = None, total_timesteps: int | None = None,
                   hp: Sequence[str] = (), noise: str | Sequence[float] | None = None, noise_episodes: int | None = None,
                   thresholds: str | None = None, reference: str | None = None, device: str = "auto",
                   command: str = "") -> BenchmarkSettings:
    """The settings of a benchmark command: the study (from :func:`load_study`), overridden by the flags.

    ``tasks`` / ``policies`` (comma-separated) select names the study defines or add plain env ids / train.py
    policies; ``seeds`` is a count or a comma-separated list (default: the study's, else 0,1,2); ``hp`` adds to
    the study's; the other flags replace the study's values.
    """
    study = dict(study or {})
    study_tasks: dict[str, tuple[TaskSpec, list[str] | None]] = study.get("tasks") or {}
    study_policies: dict[str, PolicySpec] = study.get("policies") or {}
    task_names = _names(tasks) or list(study_tasks)
    if not task_names:
        raise ConfigError("name the tasks to run: --tasks HalfCheetah-v4,HalfCheetahNoVel-v4 (or a study file).")
    chosen_policies = _names(policies)
    if chosen_policies is None and not study_policies and not any(listed for _, listed in study_tasks.values()):
        chosen_policies = ["ltc"]
    task_specs: dict[str, TaskSpec] = {}
    cells: list[tuple[str, str]] = []
    for name in task_names:
        spec, listed = study_tasks.get(name, (TaskSpec(name), None))
        task_specs[name] = spec
        if listed is None:
            names = chosen_policies if chosen_policies is not None else list(study_policies)
        else:
            names = [p for p in listed if chosen_policies is None or p in chosen_policies]
        cells += [(name, policy) for policy in names]
    policy_specs: dict[str, PolicySpec] = {}
    for _, policy in cells:
        if policy not in study_policies and policy not in POLICIES:
            raise ConfigError(f"unknown policy {policy!r}: define it under 'policies:' in the study file or use one "
                              f"of {', '.join(POLICIES)}.")
        policy_specs[policy] = study_policies.get(policy) or PolicySpec(policy)
    if seeds is None:
        seed_list = tuple(study.get("seeds") or (0, 1, 2))
    else:
        seed_list = tuple(parse_seeds(seeds)) if isinstance(seeds, str) else tuple(seeds)
    if not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seed_list):
        raise ConfigError(f"seeds must be integers, got {list(seed_list)}.")
    study_hp = study.get("hp") or []
    if isinstance(study_hp, str):
        raise ConfigError(f"the study's hp must be a list of NAME=VALUE strings, got {study_hp!r}.")
    return BenchmarkSettings(
        tasks=task_specs, policies=policy_specs, cells=tuple(dict.fromkeys(cells)), seeds=seed_list,
        total_timesteps=total_timesteps if total_timesteps is not None else study.get("total_timesteps"),
        hp=(*study_hp, *hp), noise_levels=_floats("noise", noise if noise is not None else study.get("noise") or ()),
        noise_episodes=int(noise_episodes or study.get("noise_episodes") or 10),
        thresholds=_floats("thresholds", thresholds if thresholds is not None else study.get("thresholds") or ()),
        reference=reference or study.get("reference") or "ltc", device=device, command=command)


def merge_settings(saved: BenchmarkSettings, new: BenchmarkSettings, where: str | Path = "the output folder"
                   ) -> BenchmarkSettings:
    """The settings of a benchmark folder after a rerun with ``new``: tasks, policies, cells, seeds and noise levels
    may be added (or a subset run), the report options follow ``new``; anything that would change what the
    existing runs mean (steps, shared hyperparameters, a task's or policy's definition) is refused."""
    differing = [name for name in ("total_timesteps", "hp", "noise_episodes")
                 if getattr(saved, name) != getattr(new, name)]
    for kind, label in (("tasks", "task"), ("policies", "policy")):
        old, now = getattr(saved, kind), getattr(new, kind)
        differing += [f"{label} {name}" for name in now if name in old and old[name] != now[name]]
    if differing:
        raise ConfigError(f"{where} holds a benchmark with other settings (differs in {', '.join(differing)}); "
                          "repeat its settings to continue it (seeds, tasks and policies may be added), or choose "
                          "another --out.")
    return replace(new, tasks={**saved.tasks, **new.tasks}, policies={**saved.policies, **new.policies},
                   cells=tuple(dict.fromkeys((*saved.cells, *new.cells))),
                   seeds=tuple(sorted(set(saved.seeds) | set(new.seeds))),
                   noise_levels=tuple(sorted(set(saved.noise_levels) | set(new.noise_levels))))


def read_settings(output: str | Path) -> BenchmarkSettings:
    """The saved settings of the benchmark folder ``output``. Raises :class:`ConfigError` if there are none."""
    path = Path(output) / SETTINGS_FILE
    if not path.is_file():
        raise ConfigError(f"{output} is not a benchmark folder (no {SETTINGS_FILE}); run the benchmark first.")
    try:
        return BenchmarkSettings.from_dict(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path} is unreadable ({type(exc).__name__}: {one_line(exc)}); restore it or choose "
                          "another --out.") from None


def prepare_output(output: str | Path, settings: BenchmarkSettings) -> BenchmarkSettings:
    """Creates the benchmark folder or checks the rerun against its ``benchmark.yaml``; saves and returns the
    merged settings (what the report covers)."""
    output = Path(output)
    merged = merge_settings(read_settings(output), settings, output) if (output / SETTINGS_FILE).is_file() \
        else settings
    output.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(merged.to_dict(), sort_keys=False)
    atomic_write(output / SETTINGS_FILE, lambda handle: handle.write(text.encode()))
    return merged


# ---------------------------------------------------------------------------------------------- planning
def run_folder(output: str | Path, settings: BenchmarkSettings, task: str, policy: str, seed: int) -> Path:
    """Where the run of (task, policy, seed) lives: ``runs/<task>/<policy>/<train.py's default run name>``."""
    return Path(output) / RUNS_DIR / task / policy / trial_name(settings.tasks[task].env_id,
                                                                 settings.policies[policy].policy, seed)


def _noise_results(run_dir: Path, episodes: int) -> dict[float, dict[str, Any]]:
    """The saved noise evaluations of a run by level (none if the file is missing, unreadable or used other
    episode counts). A level counts once its entry records the steps spent upside down (``upside_down``, None
    where the env does not report it): older files lack it, and their levels are evaluated again once."""
    try:
        document = json.loads((run_dir / NOISE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if document.get("episodes") != episodes:
        return {}
    return {float(result["obs_noise"]): result for result in document.get("results", []) if "upside_down" in result}


@dataclass(frozen=True)
class PlannedRun:
    """One run of the benchmark and what is left to do: ``done``, ``evaluate`` (the noise levels), ``resume``
    (from its checkpoint) or ``new`` (a run killed before its first checkpoint starts afresh)."""

    task: str
    policy: str
    seed: int
    run_dir: Path
    state: str

    @property
    def label(self) -> str:
        return f"{self.task} / {self.policy} / seed {self.seed}"

    def progress(self) -> str:
        """The label with the steps of the run's last evaluation and its mean return, as far as its folder says
        (the label alone before the first evaluation, or while the evaluation file is being rewritten)."""
        try:
            record = read_run_record(self.run_dir)
        except DataError:
            record = None
        if record is None or not record.steps_reached:
            return self.label
        return (f"{self.label} at {record.steps_reached:,} of {record.total_timesteps:,} steps "
                f"(last evaluation {record.final_return:.1f})")


def plan_runs(settings: BenchmarkSettings, output: str | Path) -> list[PlannedRun]:
    """Every (task, policy, seed) run of ``settings`` in order, with what is left to do for each."""
    planned = []
    for task, policy in settings.cells:
        for seed in settings.seeds:
            run_dir = run_folder(output, settings, task, policy, seed)
            if is_finished(run_dir):
                missing = set(settings.noise_levels) - set(_noise_results(run_dir, settings.noise_episodes))
                state = "evaluate" if missing else "done"
            elif latest_checkpoint(run_dir / "checkpoints", validate=False) is not None:  # resuming checks it
                state = "resume"
            else:
                state = "new"
            planned.append(PlannedRun(task, policy, seed, run_dir, state))
    return planned


# ---------------------------------------------------------------------------------------------- one run
@dataclass(frozen=True)
class _Job:
    """What a worker needs for one run (picklable: sent to worker processes or Ray tasks)."""

    run: PlannedRun
    sweep: SweepSettings
    noise_levels: tuple[float, ...]
    noise_episodes: int
    threads: int
    logs_dir: Path
    make_env: EnvFactory
    env_ids: tuple[str, ...] | None
    evaluate_noise: NoiseEvaluator | None


@dataclass(frozen=True)
class RunOutcome:
    """How one run ended: ``finished`` (trained and evaluated), ``interrupted`` or ``failed`` (``message``)."""

    run: PlannedRun
    status: str
    wall_s: float
    final_return: float | None = None
    message: str = ""


_busy = False  # whether this worker process is running a job
_stop_requested = False  # SIGINT reached this worker while it was running a job


def _request_stop(signal_number: int, frame: Any) -> None:
    """A worker's SIGINT handler outside training: remember the request (training itself installs its own handler,
    which stops after the current step with a checkpoint); raising here could cut a run's final saves short."""
    global _stop_requested
    if _busy:
        _stop_requested = True


def _stop_training_if_requested(metrics: Mapping[str, Any]) -> None:
    """Called at every periodic evaluation (inside training): a stop requested before training started is
    passed on to training's own signal handler."""
    if _stop_requested:
        os.kill(os.getpid(), signal.SIGINT)


def _init_worker() -> None:
    """Worker-process set-up: SIGINT remembered outside training, and stop (SIGTERM to itself, which training
    answers with a checkpoint) once the benchmark process is gone, e.g. after SIGKILL. (Each job sets its own
    torch threads, as Ray tasks need it too.)"""
    signal.signal(signal.SIGINT, _request_stop)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
        while _busy:  # training is saving its checkpoint; then nothing will ever send this worker a job
            time.sleep(0.2)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _update_noise_eval(run_dir: Path, levels: Sequence[float], episodes: int, evaluate: NoiseEvaluator) -> None:
    """Evaluates the levels ``noise_eval.json`` lacks and saves all of them."""
    results = _noise_results(run_dir, episodes)
    missing = [level for level in levels if level not in results]
    if not missing:
        return
    for result in evaluate(run_dir, missing, episodes):
        results[float(result["obs_noise"])] = result
    document = {"episodes": episodes, "deterministic": True, "results": [results[k] for k in sorted(results)]}
    text = json.dumps(document, indent=2)
    atomic_write(run_dir / NOISE_FILE, lambda handle: handle.write(text.encode()))


def _run_job(job: _Job) -> RunOutcome:
    """Trains (or resumes) one run and evaluates it at the noise levels; errors become a failed outcome."""
    global _busy, _stop_requested
    import torch

    _busy, _stop_requested = True, False
    torch.set_num_threads(job.threads)
    run, start = job.run, time.monotonic()
    verb = "evaluating" if run.state == "evaluate" else "resuming" if run.state == "resume" else "started"
    print(f"{verb} {run.label}", flush=True)
    job.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = job.logs_dir / f"{run.task}__{run.policy}__seed{run.seed}.log"
    try:
        if run.state != "evaluate":
            with log_path.open("a") as log, contextlib.redirect_stdout(log):
                run_trial({"policy": job.sweep.policies[0], "seed": run.seed}, job.sweep, run.run_dir.parent,
                          _stop_training_if_requested, job.make_env, job.env_ids)
        if _stop_requested:  # the run is complete; its noise evaluation is left to the rerun
            return RunOutcome(run, "interrupted", time.monotonic() - start)
        if job.noise_levels and job.evaluate_noise is not None:
            _update_noise_eval(run.run_dir, job.noise_levels, job.noise_episodes, job.evaluate_noise)
        with np.load(run.run_dir / EVALUATIONS_FILE) as saved:
            final = float(np.mean(saved["results"][-1]))
        return RunOutcome(run, "finished", time.monotonic() - start, final)
    except (TrainingInterrupted, KeyboardInterrupt):  # KeyboardInterrupt: a cancelled Ray task
        return RunOutcome(run, "interrupted", time.monotonic() - start)
    except Exception as exc:  # noqa: BLE001 - one failed run is reported and the benchmark goes on
        with log_path.open("a") as log:
            log.write(traceback.format_exc())
        return RunOutcome(run, "failed", time.monotonic() - start,
                          message=f"{type(exc).__name__}: {one_line(exc)} (traceback in {log_path})")
    finally:
        _busy = False


# ---------------------------------------------------------------------------------------------- executing
class _LocalPool:
    """Runs jobs in ``workers`` spawned processes of this machine."""

    def __init__(self, workers: int) -> None:
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker)

    def submit(self, job: _Job) -> Future:
        return self.pool.submit(_run_job, job)

    def wait(self, handles: Iterable[Future], timeout: float) -> list[Future]:
        return list(wait_futures(list(handles), timeout=timeout, return_when=FIRST_COMPLETED)[0])

    def result(self, handle: Future, job: _Job) -> RunOutcome:
        try:
            return handle.result()
        except KeyboardInterrupt:  # a second Ctrl-C reached the worker while it was wrapping up
            return RunOutcome(job.run, "interrupted", 0.0)
        except Exception as exc:  # noqa: BLE001 - a worker process that died (killed, out of memory)
            return RunOutcome(job.run, "failed", 0.0, message=f"its worker process died ({type(exc).__name__}: "
                                                               f"{one_line(exc)})")

    def interrupt(self, handles: Iterable[Future]) -> None:
        """Asks the running jobs to stop with a checkpoint (SIGINT to each worker)."""
        for child in multiprocessing.active_children():
            try:
                os.kill(child.pid, signal.SIGINT)  # type: ignore[arg-type]
            except ProcessLookupError:
                pass

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _RayPool:
    """Runs jobs as Ray tasks (a local Ray instance, or the cluster at ``address``)."""

    def __init__(self, address: str | None, threads: int) -> None:
        require_ray()
        import ray

        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(address=address, include_dashboard=False, log_to_driver=True)
        self.remote = ray.remote(num_cpus=threads, max_retries=0)(_run_job)

    def submit(self, job: _Job) -> Any:
        return self.remote.remote(job)

    def wait(self, handles: Iterable[Any], timeout: float) -> list[Any]:
        return self.ray.wait(list(handles), num_returns=1, timeout=timeout)[0]

    def result(self, handle: Any, job: _Job) -> RunOutcome:
        from ray.exceptions import TaskCancelledError

        try:
            return self.ray.get(handle)
        except TaskCancelledError:
            return RunOutcome(job.run, "interrupted", 0.0)
        except Exception as exc:  # noqa: BLE001 - a task that died
            return RunOutcome(job.run, "failed", 0.0, message=f"its Ray task died ({type(exc).__name__}: "
                                                               f"{one_line(exc)})")

    def interrupt(self, handles: Iterable[Any]) -> None:
        for handle in handles:  # KeyboardInterrupt inside the task: training stops with a checkpoint
            self.ray.cancel(handle)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


@dataclass
class BenchmarkResult:
    """What a benchmark command did: the planned runs and the outcome of each run it started."""

    output: Path
    settings: BenchmarkSettings
    planned: list[PlannedRun]
    outcomes: list[RunOutcome]
    interrupted: bool = False

    @property
    def failed(self) -> list[RunOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == "failed"]

    @property
    def done(self) -> int:
        """Runs of this command's selection that are complete (trained and noise-evaluated)."""
        return (sum(run.state == "done" for run in self.planned)
                + sum(outcome.status == "finished" for outcome in self.outcomes))


def _raise_interrupt(signal_number: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_benchmark(settings: BenchmarkSettings, output: str | Path, *, workers: int = 1, threads: int = 1,
                  ray_address: str | None = None, use_ray: bool = False, make_env: EnvFactory = sb3_make_vec,
                  env_ids: Sequence[str] | None = None, evaluate_noise: NoiseEvaluator | None = None,
                  progress_every: float = 60.0, log: Callable[[str], None] = print) -> BenchmarkResult:
    """Runs (or continues) the benchmark ``settings`` into the folder ``output``.

    At most ``workers`` runs at a time, each with ``threads`` torch threads; in local worker processes, or as Ray
    tasks with ``use_ray`` (a local Ray instance, or the cluster at ``ray_address``). ``make_env`` / ``env_ids``:
    the env factory and its ids (as for :func:`ltc_rl.runs.training.train`); ``evaluate_noise``: the noise evaluator
    (None: no noise evaluation). Prints a line per run started and ended and every ``progress_every`` seconds
    a progress line. Ctrl-C / SIGTERM stop the running runs with a checkpoint and return with ``interrupted``.
    Raises :class:`ConfigError` for bad settings (before anything runs) or a benchmark folder with other settings.
    """
    if workers < 1 or threads < 1:
        raise ConfigError(f"workers and threads must be >= 1, got {workers} and {threads}.")
    output = Path(output).resolve()
    merged = prepare_output(output, settings)
    planned = plan_runs(settings, output)
    env_ids = tuple(env_ids) if env_ids is not None else None
    for task, policy in dict.fromkeys((run.task, run.policy) for run in planned if run.state == "new"):
        try:
            check_sweep(settings.sweep_settings(task, policy), make_env, env_ids)
        except ConfigError as exc:
            raise ConfigError(f"task {task}, policy {policy}: {one_line(exc)}") from None
    jobs = [_Job(run, settings.sweep_settings(run.task, run.policy), settings.noise_levels, settings.noise_episodes,
                 threads, output / LOGS_DIR, make_env, env_ids, evaluate_noise)
            for run in planned if run.state != "done"]
    result = BenchmarkResult(output, merged, planned, [])
    log(f"benchmark {output}: {len(planned)} runs, {len(planned) - len(jobs)} already done, {len(jobs)} to run "
        f"({workers} at a time{', on Ray' if use_ray else ''})")
    if not jobs:
        return result
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    backend: _LocalPool | _RayPool = _RayPool(ray_address, threads) if use_ray else _LocalPool(workers)
    pending, running = list(jobs), {}
    try:
        last_progress = time.monotonic()
        try:
            while pending or running:
                while pending and len(running) < workers:
                    job = pending.pop(0)
                    running[backend.submit(job)] = job
                timeout = max(0.1, progress_every - (time.monotonic() - last_progress))
                for handle in backend.wait(running, timeout):
                    _report(result, backend.result(handle, running.pop(handle)), log)
                if time.monotonic() - last_progress >= progress_every:
                    last_progress = time.monotonic()
                    log(f"{result.done} of {len(planned)} runs done, running: "
                        + "; ".join(job.run.progress() for job in running.values()))
        except KeyboardInterrupt:
            result.interrupted = True
            log(f"interrupted: stopping {len(running)} running run(s) with a checkpoint...")
            backend.interrupt(running)
            for handle, job in list(running.items()):
                for _ in backend.wait([handle], timeout=600.0):
                    _report(result, backend.result(handle, job), log)
    finally:
        backend.close()
        signal.signal(signal.SIGTERM, previous)
    return result


def _report(result: BenchmarkResult, outcome: RunOutcome, log: Callable[[str], None]) -> None:
    result.outcomes.append(outcome)
    minutes = f"{outcome.wall_s / 60:.1f} min"
    if outcome.status == "finished":
        log(f"finished {outcome.run.label}: final return {outcome.final_return:.1f} ({minutes}) "
            f"[{result.done} of {len(result.planned)} done]")
    elif outcome.status == "interrupted":
        log(f"interrupted {outcome.run.label} after {minutes}; rerun to continue it")
    else:
        log(f"FAILED {outcome.run.label} after {minutes}: {outcome.message}")
