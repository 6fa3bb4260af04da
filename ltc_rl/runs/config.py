"""The configuration of a run: the hyperparameter schema, the shipped defaults and :class:`RunConfig`.

Hyperparameters come from YAML files shipped in ``ltc_rl/hyperparams/`` (rl-zoo style: one file per
algorithm, one entry per environment id merged over a ``default`` entry), then from command-line
overrides (``n_steps=256``, ``policy_kwargs.units=32``), then from explicit options (``n_envs``,
``total_timesteps``); :func:`resolve_config` checks them all and gives the :class:`RunConfig` that
:mod:`ltc_rl.runs.training` trains and writes as ``config.yaml``
(:class:`~ltc_rl.runs.run_folder.RunFolder` reads it back).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from ltc_rl.devices import check_device
from ltc_rl.env_api import VEC_ENVS, check_registered_env_id
from ltc_rl.errors import ConfigError
from ltc_rl.rl.extractors import FEATURES_EXTRACTORS
from ltc_rl.rl.ppo import RecurrentPPO
from ltc_rl.rl.schedules import SCHEDULE_FORMS, parse_schedule
from ltc_rl.runs.layout import CONFIG_FILE

__all__ = ["PolicyChoice", "POLICIES", "ALGORITHMS", "HYPERPARAM_FILES", "ACTIVATIONS", "RunConfig",
           "check_hyperparams", "check_env_id", "load_hyperparams", "read_yaml_file", "hyperparams_notice",
           "parse_frame_range", "parse_overrides", "resolve_config"]

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

#: Policy keyword arguments a config file gives by name, and the classes the names stand for.
_NAMED_CLASSES: dict[str, Mapping[str, type]] = {"activation_fn": ACTIVATIONS,
                                                 "features_extractor_class": FEATURES_EXTRACTORS}

# ---------------------------------------------------------------------------------------------- schema
_Check = tuple[str, Callable[[Any], bool]]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_schedule(value: Any) -> bool:
    try:
        parse_schedule(value)
    except ValueError:
        return False
    return True


def _is_layer_sizes(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(size) and size >= 1 for size in value)


def _is_net_arch(value: Any) -> bool:
    if isinstance(value, dict):
        return set(value) <= {"pi", "vf"} and all(_is_layer_sizes(sizes) for sizes in value.values())
    return _is_layer_sizes(value)


_POSITIVE_INT: _Check = ("an integer >= 1", lambda v: _is_int(v) and v >= 1)
_COUNT: _Check = ("an integer >= 0 (0 turns it off)", lambda v: _is_int(v) and v >= 0)
_SCHEDULE: _Check = (SCHEDULE_FORMS, _is_schedule)
_OPTIONAL_SCHEDULE: _Check = (f"null, {SCHEDULE_FORMS}", lambda v: v is None or _is_schedule(v))
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
    "clip_range_vf": _OPTIONAL_SCHEDULE,
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
#: Hyperparameters that take a schedule (:func:`~ltc_rl.rl.schedules.parse_schedule` turns their text into one).
_SCHEDULE_NAMES = tuple(name for name, check in SCHEMA.items() if check is _SCHEDULE or check is _OPTIONAL_SCHEDULE)
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
    "features_extractor_class": _NAME,
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
    "cell_lr_scale": ("a number > 0", lambda v: _is_number(v) and v > 0),
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
    for option, known in _NAMED_CLASSES.items():
        name = hyperparams.get("policy_kwargs", {}).get(option)
        if name is not None:
            _check_name(str(name), list(known), option)


def policy_classes_from_names(policy_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``policy_kwargs`` with the class names a config file uses (``activation_fn: relu``,
    ``features_extractor_class: linear``) replaced by the classes (names checked by :func:`check_hyperparams`)."""
    resolved = dict(policy_kwargs)
    for option, known in _NAMED_CLASSES.items():
        if isinstance(resolved.get(option), str):
            resolved[option] = known[resolved[option]]
    return resolved


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


def load_hyperparams(algorithm: str, env_id: str, policy: str | None = None) -> dict[str, Any]:
    """The shipped hyperparameters of ``algorithm`` for ``env_id``: its entry merged over ``default``
    (an id without an entry gets ``default`` alone: see :func:`hyperparams_notice`).

    An entry may hold a section per policy (``ncp: {policy_kwargs: ...}``), merged over the entry when that
    ``policy`` trains: one file serves every recurrent policy, and a policy that cannot take a shared value
    (an NCP in controller mode has no actor head) says so in its section.
    """
    table = _hyperparam_table(algorithm)
    merged: dict[str, Any] = {}
    for entry in (table.get("default", {}), table.get(env_id, {})):
        common = {key: value for key, value in entry.items() if key not in POLICIES}
        merged = _deep_merge(_deep_merge(merged, common), entry.get(policy, {}) if policy else {})
    return merged


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
        if data["algorithm"] not in ALGORITHMS:
            raise ConfigError(f"{CONFIG_FILE} names algorithm {data['algorithm']!r}; known: {', '.join(ALGORITHMS)}.")
        return cls(**{k: v for k, v in data.items() if k in names})

    def algorithm_kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments for the algorithm (schedules and activations converted)."""
        kwargs: dict[str, Any] = {}
        for name, value in self.hyperparams.items():
            if name in _SCHEDULE_NAMES and value is not None:
                value = parse_schedule(value)
            kwargs[name] = value
        policy_kwargs = policy_classes_from_names(kwargs.pop("policy_kwargs", {}))
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
    hyperparams = _deep_merge(load_hyperparams(choice.algorithm, env_id, policy), overrides)
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
