"""Reading what a training run left behind: model zip, observation statistics and configuration.

A run folder (see :mod:`ltc_rl.training`) holds ``model.zip``, ``vecnormalize.pkl`` (when observations
were normalised), ``config.yaml`` and ``best/`` (the best evaluated model and its statistics). Every
problem (a missing file, a corrupt one, a zip that is not a stable-baselines3 model) raises
:class:`RunFolderError` saying which file and what to do.

The policy is rebuilt from the zip's saved constructor arguments and weights alone: no algorithm
object and no environment are created.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file

from ltc_rl.errors import ModelFileError
from ltc_rl.rl.callbacks import MODEL_FILE, VECNORMALIZE_FILE
from ltc_rl.training import CONFIG_FILE

__all__ = ["RunFolderError", "RunFiles", "ObservationStats", "LoadedRun", "locate", "read_config",
           "load_observation_stats", "load_policy", "load_run"]


class RunFolderError(ModelFileError):
    """A run folder or model file is missing, incomplete or corrupt (a ``ValueError``)."""


@dataclass(frozen=True)
class RunFiles:
    """The files of one trained model: its zip, its VecNormalize statistics and the run's config (if any)."""

    model: Path
    normalizer: Path | None
    config: Path | None


@dataclass(frozen=True)
class ObservationStats:
    """What ``VecNormalize`` does to observations: ``clip((obs - mean) / sqrt(var + epsilon), -clip, clip)``."""

    mean: np.ndarray
    var: np.ndarray
    clip: float
    epsilon: float


@dataclass
class LoadedRun:
    """A policy rebuilt from its zip, with the statistics and configuration that belong to it."""

    policy: BasePolicy
    files: RunFiles
    stats: ObservationStats | None
    config: dict[str, Any] = field(default_factory=dict)


def _listing(folder: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    return ", ".join(names) if names else "nothing"


def locate(path: str | Path) -> RunFiles:
    """The files behind ``path``: a run folder (or its ``best/`` folder), or a model ``.zip``.

    A folder must hold ``model.zip``; ``vecnormalize.pkl`` is taken from the model's folder and
    ``config.yaml`` from the model's folder or its parent (so ``RUN/best`` finds ``RUN/config.yaml``).
    """
    path = Path(path)
    if not path.exists():
        raise RunFolderError(f"{path} does not exist; pass a run folder written by scripts/train.py "
                             f"(or a model .zip).")
    if path.is_dir():
        model = path / MODEL_FILE
        if not model.is_file():
            hint = f" ({path / 'best' / MODEL_FILE} exists: pass {path / 'best'})" \
                if (path / "best" / MODEL_FILE).is_file() else ""
            raise RunFolderError(f"run folder {path} has no {MODEL_FILE} (it holds: {_listing(path)}); the run did "
                                 f"not finish{hint}, or this is not a run folder.")
    elif path.suffix == ".zip":
        model = path
    else:
        raise RunFolderError(f"{path} is neither a run folder nor a model .zip.")
    folder = model.parent
    normalizer = folder / VECNORMALIZE_FILE
    config = next((c for c in (folder / CONFIG_FILE, folder.parent / CONFIG_FILE) if c.is_file()), None)
    return RunFiles(model, normalizer if normalizer.is_file() else None, config)


def read_config(files: RunFiles) -> dict[str, Any]:
    """The run's ``config.yaml`` as a dict (empty without one); raises :class:`RunFolderError` if unreadable."""
    if files.config is None:
        return {}
    try:
        document = yaml.safe_load(files.config.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise RunFolderError(f"{files.config} is corrupt ({type(exc).__name__}: {detail}); restore it or "
                             f"retrain.") from exc
    if not isinstance(document, dict) or "env_id" not in document:
        raise RunFolderError(f"{files.config} is not a run configuration (no env_id); it was not written by "
                             f"scripts/train.py.")
    return document


def load_observation_stats(files: RunFiles, config: dict[str, Any]) -> ObservationStats | None:
    """The saved observation normalisation, or None where the run did not normalise observations.

    A run whose ``config.yaml`` says it normalised but whose statistics are missing is an error:
    the policy would see inputs on the wrong scale.
    """
    if files.normalizer is None:
        if config.get("normalize", False) is not False:
            raise RunFolderError(f"{files.model.parent} lacks {VECNORMALIZE_FILE}: the run normalised its "
                                 f"observations (config.yaml: normalize={config['normalize']}) and the policy "
                                 f"needs those statistics; copy the file next to {files.model.name}.")
        return None
    try:
        with files.normalizer.open("rb") as handle:
            venv = pickle.load(handle)
        rms, norm_obs = venv.obs_rms, venv.norm_obs
        clip, epsilon = float(venv.clip_obs), float(venv.epsilon)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise RunFolderError(f"{files.normalizer} is corrupt or not VecNormalize statistics "
                             f"({type(exc).__name__}: {exc}).") from exc
    if not norm_obs:
        return None
    if isinstance(rms, dict):
        raise RunFolderError(f"{files.normalizer} normalises a Dict observation space; agents take flat Box "
                             f"observations.")
    return ObservationStats(np.asarray(rms.mean, dtype=np.float64), np.asarray(rms.var, dtype=np.float64), clip,
                            epsilon)


def load_policy(model_path: Path, device: str | torch.device = "cpu") -> BasePolicy:
    """The policy of a stable-baselines3 model zip, rebuilt from its constructor arguments and weights."""
    try:
        data, params, _ = load_from_zip_file(model_path, device=device)
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError, RuntimeError, ImportError,
            pickle.UnpicklingError) as exc:
        raise RunFolderError(f"{model_path} is corrupt or not a stable-baselines3 model zip "
                             f"({type(exc).__name__}: {exc}); use another checkpoint (best/, checkpoints/).") from exc
    missing = [key for key in ("policy_class", "observation_space", "action_space") if key not in (data or {})]
    if missing or "policy" not in params:
        raise RunFolderError(f"{model_path} lacks {missing or ['policy weights']}; it is not a complete "
                             f"stable-baselines3 model.")
    policy_class = data["policy_class"]
    if not isinstance(policy_class, type):
        raise RunFolderError(f"{model_path} names a policy class that cannot be imported here ({policy_class!r}); "
                             f"install the package it was trained with.")
    policy = policy_class(data["observation_space"], data["action_space"], lambda _: 0.0,
                          use_sde=data.get("use_sde", False), **data.get("policy_kwargs", {}))
    try:
        policy.load_state_dict(params["policy"])
    except RuntimeError as exc:
        raise RunFolderError(f"the weights in {model_path} do not fit its policy ({exc}).") from exc
    return policy.to(device).eval()


def load_run(path: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Policy, observation statistics and configuration of a run folder or model zip."""
    files = locate(path)
    config = read_config(files)
    stats = load_observation_stats(files, config)
    return LoadedRun(load_policy(files.model, device), files, stats, config)
