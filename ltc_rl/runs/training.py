"""The training pipeline behind ``scripts/train.py``: validated hyperparameters in, a complete run folder out.

The configuration (:mod:`ltc_rl.runs.config`: shipped hyperparameters < ``--hp`` overrides < explicit options)
is checked, including a dry construction of the model (:func:`validate`), before the run folder
(:mod:`ltc_rl.runs.layout`) is created or a single step is trained; problems raise :class:`ConfigError`
with one clear line.

All files are written atomically, none of them needs unpickling to load (:mod:`ltc_rl.rl.safe_files`), and no
model holding NaN/inf is written. :func:`resume` continues a run from its newest readable checkpoint (or, for
a run stopped before its first one, starts it again from its ``config.yaml``) (policy, optimiser, VecNormalize statistics, timestep counter and so the
learning-rate schedule position, random generator states); Monitor CSVs and the evaluation history are cut
back to the checkpoint, so the logs continue. Ctrl-C / SIGTERM stop after the current step with a checkpoint
(:class:`~ltc_rl.errors.TrainingInterrupted`); NaN/inf from an environment or in the model stop training
with a one-line error (:mod:`ltc_rl.runs.guards`, :mod:`ltc_rl.rl.guards`).

Environments come from an *env factory* with the signature of ``envs.make_vec``:
``make_env(env_id, n_envs, seed, vec_env, monitor_dir, monitor_kwargs, **env_options)`` returning a
VecEnv of Monitor-wrapped copies. The default, :func:`sb3_make_vec`, is stable-baselines3's
``make_vec_env`` and takes no env options; ``scripts/train.py`` passes ``envs.make_vec`` (observation
noise, irregular sampling, the NoVel tasks). The env options and the vectorisation are recorded in
``config.yaml``, so :func:`resume` and evaluation rebuild the same environment.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shlex
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger, configure, make_output_format
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from ltc_rl.devices import check_device
from ltc_rl.errors import (ConfigError, DivergenceError, LtcRlWarning, ModelFileError, TrainingInterrupted,
                           check_output_name, one_line)
from ltc_rl.kernels import native
from ltc_rl.reporting import counted
from ltc_rl.env_api import vec_env_class
from ltc_rl.runs.config import ALGORITHMS, RunConfig, hyperparams_notice
from ltc_rl.runs.callbacks import (RunCheckpointCallback, RunEvaluationCallback, ProgressBar, save_model,
                                   save_vecnormalize)
from ltc_rl.runs.files import atomic_write, remove_stale_temporaries
from ltc_rl.runs.layout import (BEST_FOLDER, CHECKPOINT_FOLDER, CONFIG_FILE, LEARNING_CURVE_FILE, LOGS_FOLDER,
                                MODEL_FILE, MONITOR_FOLDER, VECNORMALIZE_FILE, session_log_folder)
from ltc_rl.runs.run_files import latest_checkpoint, read_training_state
from ltc_rl.runs.run_folder import RunFolder
from ltc_rl.rl.guards import DivergenceCallback
from ltc_rl.runs.guards import StopRequest, VecCheckFinite
from ltc_rl.runs.run_state import restore_training_state, rewind_monitor_files
from ltc_rl.runs.serialization import check_spaces, inspect_model_file, load_model, load_vecnormalize
from ltc_rl.runs.curves import plot_learning_curve
from ltc_rl.rl.elapsed_time import DEFAULT_ELAPSED_TIME, nominal_period
from ltc_rl.startup_messages import show_startup_messages_once

__all__ = ["SessionOptions", "TrainResult", "EnvFactory", "sb3_make_vec", "build_model", "validate", "train",
           "resume"]


_VERSIONED_PACKAGES = ("ltc_rl", "torch", "stable_baselines3", "sb3_contrib", "gymnasium", "mujoco", "numpy")


# ---------------------------------------------------------------------------------------------- building
#: ``make_env(env_id, n_envs, seed, vec_env, monitor_dir, monitor_kwargs, **env_options) -> VecEnv``.
EnvFactory = Callable[..., VecEnv]


def sb3_make_vec(env_id: str, n_envs: int = 1, seed: int | None = None, vec_env: str = "dummy",
                 monitor_dir: str | None = None, monitor_kwargs: dict[str, Any] | None = None,
                 **env_options: Any) -> VecEnv:
    """The default env factory: stable-baselines3's ``make_vec_env`` (plain gymnasium tasks, no env options)."""
    if env_options:
        raise ConfigError(f"environment options {sorted(env_options)} need an env factory that supports them; "
                          "pass make_env=envs.make_vec (scripts/train.py does).")
    show_startup_messages_once()
    return make_vec_env(env_id, n_envs=n_envs, seed=seed, vec_env_cls=vec_env_class(vec_env), monitor_dir=monitor_dir,
                        monitor_kwargs=monitor_kwargs)


def _make_training_env(config: RunConfig, make_env: EnvFactory, seed: int, monitor_dir: Path | None,
                       append: bool = False) -> VecEnv:
    """``n_envs`` Monitor-wrapped copies; ``append`` continues existing Monitor CSVs (resumed runs)."""
    return make_env(config.env_id, n_envs=config.n_envs, seed=seed, vec_env=config.vec_env,
                    monitor_dir=None if monitor_dir is None else str(monitor_dir),
                    monitor_kwargs={"override_existing": not append}, **config.env_options)


def build_model(config: RunConfig, env: VecEnv) -> BaseAlgorithm:
    """A fresh model of ``config`` on ``env``."""
    algorithm = ALGORITHMS[config.algorithm]
    return algorithm(config.policy_class, env, seed=config.seed, device=config.device, verbose=0,
                     **config.algorithm_kwargs())


def validate(config: RunConfig, make_env: EnvFactory = sb3_make_vec,
             trained_agent: str | Path | None = None) -> RunConfig:
    """Build the environments and the model once (and load ``trained_agent`` into it), so that any remaining
    problem surfaces before training; returns the validated copy of ``config`` to train (``config`` itself is
    left as it is).

    The copy's ``time_unit`` (when ``config`` leaves it unset) is the environment's nominal control period
    (:func:`~ltc_rl.rl.elapsed_time.nominal_period`), and builds (or loads) the native LTC kernel when the
    policy uses it: a first build is announced here, before any progress bar, and a sweep's driver builds it
    once before its trials start.
    """
    try:
        env = _make_training_env(config, make_env, config.seed, None)
        env.reset()
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to create the task is a configuration error
        raise ConfigError(f"cannot create environment {config.env_id!r} with options {config.env_options}: "
                          f"{exc}") from exc
    if config.time_unit is None:
        config = replace(config, time_unit=nominal_period(env) or DEFAULT_ELAPSED_TIME)
    try:
        try:
            model = build_model(config, env)
        except (ValueError, TypeError, AssertionError, KeyError, RuntimeError) as exc:
            raise ConfigError(f"invalid hyperparameters for --policy {config.policy} on {config.env_id}: {exc}") \
                from exc
        if trained_agent is not None:
            _start_from(model, Path(trained_agent))
    finally:
        env.close()
    native.ensure_for(model.policy)
    return config


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _write_config(run_dir: Path, config: RunConfig, history: list[dict[str, Any]]) -> None:
    document = {**config.to_dict(), "versions": _versions(), "sessions": history}
    text = yaml.safe_dump(document, sort_keys=False)
    atomic_write(run_dir / CONFIG_FILE, lambda handle: handle.write(text.encode()))


def _git_commit() -> str | None:
    """The commit of the checkout this package runs from (``+dirty`` with uncommitted changes), None outside git."""
    folder = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _session_record(kind: str, argv: Sequence[str] | None, device: str) -> dict[str, Any]:
    """One session of ``config.yaml``: the command, the device it really ran on (``auto`` resolved), the code."""
    command = " ".join(shlex.quote(a) for a in (sys.argv if argv is None else argv))
    return {"kind": kind, "command": command, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "device": str(get_device(device)), "git_commit": _git_commit(), "versions": _versions()}


# ---------------------------------------------------------------------------------------------- running
#: Called with the evaluation history (timesteps, results, ep_lengths arrays) after every evaluation.
EvaluationHook = Callable[[dict[str, np.ndarray]], None]


@dataclass(frozen=True)
class SessionOptions:
    """How a training session reports and where it starts from (not part of the run's configuration).

    Attributes:
        verbose: 0 silent, 1 a start banner, evaluation lines and a closing line, 2 also SB3's log table.
        log_interval: rollouts between two log lines / TensorBoard points of SB3's logger.
        tensorboard_log: a folder for TensorBoard events (``<folder>/<run name>/session_<k>``) besides the run's
            ``logs/`` CSV; None: events in ``logs/session_<k>/``.
        trained_agent: a model zip to start from (a fresh run with a new configuration): its parameters are
            loaded into the new model, and the ``vecnormalize.npz`` beside it, if any, into the environment.
    """

    verbose: int = 0
    log_interval: int = 1
    tensorboard_log: str | None = None
    trained_agent: str | None = None


@dataclass
class TrainResult:
    run_dir: Path
    timesteps: int
    final_mean_reward: float
    best_mean_reward: float


def train(config: RunConfig, output: str | Path, progress_bar: bool = True,
          argv: Sequence[str] | None = None, on_evaluation: EvaluationHook | None = None,
          make_env: EnvFactory = sb3_make_vec, options: SessionOptions | None = None) -> TrainResult:
    """Validate ``config``, create the run folder ``output`` (which must not exist) and train.

    ``make_env``: the env factory (signature of ``envs.make_vec``, see the module docstring).
    ``options``: console, logging and starting point (:class:`SessionOptions`).

    ``on_evaluation(history)`` runs after every evaluation (e.g. to report to a hyperparameter search).
    """
    check_output_name(output, "--output")
    run_dir = Path(output)
    if run_dir.exists():
        raise ConfigError(f"output folder {run_dir} already exists; pass --resume {run_dir} to continue it, "
                          "or choose another --output.")
    options = options or SessionOptions()
    if options.trained_agent is not None and not Path(options.trained_agent).is_file():
        raise ConfigError(f"--trained-agent {options.trained_agent} is not a model file; pass a model zip (e.g. "
                          "RUN/model.zip or RUN/best/model.zip).")
    config = validate(config, make_env, options.trained_agent)
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder {run_dir} ({exc.strerror or exc}); choose another "
                          "--output.") from exc
    history = [_session_record("train", argv, config.device)]
    _write_config(run_dir, config, history)  # at once: a run killed before its first checkpoint can be resumed
    return _run(config, run_dir, None, progress_bar, history, on_evaluation=on_evaluation, make_env=make_env,
                options=options)


def resume(run_dir: str | Path, total_timesteps: int | None = None, device: str | None = None,
           progress_bar: bool = True, argv: Sequence[str] | None = None,
           on_evaluation: EvaluationHook | None = None, make_env: EnvFactory = sb3_make_vec,
           trust_pickle: bool = False, options: SessionOptions | None = None) -> TrainResult:
    """Continue the run in ``run_dir`` from its newest checkpoint, up to ``total_timesteps`` (default: as configured).

    The environment is rebuilt by ``make_env`` with the env options recorded in ``config.yaml``. A run stopped
    before its first checkpoint starts again from step 0 with that configuration. Checkpoints of older
    versions (pickled statistics and state) need ``trust_pickle``. Nothing in the folder changes before the
    checkpoint has been loaded: a refused resume leaves it as it was.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); nothing to resume.")
    run = RunFolder(run_dir, trust_pickle)
    document, config = run.document, run.config
    checkpoint = run.latest_checkpoint()
    if total_timesteps is not None:
        if total_timesteps < 1:
            raise ConfigError(f"total_timesteps must be an integer >= 1, got {total_timesteps!r}.")
        config.total_timesteps = int(total_timesteps)
    if device is not None:
        config.device = check_device(device, allow_auto=True)
    state = None
    if checkpoint is None:
        config = validate(config, make_env)
        warnings.warn(f"{run_dir} has no checkpoint (the run stopped before its first one): starting it again from "
                      f"step 0 with its {CONFIG_FILE}", LtcRlWarning, stacklevel=2)
    else:
        if checkpoint[0] >= config.total_timesteps:
            raise ConfigError(f"{run_dir} already reached {checkpoint[0]} of {config.total_timesteps} steps; pass a "
                              "larger --total-timesteps to train further.")
        state = _check_checkpoint_fits(config, checkpoint, make_env, trust_pickle)
    history = list(document.get("sessions", [])) + [_session_record("resume", argv, config.device)]
    remove_stale_temporaries(run_dir)
    return _run(config, run_dir, checkpoint, progress_bar, history, on_evaluation=on_evaluation,
                make_env=make_env, state=state, trust_pickle=trust_pickle,
                options=options or SessionOptions())


#: How a ``SubprocVecEnv`` reports workers that are gone (a terminal's Ctrl-C reaches them too).
_WORKER_GONE = (EOFError, BrokenPipeError, ConnectionResetError)


def _check_checkpoint_fits(config: RunConfig, checkpoint: tuple[int, Path, Path | None], make_env: EnvFactory,
                           trust_pickle: bool) -> dict[str, Any] | None:
    """Load the checkpoint's model, statistics and training state once on the environment ``config`` describes
    (before resuming changes anything in the run folder); returns the training state."""
    try:
        env = _make_training_env(config, make_env, config.seed, None)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to create the task is a configuration error
        raise ConfigError(f"cannot create environment {config.env_id!r} with options {config.env_options}: "
                          f"{exc}") from exc
    try:
        data = inspect_model_file(checkpoint[1], trust_pickle)
        check_spaces(checkpoint[1], data["observation_space"], data["action_space"], env)
        if checkpoint[2] is not None:
            env = load_vecnormalize(checkpoint[2], env, trust_pickle)
        elif config.normalize_kwargs() is not None:
            raise ModelFileError(f"checkpoint {checkpoint[1]} lacks its VecNormalize statistics "
                                 f"({checkpoint[1].stem}_{VECNORMALIZE_FILE}); the policy needs them, so the run "
                                 "cannot be resumed from it.")
        load_model(checkpoint[1], env=env, device=config.device, algorithm=ALGORITHMS[config.algorithm],
                   trust_pickle=trust_pickle)
        return read_training_state(checkpoint[1], trust_pickle)
    finally:
        env.close()


def _logger(run_dir: Path, session: int, options: SessionOptions) -> Logger:
    """The session's SB3 logger: CSV (and TensorBoard unless elsewhere) in ``logs/session_<k>``, the console
    table with ``verbose >= 2``, TensorBoard events in ``options.tensorboard_log`` when given."""
    folder = session_log_folder(run_dir, session)
    if options.tensorboard_log is None:
        formats = ["csv", "tensorboard"] + (["stdout"] if options.verbose >= 2 else [])
        return configure(str(folder), formats)
    logger = configure(str(folder), ["csv"] + (["stdout"] if options.verbose >= 2 else []))
    events = Path(options.tensorboard_log) / run_dir.name / f"session_{session}"
    logger.output_formats.append(make_output_format("tensorboard", str(events)))
    return logger


def _start_from(model: BaseAlgorithm, path: Path) -> None:
    """Loads a trained model's parameters (and the ``vecnormalize.npz`` beside it) into the fresh ``model``."""
    trained = load_model(path, env=model.get_env(), device=model.device)
    try:
        model.policy.load_state_dict(trained.policy.state_dict())
    except RuntimeError as exc:
        raise ConfigError(f"--trained-agent {path} has another network shape than the new configuration "
                          f"({one_line(exc)[:200]}); keep the policy and its policy_kwargs.") from exc
    statistics = path.parent / VECNORMALIZE_FILE
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is not None and statistics.is_file():
        loaded = load_vecnormalize(statistics, model.get_env())
        vec_normalize.obs_rms, vec_normalize.ret_rms = loaded.obs_rms, loaded.ret_rms


def _banner(config: RunConfig, run_dir: Path, model: BaseAlgorithm, start_steps: int,
            options: SessionOptions) -> str:
    """What a run is about to do, before its first step (``verbose >= 1``)."""
    parameters = sum(p.numel() for p in model.policy.parameters())
    schedule = [f"evaluation every {config.eval_freq:,} steps ({counted(config.n_eval_episodes, 'episode')})"
                if config.eval_freq else "no periodic evaluation",
                f"checkpoints every {config.checkpoint_freq:,} steps" if config.checkpoint_freq
                else "a checkpoint at the end only"]
    events = (Path(options.tensorboard_log) if options.tensorboard_log else run_dir / LOGS_FOLDER)
    start = f", from {options.trained_agent}" if options.trained_agent else ""
    notice = hyperparams_notice(config.algorithm, config.env_id)
    return "\n".join(([notice] if notice else []) + [
        f"run folder: {run_dir}  ({'resuming at step ' + format(start_steps, ',') if start_steps else 'new run'})",
        f"training {config.policy} ({config.policy_class}, {parameters:,} parameters{start}) on {config.env_id} "
        f"x {config.n_envs} ({config.vec_env}) for {config.total_timesteps:,} steps, device {model.device}",
        f"{'; '.join(schedule)}; a final evaluation at the end",
        f"curves: {run_dir / LEARNING_CURVE_FILE} (after each evaluation); TensorBoard: tensorboard --logdir {events}",
    ])


def _divergence_with_checkpoint(error: DivergenceError, folder: Path, trust_pickle: bool) -> DivergenceError:
    """``error`` naming the newest good checkpoint (readable, finite), which stays as it was."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped checkpoints are not news here
        try:
            newest = latest_checkpoint(folder, trust_pickle=trust_pickle)
        except (ModelFileError, OSError):
            newest = None
    kept = "No good checkpoint was written yet." if newest is None else \
        f"The last good checkpoint {newest[1]} ({newest[0]} steps) is kept."
    return DivergenceError(f"{one_line(error)} {kept}")


def _run(config: RunConfig, run_dir: Path, checkpoint: tuple[int, Path, Path | None] | None, progress_bar: bool,
         history: list[dict[str, Any]], on_evaluation: EvaluationHook | None = None,
         make_env: EnvFactory = sb3_make_vec, state: dict[str, Any] | None = None,
         trust_pickle: bool = False, options: SessionOptions = SessionOptions()) -> TrainResult:
    """Train ``config`` in ``run_dir`` from ``checkpoint`` (None: from scratch) and its training ``state``;
    ``history`` (the sessions, this one last) is written to ``config.yaml`` once the model is ready."""
    start_steps = 0 if checkpoint is None else checkpoint[0]
    if checkpoint is not None:  # episodes a killed run logged after the checkpoint are stepped through again
        rewind_monitor_files(run_dir / MONITOR_FOLDER, (state or {}).get("monitor_sizes", {}))
    env = VecCheckFinite(_make_training_env(config, make_env, config.seed + start_steps, run_dir / MONITOR_FOLDER,
                                            append=checkpoint is not None), "training environment", start_steps)
    normalize = config.normalize_kwargs()
    eval_env = VecCheckFinite(make_env(config.env_id, n_envs=min(config.n_eval_episodes, config.n_envs),
                                       seed=config.seed + 1_000_003 + start_steps, **config.env_options),
                              "evaluation environment")
    if normalize is not None:
        if checkpoint is not None and checkpoint[2] is not None:
            env = load_vecnormalize(checkpoint[2], env, trust_pickle)
        else:
            env = VecNormalize(env, **normalize)
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False, **{
            k: v for k, v in normalize.items() if k not in ("norm_reward", "clip_reward")})
    if checkpoint is None:
        model = build_model(config, env)
        if options.trained_agent is not None:
            _start_from(model, Path(options.trained_agent))
    else:
        model = load_model(checkpoint[1], env=env, device=config.device, algorithm=ALGORITHMS[config.algorithm],
                           trust_pickle=trust_pickle)
        restore_training_state(model, state, config.seed + start_steps)
    native.ensure_for(model.policy)  # a first kernel build is announced here, not under a silent progress bar
    _write_config(run_dir, config, history)
    model.set_logger(_logger(run_dir, len(history), options))

    title = f"{config.policy} on {config.env_id} (seed {config.seed})"
    curve = run_dir / LEARNING_CURVE_FILE
    checkpoints = RunCheckpointCallback(config.checkpoint_freq, run_dir / CHECKPOINT_FOLDER,
                                        monitor_dir=run_dir / MONITOR_FOLDER)

    def evaluated(history: dict[str, np.ndarray]) -> None:
        plot_learning_curve(curve, history, run_dir / MONITOR_FOLDER, title)
        if on_evaluation is not None:
            on_evaluation(history)

    bar = ProgressBar() if progress_bar else None
    evaluation = RunEvaluationCallback(eval_env, config.eval_freq, config.n_eval_episodes, run_dir,
                                       run_dir / BEST_FOLDER, on_evaluation=evaluated,
                                       verbose=int(options.verbose >= 1), status=None if bar is None else bar.status)
    if options.verbose >= 1:
        print(_banner(config, run_dir, model, start_steps, options), flush=True)
    try:
        with StopRequest() as stop:  # Ctrl-C / SIGTERM: stop after the current step, save a checkpoint, exit
            callbacks = CallbackList([DivergenceCallback(), stop.callback(), checkpoints, evaluation,
                                      *([bar] if bar is not None else [])])
            try:
                model.learn(config.total_timesteps - model.num_timesteps, callback=callbacks,
                            log_interval=options.log_interval, reset_num_timesteps=checkpoint is None,
                            tb_log_name=config.policy)
            except DivergenceError as error:
                raise _divergence_with_checkpoint(error, run_dir / CHECKPOINT_FOLDER, trust_pickle) from error
            except KeyboardInterrupt:  # a second signal, or Ctrl-C where no handler could be installed
                stop.signal_number = stop.signal_number or signal.SIGINT
            except _WORKER_GONE:  # subprocess environments killed by the same Ctrl-C; the model is intact
                if stop.signal_number is None:
                    raise
            if stop.signal_number is not None:
                with stop.deferred():
                    saved = checkpoints.save()
                raise TrainingInterrupted(f"{signal.Signals(stop.signal_number).name} at timestep "
                                          f"{model.num_timesteps}: checkpoint {saved} saved; continue with --resume "
                                          f"{run_dir}", stop.signal_number)
        final = evaluation.history["results"][-1] if evaluation.evaluated_now else None
        if final is None and options.verbose >= 1:
            print(f"evaluating the final model ({config.n_eval_episodes} episode"
                  f"{'s' if config.n_eval_episodes > 1 else ''}) ...", flush=True)
        final_mean = float(np.mean(final)) if final is not None else evaluation.evaluate()
        checkpoints.save()
        vec_normalize = model.get_vec_normalize_env()
        if vec_normalize is not None:
            save_vecnormalize(vec_normalize, run_dir / VECNORMALIZE_FILE)
        save_model(model, run_dir / MODEL_FILE)
        plot_learning_curve(curve, evaluation.history, run_dir / MONITOR_FOLDER, title)
    finally:
        for venv in (env, eval_env):
            try:
                venv.close()
            except _WORKER_GONE:  # nothing left to close
                pass
    return TrainResult(run_dir, model.num_timesteps, final_mean, evaluation.best_mean_reward)
