"""Reading model files safely: nothing is unpickled (:mod:`ltc_rl.rl.safe_files`), and one clear error for a
missing, corrupt, truncated or foreign file, and for a model (or its VecNormalize statistics) that does not
fit the environment it is given.

stable-baselines3 reports such files with whatever the lowest layer raised (``BadZipFile``, ``KeyError:
'data'``, an unpickling error, a ``ValueError`` about spaces deep in ``load``). :func:`inspect_model_file`
checks the archive (its members and their checksums) and reads the model's metadata without building
anything; :func:`load_model` and :func:`load_vecnormalize` wrap the stable-baselines3 loaders with these
checks and raise :class:`~ltc_rl.errors.ModelFileError` / :class:`~ltc_rl.errors.SpaceMismatchError`.
Files that exist only as pickles load with ``trust_pickle=True`` alone.
"""

from __future__ import annotations

import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from ltc_rl.errors import ModelFileError, SpaceMismatchError
from ltc_rl.rl.policies import RecurrentActorCriticPolicy
from ltc_rl.rl.ppo import RecurrentPPO
from ltc_rl.rl.safe_files import NormalizationStats, read_legacy_pickle, read_model_data, reason

__all__ = ["inspect_model_file", "check_spaces", "load_model", "read_normalization", "load_vecnormalize"]

#: Archive members every stable-baselines3 model zip holds.
REQUIRED_MEMBERS = ("data", "policy.pth")
#: Metadata entries :func:`inspect_model_file` must be able to rebuild.
REQUIRED_DATA = ("policy_class", "observation_space", "action_space")
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError, UnicodeDecodeError)
_UNPICKLE_ERRORS = (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, KeyError, TypeError,
                    ValueError, OSError, MemoryError)
_FIX = "use another checkpoint (best/, checkpoints/) or retrain"


def inspect_model_file(path: str | Path, trust_pickle: bool = False) -> dict[str, Any]:
    """The metadata of the stable-baselines3 model zip ``path`` (spaces, policy class, ``num_timesteps``, ...).

    Verifies that the archive opens, holds the members of a model and that every member matches its
    checksum (so a truncated or bit-flipped file is caught here, not half-way through loading). Nothing is
    unpickled unless ``trust_pickle`` (for zips whose metadata exists only as cloudpickle).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist; pass the model.zip of a run folder.")
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [name for name in REQUIRED_MEMBERS if name not in archive.namelist()]
            if missing:
                raise ModelFileError(f"{path} is truncated or not a stable-baselines3 model (the archive lacks "
                                     f"{missing}); {_FIX}, or pass a model.zip written by scripts/train.py.")
            broken = archive.testzip()
            if broken is not None:
                raise ModelFileError(f"{path} is corrupt (archive member {broken!r} fails its checksum); {_FIX}.")
    except ModelFileError:
        raise
    except _READ_ERRORS as exc:
        raise ModelFileError(f"{path} is not a readable model file ({type(exc).__name__}: {exc}): it is truncated, "
                             f"corrupt or not a zip archive; {_FIX}.") from exc
    try:
        data = read_model_data(path, trust_pickle)
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - json, base64 and (trusted) cloudpickle fail in many ways; all mean "unreadable"
        raise ModelFileError(f"{path} holds unreadable model metadata ({reason(exc)}); {_FIX}.") from exc
    unusable = [key for key in REQUIRED_DATA if key not in data or isinstance(data[key], dict)]
    if unusable:
        raise ModelFileError(f"{path} lacks usable {unusable} (written by another library or version?); {_FIX}.")
    return data


def _describe(space: spaces.Space) -> str:
    return " ".join(str(space).split())


def check_spaces(model: str | Path, observation_space: spaces.Space, action_space: spaces.Space,
                 env: VecEnv | Any) -> None:
    """Raise :class:`SpaceMismatchError` unless ``env`` (a VecEnv or a gymnasium env) has the observation and
    action spaces the model ``model`` (its path or name) was built for."""
    for kind, expected in (("observation", observation_space), ("action", action_space)):
        actual = getattr(env, f"{kind}_space")
        if expected != actual:
            raise SpaceMismatchError(
                f"model {model} was trained with {kind} space {_describe(expected)} but the environment has "
                f"{_describe(actual)}; use the environment (id and env options) of the model's run, see its "
                "config.yaml.")


def _algorithm_for(path: Path, data: dict[str, Any]) -> type[BaseAlgorithm]:
    policy_class = data["policy_class"]
    if isinstance(policy_class, type) and issubclass(policy_class, RecurrentActorCriticPolicy):
        return RecurrentPPO
    if isinstance(policy_class, type) and issubclass(policy_class, ActorCriticPolicy):
        return PPO
    raise ModelFileError(f"{path} holds a {getattr(policy_class, '__name__', policy_class)} policy, which this "
                         "project does not train; pass a model written by scripts/train.py.")


def load_model(path: str | Path, env: VecEnv | None = None, device: str = "auto",
               algorithm: type[BaseAlgorithm] | None = None, trust_pickle: bool = False) -> BaseAlgorithm:
    """``algorithm.load(path, env, device)`` after :func:`inspect_model_file` and :func:`check_spaces`.

    ``algorithm`` defaults to the one that trains the saved policy class (``RecurrentPPO`` for the recurrent
    policies, SB3's ``PPO`` for ``MlpPolicy``); a model of another algorithm is a :class:`ModelFileError`.
    The metadata read by :func:`inspect_model_file` is handed to the loader whole (``custom_objects``), so
    stable-baselines3 unpickles nothing.
    """
    path = Path(path)
    data = inspect_model_file(path, trust_pickle)
    expected = _algorithm_for(path, data)
    if algorithm is not None and not issubclass(expected, algorithm) and not issubclass(algorithm, expected):
        raise ModelFileError(f"{path} is a {expected.__name__} model, not {algorithm.__name__}; "
                             "check the run folder it came from.")
    if env is not None:
        check_spaces(path, data["observation_space"], data["action_space"], env)
    try:
        return (algorithm or expected).load(path, env=env, device=device, custom_objects=data)
    except (ModelFileError, SpaceMismatchError):
        raise
    except (*_UNPICKLE_ERRORS, RuntimeError) as exc:
        raise ModelFileError(f"cannot load {path} ({reason(exc)}); {_FIX}.") from exc


def read_normalization(path: str | Path, trust_pickle: bool = False) -> NormalizationStats:
    """The VecNormalize statistics in ``path``: a ``.npz`` this project writes, or (``trust_pickle`` only) a
    pickled ``VecNormalize`` of an older version; :class:`ModelFileError` if unreadable or refused."""
    path = Path(path)
    try:
        if path.suffix != ".pkl":
            stats = NormalizationStats.read(path)
        else:
            venv = read_legacy_pickle(path, "VecNormalize statistics", trust_pickle)
            if not isinstance(venv, VecNormalize):
                raise ModelFileError(f"{path} holds a {type(venv).__name__}, not VecNormalize statistics; pass the "
                                     "statistics file of the model's run folder.")
            stats = NormalizationStats.from_vecnormalize(venv)
    except ModelFileError:
        raise
    except (*_UNPICKLE_ERRORS, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"VecNormalize statistics {path} are unreadable ({reason(exc)}): "
                             f"truncated, corrupt or not written by this project; {_FIX}.") from exc
    problem = stats.non_finite()
    if problem is not None:
        raise ModelFileError(f"VecNormalize statistics {path}: {problem}; {_FIX}.")
    return stats


def load_vecnormalize(path: str | Path, venv: VecEnv, trust_pickle: bool = False) -> VecNormalize:
    """``venv`` wrapped in the VecNormalize statistics of ``path`` (:func:`read_normalization`), with a clear
    error for statistics of a different observation shape."""
    stats = read_normalization(path, trust_pickle)
    expected = {key: rms.mean.shape for key, rms in stats.obs_rms.items()}
    space = venv.observation_space
    actual = {key: sub.shape for key, sub in space.spaces.items() if key in expected} \
        if isinstance(space, spaces.Dict) else {"": space.shape}
    if stats.norm_obs and expected != actual:
        raise SpaceMismatchError(f"VecNormalize statistics {path} are for observations of shape "
                                 f"{_shapes(expected)} but the environment gives {_shapes(actual)}; use the "
                                 "environment of the model's run.")
    return stats.to_vecnormalize(venv)


def _shapes(shapes: dict[str, Any]) -> str:
    return str(shapes[""]) if set(shapes) == {""} else str(shapes)
