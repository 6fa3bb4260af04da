"""The training pipeline behind ``scripts/train.py``: validated hyperparameters in, a complete run folder out.

Hyperparameters come from YAML files shipped in ``ltc_rl/hyperparams/`` (rl-zoo style: one file per
algorithm, one entry per environment id merged over a ``default`` entry), then from command-line
overrides (``n_steps=256``, ``policy_kwargs.units=32``), then from explicit options (``n_envs``,
``total_timesteps``). Everything is checked, including a dry construction of the model, before the run
folder is created or a single step is trained; problems raise :class:`ConfigError` with one clear line.

A run folder holds::

    config.yaml              fully resolved configuration, seed, package versions, command
    model.zip                final model            vecnormalize.npz   its VecNormalize statistics
    best/                    best model by periodic evaluation (model.zip, vecnormalize.npz)
    checkpoints/             checkpoints at step 0 and periodically (ckpt_<steps>_steps.zip + statistics + state),
                             for --resume
    evaluations.npz          evaluation history     learning_curve.png evaluation + training returns
    monitor/                 Monitor CSVs of the training environments
    logs/session_<k>/        progress.csv and TensorBoard events of each (resumed) session

All files are written atomically, none of them needs unpickling to load (:mod:`ltc_rl.rl.safe_files`), and no
model holding NaN/inf is written. :func:`resume` continues a run from its newest readable checkpoint (or, for
a run stopped before its first one, starts it again from its ``config.yaml``) (policy, optimiser, VecNormalize statistics, timestep counter and so the
learning-rate schedule position, random generator states); Monitor CSVs and the evaluation history are cut
back to the checkpoint, so the logs continue. Ctrl-C / SIGTERM stop after the current step with a checkpoint
(:class:`~ltc_rl.errors.TrainingInterrupted`); NaN/inf from an environment or in the model stop training
with a one-line error (:mod:`ltc_rl.rl.guards`).

Environments come from an *env factory* with the signature of ``envs.make_vec``:
``make_env(env_id, n_envs, seed, vec_env, monitor_dir, monitor_kwargs, **env_options)`` returning a
VecEnv of Monitor-wrapped copies. The default, :func:`sb3_make_vec`, is stable-baselines3's
``make_vec_env`` and takes no env options; ``scripts/train.py`` passes ``envs.make_vec`` (observation
noise, irregular sampling, the NoVel tasks). The env options and the vectorisation are recorded in
``config.yaml``, so :func:`resume` and evaluation rebuild the same environment.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import platform
import shlex
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger, configure, make_output_format
from stable_baselines3.common.utils import LinearSchedule, get_device
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize
from torch import nn

from ltc_rl.devices import check_device
from ltc_rl.env_api import check_registered_env_id
from ltc_rl.errors import (ConfigError, DivergenceError, LtcRlWarning, ModelFileError, TrainingInterrupted,
                           check_output_name, one_line)
from ltc_rl.kernels import native
from ltc_rl.rl.callbacks import (MODEL_FILE, VECNORMALIZE_FILE, CheckpointCallback, EvalCallback, ProgressBar,
                                 atomic_write, latest_checkpoint, read_training_state, remove_stale_temporaries,
                                 save_model, save_vecnormalize)
from ltc_rl.rl.guards import DivergenceCallback, StopRequest, VecCheckFinite
from ltc_rl.rl.run_files import CHECKPOINT_FOLDER, CONFIG_FILE
from ltc_rl.rl.run_state import restore_training_state, rewind_monitor_files
from ltc_rl.rl.serialization import check_spaces, inspect_model_file, load_model, load_vecnormalize
from ltc_rl.rl.curves import plot_learning_curve
from ltc_rl.rl.elapsed_time import DEFAULT_ELAPSED_TIME, nominal_period
from ltc_rl.rl.ppo import RecurrentPPO
from ltc_rl.startup_messages import show_startup_messages_once

__all__ = ["ConfigError", "PolicyChoice", "POLICIES", "RunConfig", "SessionOptions", "TrainResult",
           "load_hyperparams", "read_yaml_file", "hyperparams_notice", "parse_frame_range", "parse_overrides",
           "resolve_config",
           "validate", "train", "resume", "CONFIG_FILE", "EnvFactory", "sb3_make_vec", "VEC_ENVS"]


@dataclass(frozen=True)
class PolicyChoice:
    """What a ``--policy`` name stands for."""

    algorithm: str
    policy_class: str
    policy_kwargs: Mapping[str, Any] = field(default_factory=dict)


POLICIES: dict[str, PolicyChoice] = {
    "ltc": PolicyChoice("RecurrentPPO", "MlpLtcPolicy"),
    "ncp": PolicyChoice("RecurrentPPO", "MlpLtcPolicy", {"wiring": "ncp"}),
    "cfc": PolicyChoice("RecurrentPPO", "MlpCfcPolicy"),
    "lstm": PolicyChoice("RecurrentPPO", "MlpLstmPolicy"),
    "gru": PolicyChoice("RecurrentPPO", "MlpGruPolicy"),
    "mlp": PolicyChoice("PPO", "MlpPolicy"),
}
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"RecurrentPPO": RecurrentPPO, "PPO": PPO}
HYPERPARAM_FILES = {"RecurrentPPO": "recurrent_ppo.yml", "PPO": "ppo.yml"}
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU,
                                           "silu": nn.SiLU, "gelu": nn.GELU}
_VERSIONED_PACKAGES = ("ltc_rl", "torch", "stable_baselines3", "sb3_contrib", "gymnasium", "mujoco", "numpy")

# ---------------------------------------------------------------------------------------------- schema
_Check = tuple[str, Callable[[Any], bool]]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_schedule(value: Any) -> bool:
    if isinstance(value, str) and value.startswith("lin_"):
        try:
            value = float(value[4:])
        except ValueError:
            return False
    return _is_number(value) and value > 0


def _is_layer_sizes(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(size) and size >= 1 for size in value)


def _is_net_arch(value: Any) -> bool:
    if isinstance(value, dict):
        return set(value) <= {"pi", "vf"} and all(_is_layer_sizes(sizes) for sizes in value.values())
    return _is_layer_sizes(value)


_POSITIVE_INT: _Check = ("an integer >= 1", lambda v: _is_int(v) and v >= 1)
_COUNT: _Check = ("an integer >= 0 (0 turns it off)", lambda v: _is_int(v) and v >= 0)
_SCHEDULE: _Check = ("a number > 0 or 'lin_<number>' (linear decay to 0)", _is_schedule)
_NON_NEGATIVE: _Check = ("a number >= 0", lambda v: _is_number(v) and v >= 0)
_POSITIVE: _Check = ("a number > 0", lambda v: _is_number(v) and v > 0)
_NUMBER: _Check = ("a finite number", _is_number)
_DISCOUNT: _Check = ("a number in (0, 1]", lambda v: _is_number(v) and 0 < v <= 1)
_BOOL: _Check = ("true or false", lambda v: isinstance(v, bool))
_OPTIONAL_BOOL: _Check = ("null, true or false", lambda v: v is None or isinstance(v, bool))
_NAME: _Check = ("a name", lambda v: isinstance(v, str) and bool(v))
_MAPPING: _Check = ("a mapping", lambda v: isinstance(v, dict))

#: Hyperparameters the pipeline understands: algorithm arguments and pipeline settings.
SCHEMA: dict[str, _Check] = {
    "learning_rate": _SCHEDULE,
    "n_steps": _POSITIVE_INT,
    "batch_size": _POSITIVE_INT,
    "n_epochs": _POSITIVE_INT,
    "gamma": _DISCOUNT,
    "gae_lambda": ("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1),
    "clip_range": _SCHEDULE,
    "clip_range_vf": ("null, a number > 0 or 'lin_<number>'", lambda v: v is None or _is_schedule(v)),
    "normalize_advantage": _BOOL,
    "ent_coef": _NON_NEGATIVE,
    "vf_coef": _NON_NEGATIVE,
    "max_grad_norm": _POSITIVE,
    "use_sde": _BOOL,
    "sde_sample_freq": ("an integer >= -1 (-1: only at rollout start)", lambda v: _is_int(v) and v >= -1),
    "target_kl": ("null or a number > 0", lambda v: v is None or (_is_number(v) and v > 0)),
    "sequence_length": _POSITIVE_INT,
    "n_envs": _POSITIVE_INT,
    "n_timesteps": _POSITIVE_INT,
    "normalize": ("true, false or a mapping of VecNormalize options",
                  lambda v: isinstance(v, bool) or isinstance(v, dict)),
    "eval_freq": _COUNT,
    "n_eval_episodes": _POSITIVE_INT,
    "checkpoint_freq": _COUNT,
    "policy_kwargs": _MAPPING,
}
#: VecNormalize options (``normalize: {...}``), as stable-baselines3 takes them.
NORMALIZE_SCHEMA: dict[str, _Check] = {
    "norm_obs": _BOOL,
    "norm_reward": _BOOL,
    "clip_obs": _POSITIVE,
    "clip_reward": _POSITIVE,
    "gamma": _DISCOUNT,
    "epsilon": _POSITIVE,
}
#: Policy keyword arguments whose values are checked here (names and values the policies reject otherwise
#: surface in the dry construction of :func:`validate`): SB3's ``ActorCriticPolicy`` and the recurrent policies.
POLICY_KWARGS_SCHEMA: dict[str, _Check] = {
    "net_arch": ("a list of layer sizes >= 1, or {pi: [...], vf: [...]}", _is_net_arch),
    "activation_fn": _NAME,
    "ortho_init": _BOOL,
    "log_std_init": _NUMBER,
    "full_std": _BOOL,
    "use_expln": _BOOL,
    "squash_output": _BOOL,
    "share_features_extractor": _BOOL,
    "normalize_images": _BOOL,
    "optimizer_kwargs": _MAPPING,
    "features_extractor_kwargs": _MAPPING,
    "cell": ("null or a cell name", lambda v: v is None or (isinstance(v, str) and bool(v))),
    "units": _POSITIVE_INT,
    "wiring": _NAME,
    "sparsity_level": ("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1),
    "wiring_seed": ("null or an integer >= 0", lambda v: v is None or (_is_int(v) and v >= 0)),
    "cell_kwargs": _MAPPING,
    "critic": _NAME,
    "controller": _OPTIONAL_BOOL,
    "time_unit": ("null or a number > 0", lambda v: v is None or (_is_number(v) and v > 0)),
    "n_layers": _POSITIVE_INT,
    # sb3-contrib's names for units, n_layers, cell_kwargs and critic (see ltc_rl.rl.policies)
    "lstm_hidden_size": _POSITIVE_INT,
    "n_lstm_layers": _POSITIVE_INT,
    "lstm_kwargs": _MAPPING,
    "enable_critic_lstm": _BOOL,
    "shared_lstm": _BOOL,
}
#: Settings that configure the pipeline rather than the algorithm.
PIPELINE_KEYS = ("n_envs", "n_timesteps", "normalize", "eval_freq", "n_eval_episodes", "checkpoint_freq")
#: Hyperparameters only some algorithms take.
ALGORITHM_ONLY = {"sequence_length": ("RecurrentPPO",)}


def _check_name(name: str, allowed: Sequence[str], what: str) -> None:
    if name in allowed:
        return
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown {what} {name!r}{hint}; known: {', '.join(sorted(allowed))}.")


def _check_value(origin: str, name: str, value: Any, check: _Check) -> None:
    expected, accepts = check
    if not accepts(value):
        raise ConfigError(f"{origin} {name}={value!r} is invalid: expected {expected}.")


def check_hyperparams(hyperparams: Mapping[str, Any], algorithm: str, origin: str = "hyperparameter") -> None:
    """Names and value ranges of ``hyperparams`` for ``algorithm``, including the VecNormalize options and the
    policy keyword arguments this module knows (raises :class:`ConfigError`)."""
    allowed = [k for k in SCHEMA if algorithm in ALGORITHM_ONLY.get(k, (algorithm,))]
    for name, value in hyperparams.items():
        _check_name(name, allowed, origin)
        _check_value(origin, name, value, SCHEMA[name])
    normalize = hyperparams.get("normalize")
    if isinstance(normalize, dict):
        for option, value in normalize.items():
            _check_name(option, list(NORMALIZE_SCHEMA), "VecNormalize option")
            _check_value(origin, f"normalize.{option}", value, NORMALIZE_SCHEMA[option])
    for option, value in hyperparams.get("policy_kwargs", {}).items():
        if option in POLICY_KWARGS_SCHEMA:
            _check_value(origin, f"policy_kwargs.{option}", value, POLICY_KWARGS_SCHEMA[option])
    activation = hyperparams.get("policy_kwargs", {}).get("activation_fn")
    if activation is not None:
        _check_name(str(activation), list(ACTIVATIONS), "activation_fn")


# ---------------------------------------------------------------------------------------------- sources
def _deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = _deep_merge(merged[key], value) if isinstance(value, Mapping) and isinstance(
            merged.get(key), Mapping) else value
    return merged


def _hyperparam_table(algorithm: str) -> dict[str, Any]:
    text = (resources.files("ltc_rl") / "hyperparams" / HYPERPARAM_FILES[algorithm]).read_text()
    return yaml.safe_load(text) or {}


def read_yaml_file(path: str | Path, what: str) -> Any:
    """The parsed content of a YAML file a user names (``what`` says which file it is in error messages);
    a missing or malformed file raises :class:`ConfigError` with one line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist.")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {' '.join(str(exc).split())}") from None


def load_hyperparams(algorithm: str, env_id: str) -> dict[str, Any]:
    """The shipped hyperparameters of ``algorithm`` for ``env_id``: its entry merged over ``default``
    (an id without an entry gets ``default`` alone: see :func:`hyperparams_notice`)."""
    table = _hyperparam_table(algorithm)
    return _deep_merge(table.get("default", {}), table.get(env_id, {}))


def hyperparams_notice(algorithm: str, env_id: str) -> str | None:
    """One line saying that ``env_id`` has no tuned entry for ``algorithm`` (None when it has one)."""
    if env_id in _hyperparam_table(algorithm):
        return None
    return (f"note: {HYPERPARAM_FILES[algorithm]} has no entry for {env_id}: training with its `default` "
            "hyperparameters (untuned; change them with --hp NAME=VALUE)")


def _parse_value(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        for convert in (int, float):
            try:
                return convert(value)
            except ValueError:
                pass
    return value


def parse_frame_range(text: str | None) -> list[int] | None:
    """``"2,8"`` -> ``[2, 8]``: the ``--irregular MIN,MAX`` command-line argument (None stays None)."""
    if text is None:
        return None
    try:
        low, high = (int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--irregular takes MIN,MAX frame counts (e.g. --irregular 2,8), got {text!r}.") from None
    return [low, high]


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["n_steps=256", "policy_kwargs.units=32"]`` -> ``{"n_steps": 256, "policy_kwargs": {"units": 32}}``."""
    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"hyperparameter override {item!r} is not NAME=VALUE (e.g. n_steps=256).")
        *parents, leaf = [part.strip() for part in name.split(".")]
        target = overrides
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"hyperparameter override {item!r} conflicts with an earlier one.")
        target[leaf] = _parse_value(text.strip())
    return overrides


def check_env_id(env_id: str, env_ids: Sequence[str] | None = None) -> None:
    """Raises :class:`ConfigError` if ``env_id`` is not among ``env_ids`` (listing them), or, without
    ``env_ids``, not registered with gymnasium (naming the closest registered ids)."""
    if env_ids is not None:
        _check_name(env_id, list(env_ids), "environment id")
        return
    check_registered_env_id(env_id)


# ---------------------------------------------------------------------------------------------- config
@dataclass
class RunConfig:
    """Everything that defines a run; saved as ``config.yaml`` (plus versions and the command)."""

    env_id: str
    policy: str
    algorithm: str
    policy_class: str
    total_timesteps: int
    n_envs: int
    seed: int
    device: str
    hyperparams: dict[str, Any]
    normalize: bool | dict[str, Any] = True
    eval_freq: int = 20_000
    n_eval_episodes: int = 5
    checkpoint_freq: int = 50_000
    #: keyword options of the env factory (``envs.make``: obs_noise, irregular, dt_in_obs).
    env_options: dict[str, Any] = field(default_factory=dict)
    #: "dummy" (one process) or "subproc" (one process per copy).
    vec_env: str = "dummy"
    #: the environment's nominal control period (what its reset reports as elapsed time, else its ``dt`` /
    #: ``tau`` attribute; 1.0 if nothing): recurrent policies feed the cells ``dt`` in this unit. Set by
    #: :func:`validate`.
    time_unit: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        names = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls)
                   if f.name not in data and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ConfigError(f"{CONFIG_FILE} lacks {missing}; it was not written by this pipeline.")
        return cls(**{k: v for k, v in data.items() if k in names})

    def algorithm_kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments for the algorithm (schedules and activations converted)."""
        kwargs: dict[str, Any] = {}
        for name, value in self.hyperparams.items():
            if isinstance(value, str) and value.startswith("lin_"):
                value = LinearSchedule(float(value[4:]), 0.0, 1.0)
            kwargs[name] = value
        policy_kwargs = dict(kwargs.pop("policy_kwargs", {}))
        if isinstance(policy_kwargs.get("activation_fn"), str):
            policy_kwargs["activation_fn"] = ACTIVATIONS[policy_kwargs["activation_fn"]]
        if self.algorithm == "RecurrentPPO" and self.time_unit is not None:
            policy_kwargs.setdefault("time_unit", self.time_unit)
        kwargs["policy_kwargs"] = policy_kwargs
        return kwargs

    def normalize_kwargs(self) -> dict[str, Any] | None:
        """VecNormalize options, or None without normalisation."""
        if self.normalize is False:
            return None
        options = {} if self.normalize is True else dict(self.normalize)
        options.setdefault("gamma", self.hyperparams.get("gamma", 0.99))
        return options


def resolve_config(env_id: str, policy: str = "ltc", total_timesteps: int | None = None, n_envs: int | None = None,
                   seed: int | None = None, device: str = "auto", overrides: Mapping[str, Any] | None = None,
                   env_options: Mapping[str, Any] | None = None, vec_env: str = "dummy",
                   env_ids: Sequence[str] | None = None) -> RunConfig:
    """Shipped defaults < ``overrides`` < explicit arguments, checked; raises :class:`ConfigError`.

    ``env_options`` go to the env factory (checked when :func:`validate` builds the environment);
    ``env_ids``: the ids the env factory supports (default: any gymnasium id).
    """
    check_env_id(env_id, env_ids)
    _check_name(vec_env, list(VEC_ENVS), "vec_env")
    _check_name(policy, list(POLICIES), "policy")
    choice = POLICIES[policy]
    overrides = dict(overrides or {})
    check_hyperparams(overrides, choice.algorithm)
    hyperparams = _deep_merge(load_hyperparams(choice.algorithm, env_id), overrides)
    hyperparams["policy_kwargs"] = _deep_merge(hyperparams.get("policy_kwargs", {}), choice.policy_kwargs)
    check_hyperparams(hyperparams, choice.algorithm, origin=f"hyperparameter (from {HYPERPARAM_FILES[choice.algorithm]})")
    for name, value in (("total_timesteps", total_timesteps), ("n_envs", n_envs)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}.")
    pipeline = {key: hyperparams.pop(key) for key in PIPELINE_KEYS if key in hyperparams}
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))
    return RunConfig(
        env_id=env_id, policy=policy, algorithm=choice.algorithm, policy_class=choice.policy_class,
        total_timesteps=int(total_timesteps or pipeline.get("n_timesteps", 1_000_000)),
        n_envs=int(n_envs or pipeline.get("n_envs", 1)), seed=int(seed),
        device=check_device(device, allow_auto=True),
        hyperparams=hyperparams, normalize=pipeline.get("normalize", True),
        eval_freq=int(pipeline.get("eval_freq", 20_000)), n_eval_episodes=int(pipeline.get("n_eval_episodes", 5)),
        checkpoint_freq=int(pipeline.get("checkpoint_freq", 50_000)),
        env_options={k: list(v) if isinstance(v, tuple) else v for k, v in (env_options or {}).items()},
        vec_env=vec_env,
    )


# ---------------------------------------------------------------------------------------------- building
VEC_ENVS: dict[str, type[VecEnv]] = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}

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
    return make_vec_env(env_id, n_envs=n_envs, seed=seed, vec_env_cls=VEC_ENVS[vec_env], monitor_dir=monitor_dir,
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
             trained_agent: str | Path | None = None) -> None:
    """Build the environments and the model once (and load ``trained_agent`` into it), so that any remaining
    problem surfaces before training.

    Also sets ``config.time_unit`` (when unset) to the environment's nominal control period
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
        config.time_unit = nominal_period(env) or DEFAULT_ELAPSED_TIME
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
    validate(config, make_env, options.trained_agent)
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
    document = _read_run_config(config_path)
    config = RunConfig.from_dict(document)
    checkpoint = latest_checkpoint(run_dir / CHECKPOINT_FOLDER, trust_pickle=trust_pickle)
    if total_timesteps is not None:
        if total_timesteps < 1:
            raise ConfigError(f"total_timesteps must be an integer >= 1, got {total_timesteps!r}.")
        config.total_timesteps = int(total_timesteps)
    if device is not None:
        config.device = check_device(device, allow_auto=True)
    state = None
    if checkpoint is None:
        validate(config, make_env)
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


def _read_run_config(path: Path) -> dict[str, Any]:
    """A run's ``config.yaml`` as a dict; :class:`ConfigError` if it is unreadable or not a run configuration."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} is unreadable ({type(exc).__name__}); the run cannot be resumed with it, start "
                          "a new run (its settings are in the file and in logs/).") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{path} is not a run configuration (a {type(document).__name__}); it was not written by "
                          "this pipeline.")
    if document.get("algorithm") not in ALGORITHMS:
        raise ConfigError(f"{path} names algorithm {document.get('algorithm')!r}; known: {', '.join(ALGORITHMS)}.")
    return document


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
    folder = run_dir / "logs" / f"session_{session}"
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
    schedule = [f"evaluation every {config.eval_freq:,} steps ({config.n_eval_episodes} episodes)"
                if config.eval_freq else "no periodic evaluation",
                f"checkpoints every {config.checkpoint_freq:,} steps" if config.checkpoint_freq
                else "a checkpoint at the end only"]
    events = (Path(options.tensorboard_log) if options.tensorboard_log else run_dir / "logs")
    start = f", from {options.trained_agent}" if options.trained_agent else ""
    notice = hyperparams_notice(config.algorithm, config.env_id)
    return "\n".join(([notice] if notice else []) + [
        f"run folder: {run_dir}  ({'resuming at step ' + format(start_steps, ',') if start_steps else 'new run'})",
        f"training {config.policy} ({config.policy_class}, {parameters:,} parameters{start}) on {config.env_id} "
        f"x {config.n_envs} ({config.vec_env}) for {config.total_timesteps:,} steps, device {model.device}",
        f"{'; '.join(schedule)}; a final evaluation at the end",
        f"curves: {run_dir / 'learning_curve.png'} (after each evaluation); TensorBoard: tensorboard --logdir {events}",
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
        rewind_monitor_files(run_dir / "monitor", (state or {}).get("monitor_sizes", {}))
    env = VecCheckFinite(_make_training_env(config, make_env, config.seed + start_steps, run_dir / "monitor",
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
    curve = run_dir / "learning_curve.png"
    checkpoints = CheckpointCallback(config.checkpoint_freq, run_dir / CHECKPOINT_FOLDER, monitor_dir=run_dir / "monitor")

    def evaluated(history: dict[str, np.ndarray]) -> None:
        plot_learning_curve(curve, history, run_dir / "monitor", title)
        if on_evaluation is not None:
            on_evaluation(history)

    bar = ProgressBar() if progress_bar else None
    evaluation = EvalCallback(eval_env, config.eval_freq, config.n_eval_episodes, run_dir, run_dir / "best",
                              on_evaluation=evaluated, verbose=int(options.verbose >= 1),
                              status=None if bar is None else bar.status)
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
        plot_learning_curve(curve, evaluation.history, run_dir / "monitor", title)
    finally:
        for venv in (env, eval_env):
            try:
                venv.close()
            except _WORKER_GONE:  # nothing left to close
                pass
    return TrainResult(run_dir, model.num_timesteps, final_mean, evaluation.best_mean_reward)
