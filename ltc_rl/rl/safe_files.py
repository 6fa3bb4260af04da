"""Model zips, normalisation statistics and checkpoint state that load without unpickling anything.

Unpickling a file runs whatever code it holds, so a run folder that loads through ``pickle`` lets anyone who
can write one of its files (a shared sweep folder on NFS, a downloaded model) run code on every machine
that loads it. What this project writes loads without unpickling:

* **Model zip** (stable-baselines3 layout). stable-baselines3 stores the fields of ``data`` that JSON cannot
  hold (policy class, spaces, schedules, arrays, episode buffers) as cloudpickle under ``:serialized:``.
  :func:`save_algorithm` adds a plain-JSON form of each such field under ``:safe:`` (kept beside the
  cloudpickle, so stable-baselines3 itself still loads the file); :func:`read_model_data` reads only the
  ``:safe:`` forms, and maps class names to classes through the explicit table :data:`SAFE_CLASSES`. The
  tensors (``policy.pth``, ``policy.optimizer.pth``, ``pytorch_variables.pth``) are read by
  ``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.
* **VecNormalize statistics**: :class:`NormalizationStats`, a ``.npz`` of plain arrays read with
  ``allow_pickle=False``.
* **Checkpoint state** (random generators, log sizes): JSON (:func:`write_state` / :func:`read_state`).

Files that only exist as pickles (written by an older version or by another library) load only with
``trust_pickle=True`` (``--trust-pickle`` in the scripts) and a :class:`PickleWarning`; without it they are
refused with one line naming the flag.
"""

from __future__ import annotations

import base64
import json
import pickle
import warnings
import zipfile
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import cloudpickle
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.save_util import open_path, recursive_getattr, save_to_zip_file
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from stable_baselines3.common.running_mean_std import RunningMeanStd
from torch import nn

from ltc_rl.errors import LtcRlWarning, ModelFileError
from ltc_rl.rl.buffers import RecurrentRolloutBuffer
from ltc_rl.rl.extractors import FEATURES_EXTRACTORS
from ltc_rl.rl.policies import POLICY_CLASSES
from ltc_rl.rl.schedules import ExponentialSchedule

__all__ = ["PickleWarning", "reason", "SAFE_CLASSES", "encode_value", "decode_value", "save_algorithm", "read_model_data",
           "NormalizationStats", "write_state", "read_state", "refuse_pickle", "unpickle_trusted"]

SAFE = ":safe:"
SERIALIZED = ":serialized:"
_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.RMSprop)
_ACTIVATIONS = tuple(c for c in vars(nn.modules.activation).values()
                     if isinstance(c, type) and issubclass(c, nn.Module) and c.__module__ == nn.modules.activation.__name__)
#: The classes a model zip may name (policies, buffers, feature extractors, activations, optimisers), by
#: qualified name: nothing else is ever imported or built from a file.
SAFE_CLASSES: dict[str, type] = {f"{c.__module__}.{c.__qualname__}": c for c in (
    *POLICY_CLASSES.values(), ActorCriticPolicy, RolloutBuffer, RecurrentRolloutBuffer, *FEATURES_EXTRACTORS.values(),
    *_OPTIMIZERS, *_ACTIVATIONS)}
_NUMERIC_KINDS = "biuf"


class PickleWarning(LtcRlWarning):
    """A pickle was loaded because the caller trusted it (``trust_pickle=True``)."""


class _Unencodable(TypeError):
    """A value with no plain-JSON form (it stays cloudpickle only)."""


def reason(error: BaseException) -> str:
    """Why a file could not be read, on one short line (torch's refusal to unpickle a non-tensor says so)."""
    if isinstance(error, pickle.UnpicklingError) and "weights_only" in str(error):
        return "it holds objects other than tensors, which are never unpickled"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


def refuse_pickle(path: str | Path, what: str) -> ModelFileError:
    """The one-line error for ``what`` in ``path`` that exists only as a pickle and was not trusted."""
    return ModelFileError(f"{path} holds {what} only as a pickle (written by an older ltc_rl or by another "
                          "library); unpickling runs any code the file holds, so it is not loaded by default: pass "
                          "--trust-pickle (trust_pickle=True) if you trust where the file came from.")


def unpickle_trusted(load: Any, path: str | Path, what: str) -> Any:
    """``load()`` (an unpickling call) after a :class:`PickleWarning` saying why it is needed."""
    warnings.warn(f"unpickling {what} from {path} because --trust-pickle was given: this runs any code the file "
                  "holds; files written by this version load without it", PickleWarning, stacklevel=3)
    return load()


# ---------------------------------------------------------------------------------------------- values
def _array(value: np.ndarray) -> dict[str, Any]:
    if value.dtype.kind not in _NUMERIC_KINDS:
        raise _Unencodable(f"array of dtype {value.dtype}")
    return {SAFE: "ndarray", "dtype": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}


def _space(space: spaces.Space) -> dict[str, Any]:
    if isinstance(space, spaces.Box):
        return {SAFE: "Box", "low": _array(space.low), "high": _array(space.high), "dtype": space.dtype.str}
    if isinstance(space, spaces.Discrete):
        return {SAFE: "Discrete", "n": int(space.n), "start": int(space.start), "dtype": space.dtype.str}
    if isinstance(space, spaces.MultiDiscrete):
        return {SAFE: "MultiDiscrete", "nvec": _array(space.nvec), "start": _array(space.start),
                "dtype": space.dtype.str}
    if isinstance(space, spaces.MultiBinary):
        return {SAFE: "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, spaces.Dict):
        return {SAFE: "Dict", "spaces": {key: _space(sub) for key, sub in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {SAFE: "Tuple", "spaces": [_space(sub) for sub in space.spaces]}
    raise _Unencodable(f"space {type(space).__name__}")


def _schedule(value: Any) -> dict[str, Any]:
    if isinstance(value, FloatSchedule):
        return {SAFE: "FloatSchedule", "value_schedule": _schedule(value.value_schedule)}
    if isinstance(value, ConstantSchedule):
        return {SAFE: "ConstantSchedule", "val": float(value.val)}
    if isinstance(value, LinearSchedule):
        return {SAFE: "LinearSchedule", "start": float(value.start), "end": float(value.end),
                "end_fraction": float(value.end_fraction)}
    if isinstance(value, ExponentialSchedule):
        return {SAFE: "ExponentialSchedule", "start": value.start, "end": value.end}
    raise _Unencodable(f"schedule {type(value).__name__}")


def encode_value(value: Any) -> Any:
    """``value`` in plain JSON types, non-JSON values tagged with ``:safe:``; raises ``TypeError`` for a value
    with no safe form (any object other than arrays, spaces, schedules, deques and :data:`SAFE_CLASSES`)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in _NUMERIC_KINDS:
        return value.item()
    if isinstance(value, np.ndarray):
        return _array(value)
    if isinstance(value, list):
        return [encode_value(item) for item in value]
    if isinstance(value, tuple):
        return {SAFE: "tuple", "items": [encode_value(item) for item in value]}
    if isinstance(value, deque):
        return {SAFE: "deque", "items": [encode_value(item) for item in value], "maxlen": value.maxlen}
    if isinstance(value, dict):
        if not all(isinstance(key, str) and not key.startswith(":") for key in value):
            raise _Unencodable("dict with keys that are not plain strings")
        return {key: encode_value(item) for key, item in value.items()}
    if isinstance(value, type):
        name = f"{value.__module__}.{value.__qualname__}"
        if SAFE_CLASSES.get(name) is not value:
            raise _Unencodable(f"class {name}")
        return {SAFE: "class", "name": name}
    if isinstance(value, spaces.Space):
        return _space(value)
    return _schedule(value)


def _decode_array(item: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(item["dtype"])
    if dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(f"array dtype {dtype} is not numeric")
    return np.asarray(item["data"], dtype=dtype).reshape(item["shape"])


def _decode_tagged(item: dict[str, Any]) -> Any:
    kind = item[SAFE]
    if kind == "ndarray":
        return _decode_array(item)
    if kind == "tuple":
        return tuple(decode_value(x) for x in item["items"])
    if kind == "deque":
        return deque((decode_value(x) for x in item["items"]), maxlen=item["maxlen"])
    if kind == "class":
        if item["name"] not in SAFE_CLASSES:
            raise ValueError(f"class {item['name']!r} is not one this project writes")
        return SAFE_CLASSES[item["name"]]
    if kind == "Box":
        return spaces.Box(_decode_array(item["low"]), _decode_array(item["high"]), dtype=np.dtype(item["dtype"]))
    if kind == "Discrete":
        return spaces.Discrete(int(item["n"]), start=int(item["start"]), dtype=np.dtype(item["dtype"]))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(_decode_array(item["nvec"]), dtype=np.dtype(item["dtype"]),
                                    start=_decode_array(item["start"]))
    if kind == "MultiBinary":
        return spaces.MultiBinary(item["n"])
    if kind == "Dict":
        return spaces.Dict({key: decode_value(sub) for key, sub in item["spaces"].items()})
    if kind == "Tuple":
        return spaces.Tuple([decode_value(sub) for sub in item["spaces"]])
    if kind == "FloatSchedule":
        return FloatSchedule(decode_value(item["value_schedule"]))
    if kind == "ConstantSchedule":
        return ConstantSchedule(float(item["val"]))
    if kind == "LinearSchedule":
        return LinearSchedule(float(item["start"]), float(item["end"]), float(item["end_fraction"]))
    if kind == "ExponentialSchedule":
        return ExponentialSchedule(float(item["start"]), float(item["end"]))
    raise ValueError(f"unknown safe type {kind!r}")


def decode_value(item: Any) -> Any:
    """The value :func:`encode_value` encoded; ``ValueError`` (or ``KeyError`` / ``TypeError``) for anything
    else. Builds only numbers, strings, containers, arrays, spaces, schedules and :data:`SAFE_CLASSES`."""
    if isinstance(item, list):
        return [decode_value(x) for x in item]
    if isinstance(item, dict):
        if SAFE in item:
            return _decode_tagged(item)
        return {key: decode_value(x) for key, x in item.items()}
    return item


# ---------------------------------------------------------------------------------------------- model zip
def _data_entry(value: Any) -> Any:
    """How one ``data`` field is stored: as is when JSON holds it; else stable-baselines3's cloudpickle entry
    plus, where one exists, the ``:safe:`` form."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        pass
    entry: dict[str, Any] = {":type:": str(type(value)),
                             SERIALIZED: base64.b64encode(cloudpickle.dumps(value)).decode()}
    try:
        entry[SAFE] = encode_value(value)
    except _Unencodable:
        pass
    return entry


def save_algorithm(model: BaseAlgorithm, path: str | Path | BinaryIO) -> None:
    """What ``model.save(path)`` writes, with every non-JSON ``data`` field also in its safe form."""
    data = model.__dict__.copy()
    state_dicts, torch_variables = model._get_torch_save_params()
    for name in {*model._excluded_save_params(), *(n.split(".")[0] for n in state_dicts + torch_variables)}:
        data.pop(name, None)
    pytorch_variables = {name: recursive_getattr(model, name) for name in torch_variables}
    save_to_zip_file(path, data={key: _data_entry(value) for key, value in data.items()},
                     params=model.get_parameters(), pytorch_variables=pytorch_variables)


def _read_data_text(path: str | Path | BinaryIO) -> str:
    if isinstance(path, (str, Path)):
        with open_path(path, "r", suffix="zip") as handle, zipfile.ZipFile(handle) as archive:
            return archive.read("data").decode()
    position = path.tell()
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read("data").decode()
    finally:
        path.seek(position)


def read_model_data(path: str | Path | BinaryIO, trust_pickle: bool = False,
                    skip: Collection[str] = ()) -> dict[str, Any]:
    """The ``data`` fields of a model zip (but those named in ``skip``), decoded without unpickling.

    A field stored only as cloudpickle (a zip written by stable-baselines3 itself or an older ltc_rl) is
    unpickled with ``trust_pickle`` (and a :class:`PickleWarning`), refused otherwise (:class:`ModelFileError`).
    Raises ``ValueError`` / ``KeyError`` / ``zipfile.BadZipFile`` for an unreadable archive or entry.
    """
    document = json.loads(_read_data_text(path))
    if not isinstance(document, dict):
        raise ValueError("the data entry is not a JSON object")
    document = {key: item for key, item in document.items() if key not in skip}
    pickled = [key for key, item in document.items() if isinstance(item, dict) and SERIALIZED in item
               and SAFE not in item]
    if pickled and not trust_pickle:
        raise refuse_pickle(path if isinstance(path, (str, Path)) else "the model", f"fields {pickled} of its data")
    data = {}
    for key, item in document.items():
        if key in pickled:
            blob = base64.b64decode(item[SERIALIZED].encode())
            data[key] = unpickle_trusted(lambda: cloudpickle.loads(blob), path, f"model field {key!r}")
        elif isinstance(item, dict) and SAFE in item and SERIALIZED in item:
            data[key] = decode_value(item[SAFE])
        else:
            data[key] = decode_value(item)
    return data


# ---------------------------------------------------------------------------------------------- VecNormalize
def _moments_dict(rms: RunningMeanStd | dict[str, RunningMeanStd]) -> dict[str, RunningMeanStd]:
    return dict(rms) if isinstance(rms, dict) else {"": rms}


@dataclass
class NormalizationStats:
    """What ``VecNormalize`` learned and how it applies it, as plain arrays (``.npz``, no pickle).

    ``obs_rms`` maps observation keys to running moments (key ``""`` for a flat Box observation space).
    """

    obs_rms: dict[str, RunningMeanStd]
    ret_rms: RunningMeanStd
    clip_obs: float
    clip_reward: float
    gamma: float
    epsilon: float
    norm_obs: bool
    norm_reward: bool
    norm_obs_keys: list[str] | None = None

    @classmethod
    def from_vecnormalize(cls, venv: VecNormalize) -> NormalizationStats:
        return cls(_moments_dict(venv.obs_rms), venv.ret_rms, float(venv.clip_obs), float(venv.clip_reward),
                   float(venv.gamma), float(venv.epsilon), bool(venv.norm_obs), bool(venv.norm_reward),
                   list(venv.norm_obs_keys) if venv.norm_obs_keys is not None else None)

    @property
    def flat(self) -> RunningMeanStd:
        """The moments of a flat (Box) observation space; ``ValueError`` for a Dict space."""
        if set(self.obs_rms) != {""}:
            raise ValueError("the statistics are for a Dict observation space")
        return self.obs_rms[""]

    def non_finite(self) -> str | None:
        """Which statistic holds NaN / infinity, or None."""
        for key, rms in {**{f"obs_rms{'.' + k if k else ''}": r for k, r in self.obs_rms.items()},
                         "ret_rms": self.ret_rms}.items():
            if not (np.isfinite(rms.mean).all() and np.isfinite(rms.var).all() and np.isfinite(rms.count)):
                return f"{key} holds NaN or infinity"
        return None

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        """``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` for a flat observation."""
        if not self.norm_obs:
            return obs
        rms = self.flat
        return np.clip((obs - rms.mean) / np.sqrt(rms.var + self.epsilon), -self.clip_obs, self.clip_obs
                       ).astype(np.float32)

    def to_vecnormalize(self, venv: VecEnv, training: bool = True) -> VecNormalize:
        """A ``VecNormalize`` around ``venv`` holding these statistics."""
        wrapper = VecNormalize(venv, training=training, norm_obs=self.norm_obs, norm_reward=self.norm_reward,
                               clip_obs=self.clip_obs, clip_reward=self.clip_reward, gamma=self.gamma,
                               epsilon=self.epsilon, norm_obs_keys=self.norm_obs_keys)
        if self.norm_obs:
            wrapper.obs_rms = self.obs_rms[""] if set(self.obs_rms) == {""} else dict(self.obs_rms)
        wrapper.ret_rms = self.ret_rms
        return wrapper

    def write(self, handle: BinaryIO) -> None:
        """Write the statistics as an ``.npz`` of plain arrays."""
        arrays: dict[str, np.ndarray] = {
            "obs_keys": np.asarray(list(self.obs_rms), dtype=str),
            "options": np.asarray([self.clip_obs, self.clip_reward, self.gamma, self.epsilon], dtype=np.float64),
            "flags": np.asarray([self.norm_obs, self.norm_reward]),
            "norm_obs_keys": np.asarray(self.norm_obs_keys or [], dtype=str),
            "has_norm_obs_keys": np.asarray(self.norm_obs_keys is not None),
        }
        for index, rms in enumerate([*self.obs_rms.values(), self.ret_rms]):
            prefix = "ret" if index == len(self.obs_rms) else f"obs{index}"
            arrays.update({f"{prefix}_mean": np.asarray(rms.mean, dtype=np.float64),
                           f"{prefix}_var": np.asarray(rms.var, dtype=np.float64),
                           f"{prefix}_count": np.asarray(rms.count, dtype=np.float64)})
        np.savez(handle, **arrays)

    @classmethod
    def read(cls, path: str | Path) -> NormalizationStats:
        """Read what :meth:`write` wrote (``allow_pickle=False``); ``ValueError`` / ``KeyError`` / ``OSError``
        if unreadable."""
        with np.load(path, allow_pickle=False) as saved:
            def moments(prefix: str) -> RunningMeanStd:
                rms = RunningMeanStd(shape=saved[f"{prefix}_mean"].shape)
                rms.mean, rms.var = saved[f"{prefix}_mean"].copy(), saved[f"{prefix}_var"].copy()
                rms.count = float(saved[f"{prefix}_count"])
                return rms

            clip_obs, clip_reward, gamma, epsilon = (float(v) for v in saved["options"])
            norm_obs, norm_reward = (bool(v) for v in saved["flags"])
            keys = [str(k) for k in saved["obs_keys"]]
            return cls({key: moments(f"obs{i}") for i, key in enumerate(keys)}, moments("ret"), clip_obs,
                       clip_reward, gamma, epsilon, norm_obs, norm_reward,
                       [str(k) for k in saved["norm_obs_keys"]] if bool(saved["has_norm_obs_keys"]) else None)


# ---------------------------------------------------------------------------------------------- run state
def _state_encode(value: Any) -> Any:
    if torch.is_tensor(value):
        return {SAFE: "bytes_tensor", "data": base64.b64encode(value.cpu().numpy().tobytes()).decode(),
                "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, dict):
        return {key: _state_encode(item) for key, item in value.items()}
    if isinstance(value, list) and any(torch.is_tensor(v) for v in value):
        return [_state_encode(v) for v in value]
    return encode_value(value)


def _state_decode(item: Any) -> Any:
    if isinstance(item, dict) and item.get(SAFE) == "bytes_tensor":
        if item["dtype"] != "uint8":
            raise ValueError(f"random state tensor of dtype {item['dtype']}")
        return torch.frombuffer(bytearray(base64.b64decode(item["data"])), dtype=torch.uint8)
    if isinstance(item, list):
        return [_state_decode(v) for v in item]
    if isinstance(item, dict) and SAFE not in item:
        return {key: _state_decode(v) for key, v in item.items()}
    return decode_value(item)


def write_state(state: dict[str, Any], handle: BinaryIO) -> None:
    """Write a checkpoint's training state (:mod:`ltc_rl.runs.run_state`) as JSON."""
    handle.write(json.dumps(_state_encode(state)).encode())


def read_state(path: str | Path) -> dict[str, Any]:
    """Read what :func:`write_state` wrote; ``ValueError`` / ``OSError`` if unreadable."""
    return _state_decode(json.loads(Path(path).read_text()))


def read_legacy_pickle(path: str | Path, what: str, trust_pickle: bool) -> Any:
    """Unpickle ``path`` (a file of an older version) if ``trust_pickle``, else :func:`refuse_pickle`."""
    if not trust_pickle:
        raise refuse_pickle(path, what)

    def load() -> Any:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    return unpickle_trusted(load, path, what)

