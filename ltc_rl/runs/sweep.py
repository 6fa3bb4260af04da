"""Seeds and hyperparameter sweeps on Ray Tune: every trial is one run of :mod:`ltc_rl.runs.training`.

A sweep trains each policy with each seed (and, with a search space, each sampled configuration) through
:func:`ltc_rl.runs.training.train`, the code behind ``scripts/train.py``, so every trial leaves a complete run
folder. Ray Tune schedules the trials: on a local Ray instance using all cores by default, or on an
existing cluster (``address="auto"`` on a cluster node, ``"ray://head:10001"`` through Ray Client).
Ray is an optional dependency (``pip install ltc_rl[distributed]``); nothing here imports it before
it is needed.

The sweep folder::

    sweep.yaml                 the sweep's settings (rerunning with other settings is refused)
    runs/<env>_<policy>_seed<seed>[_<config>]/   one run folder per trial (layout of ltc_rl.runs.training)
    tune/<experiment>/         Ray Tune's experiment state
    summary.md, summary.csv, learning_curves.png   across seeds (ltc_rl.runs.summary)
    search.md, search.csv, search_curves.png       a search's trials, ranked

Resuming: rerunning the same sweep restores Tune's experiment (finished trials are not run again,
unfinished ones start again), and every trial first looks at its run folder: a finished run only
reports its final evaluation, a run with a checkpoint continues from it (:func:`ltc_rl.runs.training.resume`).

Search: a YAML file maps hyperparameter names (dotted for nested ones, e.g. ``policy_kwargs.units``) to
a list of values or a distribution ``{uniform: [low, high]}``, ``{loguniform: [low, high]}``,
``{randint: [low, high]}`` (inclusive). ``grid`` tries every combination of the lists, ``random`` draws
``samples`` configurations, ``optuna`` lets Optuna's TPE sampler propose ``samples`` configurations per
policy (through Ray Tune's ``OptunaSearch``, the seeds of one configuration averaged by Tune's ``Repeater``).
Every configuration runs with every seed. Trials report each periodic evaluation (``eval_return`` at
``timesteps``) to Tune from an evaluation hook, so the ASHA scheduler can stop bad trials early.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ltc_rl.errors import check_output_name, ConfigError, MissingFileError
from ltc_rl.runs.files import atomic_write
from ltc_rl.runs.layout import EVALUATIONS_FILE
from ltc_rl.runs.run_files import latest_checkpoint
from ltc_rl.runs.run_folder import RunFolder
from ltc_rl.runs.summary import find_runs, is_finished, write_search_table, write_summary
from ltc_rl.runs.config import (POLICIES, RunConfig, check_hyperparams, parse_overrides, read_yaml_file,
                               resolve_config)
from ltc_rl.runs.training import EnvFactory, resume, sb3_make_vec, train, validate

__all__ = ["SweepSettings", "SweepResult", "require_ray", "load_search_space", "trial_name", "run_trial",
           "check_sweep", "run_sweep", "SEARCH_ALGORITHMS", "SCHEDULERS", "METRIC", "TIME_ATTR"]

SEARCH_ALGORITHMS = ("auto", "grid", "random", "optuna")
SCHEDULERS = ("auto", "asha", "fifo")
DISTRIBUTIONS = ("uniform", "loguniform", "randint")
METRIC, TIME_ATTR = "eval_return", "timesteps"
SETTINGS_FILE = "sweep.yaml"
_INSTALL_HINT = "pip install ltc_rl[distributed]"


def require_ray() -> None:
    """Raises :class:`ConfigError` (one line naming the extra to install) when Ray Tune is missing."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"sweeps need Ray Tune, which is not installed ({exc}); install it with: "
                          f"{_INSTALL_HINT}") from None


# ---------------------------------------------------------------------------------------------- search space
def _flatten_space(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, spec in mapping.items():
        if isinstance(spec, Mapping) and not (len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS):
            flat.update(_flatten_space(spec, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = spec
    return flat


def load_search_space(path: str | Path) -> dict[str, Any]:
    """A search-space YAML file as ``{dotted name: list of values | {distribution: [low, high]}}``."""
    document = read_yaml_file(path, "search space file")
    if not isinstance(document, Mapping) or not document:
        raise ConfigError(f"search space file {path} must map hyperparameter names to values, e.g. "
                          "'learning_rate: {loguniform: [1.0e-4, 1.0e-3]}' or 'n_steps: [256, 512]'.")
    return _flatten_space(document)


def _candidates(name: str, spec: Any) -> list[Any]:
    """The values to check for one entry of a search space (all listed values, or a range's ends)."""
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"search space entry {name!r} is an empty list; give at least one value.")
        return spec
    if isinstance(spec, Mapping) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS:
        (kind, bounds), = spec.items()
        if (not isinstance(bounds, list) or len(bounds) != 2 or not all(isinstance(b, (int, float)) for b in bounds)
                or not bounds[0] < bounds[1] or (kind == "loguniform" and bounds[0] <= 0)
                or (kind == "randint" and not all(isinstance(b, int) for b in bounds))):
            raise ConfigError(f"search space entry {name}: {{{kind}: {bounds!r}}} needs [low, high] with low < high"
                              + (" and low > 0" if kind == "loguniform" else "")
                              + (" (integers)" if kind == "randint" else "") + ".")
        return list(bounds)
    raise ConfigError(f"search space entry {name!r}: {spec!r} is neither a list of values nor one of "
                      f"{{{', '.join(f'{d}: [low, high]' for d in DISTRIBUTIONS)}}}.")


def _json(value: Any) -> str:
    """JSON text of a hyperparameter value (numpy scalars from a search algorithm as plain numbers)."""
    return json.dumps(value, sort_keys=True, default=lambda o: o.item() if hasattr(o, "item") else str(o))


def _override(name: str, value: Any) -> str:
    """``NAME=VALUE`` as ``scripts/train.py --hp`` takes it (JSON values read back as YAML)."""
    return f"{name}={_json(value)}"


def _tune_domain(spec: Any, search_alg: str) -> Any:
    from ray import tune

    if isinstance(spec, list):
        return tune.grid_search(spec) if search_alg == "grid" else tune.choice(spec)
    (kind, (low, high)), = spec.items()
    return {"uniform": lambda: tune.uniform(low, high), "loguniform": lambda: tune.loguniform(low, high),
            "randint": lambda: tune.randint(low, high + 1)}[kind]()


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class SweepSettings:
    """What a sweep trains (saved as ``sweep.yaml``; a rerun must match it to resume).

    ``overrides`` are fixed ``NAME=VALUE`` hyperparameters for every trial (as ``train.py --hp``);
    ``search_space`` maps names to lists or distributions (see :func:`load_search_space`);
    ``samples``: configurations drawn by ``random`` / ``optuna`` search; ``scheduler``: ``asha``
    (early stopping on the evaluation return), ``fifo`` (none) or ``auto`` (ASHA with a search space,
    none for a plain seed sweep, whose statistics would be biased by stopping seeds);
    ``grace_period``: steps before ASHA may stop a trial (default a quarter of the training steps).
    """

    env_id: str
    policies: tuple[str, ...] = ("ltc",)
    seeds: tuple[int, ...] = (0,)
    total_timesteps: int | None = None
    overrides: tuple[str, ...] = ()
    search_space: Mapping[str, Any] = field(default_factory=dict)
    search_alg: str = "auto"
    samples: int = 1
    scheduler: str = "auto"
    grace_period: int | None = None
    search_seed: int = 0
    device: str = "auto"
    env_options: Mapping[str, Any] = field(default_factory=dict)
    vec_env: str = "dummy"

    def __post_init__(self) -> None:
        if not self.policies:
            raise ConfigError("a sweep needs at least one policy (e.g. --policies ltc,lstm).")
        for policy in self.policies:
            if policy not in POLICIES:
                raise ConfigError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct and at least one, got {list(self.seeds)}.")
        if self.search_alg not in SEARCH_ALGORITHMS:
            raise ConfigError(f"unknown search algorithm {self.search_alg!r}; use one of {', '.join(SEARCH_ALGORITHMS)}.")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"unknown scheduler {self.scheduler!r}; use one of {', '.join(SCHEDULERS)}.")
        if not isinstance(self.samples, int) or self.samples < 1:
            raise ConfigError(f"samples must be an integer >= 1, got {self.samples!r}.")
        if self.samples > 1 and self.resolved_search_alg() in ("none", "grid"):
            raise ConfigError("samples > 1 draws random or Optuna configurations; it needs a search space with "
                              "--search-alg random or optuna (a grid tries every combination once).")
        if self.grace_period is not None and self.grace_period < 1:
            raise ConfigError(f"grace_period must be a number of steps >= 1, got {self.grace_period!r}.")
        for name, spec in self.search_space.items():
            _candidates(name, spec)
            if self.resolved_search_alg() == "grid" and not isinstance(spec, list):
                raise ConfigError(f"grid search takes lists of values; search space entry {name}: {spec} is a "
                                  "distribution (use --search-alg random or optuna).")

    def resolved_search_alg(self) -> str:
        """``none`` (seeds only), ``grid``, ``random`` or ``optuna``."""
        if not self.search_space:
            return "none"
        if self.search_alg != "auto":
            return self.search_alg
        return "grid" if all(isinstance(spec, list) for spec in self.search_space.values()) else "random"

    def resolved_scheduler(self) -> str:
        if self.scheduler != "auto":
            return self.scheduler
        return "fifo" if self.resolved_search_alg() == "none" else "asha"

    def trial_count(self) -> int:
        """Trials of the whole sweep: policies x seeds x configurations."""
        if self.resolved_search_alg() == "grid":
            configurations = math.prod(len(spec) for spec in self.search_space.values())
        else:
            configurations = self.samples
        return len(self.policies) * len(self.seeds) * configurations

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document.update(policies=list(self.policies), seeds=list(self.seeds), overrides=list(self.overrides),
                        search_space=dict(self.search_space), env_options=dict(self.env_options))
        return document

    def resolve(self, policy: str, seed: int, sampled: Mapping[str, Any] | None = None,
                env_ids: Sequence[str] | None = None) -> RunConfig:
        """The :class:`RunConfig` of one trial (fixed overrides, then the sampled hyperparameters)."""
        items = [*self.overrides, *(_override(name, value) for name, value in (sampled or {}).items())]
        return resolve_config(self.env_id, policy, self.total_timesteps, None, seed, self.device,
                              parse_overrides(items), env_options=dict(self.env_options), vec_env=self.vec_env,
                              env_ids=env_ids)


def trial_name(env_id: str, policy: str, seed: int, sampled: Mapping[str, Any] | None = None) -> str:
    """Run-folder name of a trial: ``train.py``'s default name, plus a hash of the sampled hyperparameters."""
    name = f"{env_id}_{policy}_seed{seed}"
    if sampled:
        name += "_" + hashlib.sha1(_json(dict(sampled)).encode()).hexdigest()[:8]
    return name


# ---------------------------------------------------------------------------------------------- one trial
def _metrics(history: Mapping[str, np.ndarray], run_dir: Path, finished: bool) -> dict[str, Any]:
    results = np.asarray(history["results"][-1], dtype=float)
    return {TIME_ATTR: int(history["timesteps"][-1]), METRIC: float(results.mean()),
            "eval_return_std": float(results.std()), "run_dir": str(run_dir), "finished": finished}


def run_trial(trial: Mapping[str, Any], settings: SweepSettings, runs_dir: str | Path,
              report: Callable[[dict[str, Any]], None], make_env: EnvFactory = sb3_make_vec,
              env_ids: Sequence[str] | None = None) -> Path:
    """Train one trial (``{"policy", "seed", "hyperparams"}``) into its run folder under ``runs_dir``.

    ``report(metrics)`` receives every periodic evaluation (``timesteps``, ``eval_return``, ...) while
    training and, once the run folder is complete, the final one with ``finished=True``. A finished run
    folder is not trained again; one with a checkpoint is resumed; one without is started afresh.
    """
    policy, seed = str(trial["policy"]), int(trial["seed"])
    sampled = dict(trial.get("hyperparams") or {})
    run_dir = Path(runs_dir) / trial_name(settings.env_id, policy, seed, sampled)
    if not is_finished(run_dir):
        if latest_checkpoint(run_dir / "checkpoints") is not None:
            total = RunFolder(run_dir).config.total_timesteps  # type: ignore[union-attr]
            hook = _periodic_reporter(report, run_dir, total)
            resume(run_dir, progress_bar=False, argv=["scripts/train.py", "--resume", str(run_dir)],
                   on_evaluation=hook, make_env=make_env)
        else:
            if run_dir.exists():  # started, but killed before its first checkpoint: nothing to continue
                shutil.rmtree(run_dir)
            config = settings.resolve(policy, seed, sampled, env_ids)
            hook = _periodic_reporter(report, run_dir, config.total_timesteps)
            train(config, run_dir, progress_bar=False, argv=_train_command(settings, config, sampled, run_dir),
                  on_evaluation=hook, make_env=make_env)
    with np.load(run_dir / EVALUATIONS_FILE) as saved:
        report(_metrics({"timesteps": saved["timesteps"], "results": saved["results"]}, run_dir, True))
    return run_dir


def _periodic_reporter(report: Callable[[dict[str, Any]], None], run_dir: Path,
                       total_timesteps: int) -> Callable[[Mapping[str, np.ndarray]], None]:
    """Reports evaluations before the last one: the final result is reported once the run folder is complete,
    so a scheduler that stops the trial at that report cannot interrupt the final saves."""
    def hook(history: Mapping[str, np.ndarray]) -> None:
        if int(history["timesteps"][-1]) < total_timesteps:
            report(_metrics(history, run_dir, False))
    return hook


def _train_command(settings: SweepSettings, config: RunConfig, sampled: Mapping[str, Any], run_dir: Path) -> list[str]:
    """The equivalent ``scripts/train.py`` command, recorded in the trial's ``config.yaml``."""
    command = ["scripts/train.py", "--env", config.env_id, "--policy", config.policy, "--seed", str(config.seed),
               "--total-timesteps", str(config.total_timesteps), "--device", settings.device]
    for item in [*settings.overrides, *(_override(name, value) for name, value in sampled.items())]:
        command += ["--hp", item]
    for name, value in settings.env_options.items():
        if value not in (None, False, 0, 0.0):
            flag = "--" + name.replace("_", "-")
            command += [flag] if value is True else [flag, ",".join(map(str, value)) if isinstance(value, list)
                                                     else str(value)]
    if settings.vec_env != "dummy":
        command += ["--vec-env", settings.vec_env]
    return [*command, "--output", str(run_dir)]


def _tune_trial(config: dict[str, Any], settings: SweepSettings, runs_dir: str, make_env: EnvFactory,
                env_ids: Sequence[str] | None) -> None:
    """The Ray Tune trainable: one trial, reporting through ``tune.report``."""
    from ray import tune
    from ray.tune.search.repeater import TRIAL_INDEX

    trial = dict(config)
    if TRIAL_INDEX in trial:  # Optuna search: Tune's Repeater numbers the seeds of one configuration
        trial["seed"] = settings.seeds[int(trial.pop(TRIAL_INDEX))]
    run_trial(trial, settings, runs_dir, tune.report, make_env, env_ids)


# ---------------------------------------------------------------------------------------------- the sweep
@dataclass
class SweepResult:
    """What a sweep left: its folder, its trials by outcome, the errors and the summary files.

    ``finished``: trained all their steps; ``stopped``: stopped early by the scheduler; ``interrupted``:
    not done when the sweep was interrupted (rerun it to resume them); ``errors``: one line per failed trial.
    """

    output: Path
    trials: int
    finished: int
    interrupted: int
    errors: list[str]
    summary: dict[str, Path]

    @property
    def stopped(self) -> int:
        return self.trials - self.finished - self.interrupted - len(self.errors)


def check_sweep(settings: SweepSettings, make_env: EnvFactory = sb3_make_vec,
                env_ids: Sequence[str] | None = None) -> int:
    """Validates every policy's configuration (a dry build, as ``train.py`` does) and the search-space names
    and values for each policy; returns the most steps of any policy's run. Raises :class:`ConfigError`.

    The dry build also builds the native LTC kernel when a policy uses it: once, here in the driver, so that
    the trials on this machine load it from the cache instead of each waiting on a build.
    """
    longest = 0
    for policy in settings.policies:
        config = settings.resolve(policy, settings.seeds[0], env_ids=env_ids)
        validate(config, make_env)
        longest = max(longest, config.total_timesteps)
        for name, spec in settings.search_space.items():
            for value in _candidates(name, spec):
                try:
                    check_hyperparams(parse_overrides([_override(name, value)]), config.algorithm,
                                      origin="search space entry")
                except ConfigError as exc:
                    raise ConfigError(f"{exc} (policy {policy})") from None
    return longest


def _experiments(settings: SweepSettings,
                 max_concurrent: int | None) -> list[tuple[str, dict[str, Any], Any, int, int]]:
    """``(name, param_space, search algorithm, num_samples, trials)`` of each Tune experiment of the sweep."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Repeater

    search_alg = settings.resolved_search_alg()
    space = {name: _tune_domain(spec, search_alg) for name, spec in settings.search_space.items()}
    if search_alg != "optuna":  # policies x seeds x configurations; a configuration is shared by all of them
        param_space = {"policy": tune.grid_search(list(settings.policies)),
                       "seed": tune.grid_search(list(settings.seeds)), "hyperparams": space}
        generator = BasicVariantGenerator(constant_grid_search=True, random_state=settings.search_seed,
                                          max_concurrent=max_concurrent or 0)
        return [("sweep", param_space, generator, settings.samples if search_alg == "random" else 1,
                 settings.trial_count())]
    try:
        from ray.tune.search.optuna import OptunaSearch
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("--search-alg optuna needs optuna: pip install optuna (or use --search-alg random).") from None
    experiments = []
    for policy in settings.policies:  # Optuna proposes configurations per policy; Repeater runs each with every seed
        searcher = Repeater(OptunaSearch(metric=METRIC, mode="max", seed=settings.search_seed),
                            repeat=len(settings.seeds))
        if max_concurrent:
            searcher = ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
        experiments.append((f"optuna_{policy}", {"policy": policy, "hyperparams": space}, searcher,
                            settings.samples * len(settings.seeds), settings.samples * len(settings.seeds)))
    return experiments


def _check_same_sweep(output: Path, settings: SweepSettings, factory_name: str) -> None:
    document = {**settings.to_dict(), "make_env": factory_name}
    path = output / SETTINGS_FILE
    if path.is_file():
        saved = yaml.safe_load(path.read_text()) or {}
        differing = sorted(k for k in set(saved) | set(document) if saved.get(k) != document.get(k))
        if differing:
            raise ConfigError(f"{output} holds a different sweep (differs in {', '.join(differing)}); repeat its "
                              f"command to resume it, or choose another --output.")
    else:
        output.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(document, sort_keys=False)
        atomic_write(path, lambda handle: handle.write(text.encode()))


def searched_names(folder: str | Path) -> list[str]:
    """The hyperparameters the sweep in ``folder`` searched (its ``sweep.yaml``); empty for a seed sweep or a
    folder that is not a sweep's. Raises :class:`ConfigError` when that file is not readable YAML."""
    path = Path(folder) / SETTINGS_FILE
    if not path.is_file():
        return []
    try:
        saved = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} is not a readable sweep settings file ({type(exc).__name__}); "
                          "summarize the run folders under runs/ instead.") from exc
    space = saved.get("search_space") if isinstance(saved, dict) else None
    return [str(name) for name in space] if isinstance(space, dict) else []


def search_table(roots: Sequence[str | Path], names: Sequence[str], out_dir: str | Path) -> dict[str, Path]:
    """Writes the ranked trials found at or below ``roots`` with their values of ``names`` (``search.md``,
    ``search.csv``, ``search_curves.png``) into ``out_dir``; returns their paths under ``search_*`` keys, none before any evaluation."""
    try:
        paths = write_search_table(find_runs(*roots), names, out_dir)
    except MissingFileError:
        return {}
    return {f"search_{key}": path for key, path in paths.items()}


def run_sweep(settings: SweepSettings, output: str | Path, *, address: str | None = None, num_cpus: int | None = None,
              max_concurrent: int | None = None, cpus_per_trial: float = 1.0, make_env: EnvFactory = sb3_make_vec,
              env_ids: Sequence[str] | None = None, verbose: int = 1) -> SweepResult:
    """Runs (or resumes) the sweep ``settings`` into the folder ``output`` and writes the summary there.

    ``address``: None starts a local Ray instance (``num_cpus`` cores, default all); ``"auto"`` or
    ``"ray://host:port"`` joins an existing cluster, whose nodes must all see ``output`` (a shared
    filesystem) and have ltc_rl installed. ``max_concurrent`` caps the trials running at once,
    ``cpus_per_trial`` is the CPUs Tune reserves for each (raise it with ``vec_env="subproc"``).
    ``make_env`` / ``env_ids``: the env factory and its ids, as for :func:`ltc_rl.runs.training.train`.
    Raises :class:`ConfigError` for bad settings (before Ray starts) or a missing Ray installation.
    """
    require_ray()
    if address is not None and num_cpus is not None:
        raise ConfigError("num_cpus sizes a local Ray instance; an existing cluster (--address) has its own.")
    if max_concurrent is not None and max_concurrent < 1:
        raise ConfigError(f"max_concurrent must be >= 1, got {max_concurrent!r}.")
    if not cpus_per_trial > 0:
        raise ConfigError(f"cpus_per_trial must be > 0, got {cpus_per_trial!r}.")
    longest = check_sweep(settings, make_env, env_ids)
    experiments = _experiments(settings, max_concurrent)
    check_output_name(output, "--output")
    output = Path(output).resolve()
    _check_same_sweep(output, settings, f"{make_env.__module__}.{make_env.__qualname__}")
    runs_dir = output / "runs"

    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=verbose > 0)
    trainable = tune.with_resources(tune.with_parameters(_tune_trial, settings=settings, runs_dir=str(runs_dir),
                                                         make_env=make_env, env_ids=env_ids), {"cpu": cpus_per_trial})
    stopped, errors = 0, []
    try:
        for name, param_space, search_alg, num_samples, planned in experiments:
            path = output / "tune" / name
            if tune.Tuner.can_restore(path):
                tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True)
            else:
                scheduler = None
                if settings.resolved_scheduler() == "asha":
                    grace = settings.grace_period or max(1, longest // 4)
                    scheduler = ASHAScheduler(time_attr=TIME_ATTR, max_t=longest, grace_period=min(grace, longest),
                                              reduction_factor=3)
                tuner = tune.Tuner(
                    trainable, param_space=param_space,
                    tune_config=tune.TuneConfig(metric=METRIC, mode="max", search_alg=search_alg, scheduler=scheduler,
                                                num_samples=num_samples),
                    run_config=tune.RunConfig(name=name, storage_path=str(output / "tune"), verbose=verbose))
            grid = tuner.fit()
            errors += [f"{result.path}: {str(result.error).strip().splitlines()[-1]}" for result in grid
                       if result.error is not None]
            # The saved state tells an interruption (Ctrl+C) apart: Tune saves the trials it cut off as
            # pending, and has not created the ones it never started; in memory both look done.
            saved = tune.ExperimentAnalysis(str(path)).trials
            stopped += sum(1 for trial in saved if trial.status == "TERMINATED"
                           and not (trial.last_result.get("run_dir") and is_finished(trial.last_result["run_dir"])))
            if len(saved) < planned or any(trial.status not in ("TERMINATED", "ERROR") for trial in saved):
                break  # rerunning the same sweep resumes it
    finally:
        if started:
            ray.shutdown()
    finished = sum(1 for run in runs_dir.iterdir() if is_finished(run)) if runs_dir.is_dir() else 0
    summary = write_summary(find_runs(runs_dir), output) if finished else {}
    if settings.search_space:
        summary.update(search_table([runs_dir], list(settings.search_space), output))
    trials = settings.trial_count()
    return SweepResult(output, trials, finished, trials - finished - stopped - len(errors), errors, summary)

