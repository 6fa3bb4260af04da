"""Reading what a training run left behind: model zip, observation statistics and configuration.

A run folder (see :mod:`ltc_rl.runs.training`) holds ``model.zip``, ``vecnormalize.npz`` (when observations
were normalised), ``config.yaml``, ``best/`` (the best evaluated model and its statistics) and
``checkpoints/``; :func:`locate` finds the files that belong together. Every problem (a missing file, a
corrupt one, a zip that is not a stable-baselines3 model) raises :class:`RunFolderError` saying which file
and what to do.

The policy is rebuilt from the zip's saved constructor arguments and weights alone: no algorithm
object and no environment are created, and nothing is unpickled (:mod:`ltc_rl.rl.safe_files`) unless
``trust_pickle`` is given for files of older versions.
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
from ltc_rl.runs.layout import VECNORMALIZE_FILE
from ltc_rl.runs.run_files import ModelFiles, resolve_model_files
from ltc_rl.rl.safe_files import read_model_data, reason
from ltc_rl.runs.serialization import read_normalization

__all__ = ["RunFolderError", "RunFiles", "ObservationStats", "LoadedRun", "locate", "read_config",
           "load_observation_stats", "load_policy", "load_run"]


class RunFolderError(ModelFileError):
    """A run folder or model file is missing, incomplete or corrupt (a ``ValueError``)."""


#: The files of one trained model: its zip, its VecNormalize statistics and the run's config (if any).
RunFiles = ModelFiles


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


def locate(path: str | Path, best: bool = False, checkpoint: int | None = None) -> RunFiles:
    """The files behind ``path``: a run folder (or its ``best/`` or ``checkpoints/`` folder), a ``model.zip`` or
    a checkpoint zip; ``best`` / ``checkpoint`` choose ``best/`` or the checkpoint at that many steps.

    The one resolution of the project (:func:`ltc_rl.runs.run_files.resolve_model_files`): a run folder without
    ``model.zip`` stands for its newest checkpoint (with a warning saying so), and a checkpoint zip brings
    its own statistics file.
    """
    try:
        return resolve_model_files(path, best, checkpoint)
    except ModelFileError as error:
        raise RunFolderError(str(error)) from error


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


def load_observation_stats(files: RunFiles, config: dict[str, Any],
                           trust_pickle: bool = False) -> ObservationStats | None:
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
        stats = read_normalization(files.normalizer, trust_pickle)
    except ModelFileError as error:
        raise RunFolderError(str(error)) from error
    if not stats.norm_obs:
        return None
    if set(stats.obs_rms) != {""}:
        raise RunFolderError(f"{files.normalizer} normalises a Dict observation space; agents take flat Box "
                             f"observations.")
    return ObservationStats(np.asarray(stats.flat.mean, dtype=np.float64), np.asarray(stats.flat.var,
                                                                                      dtype=np.float64),
                            stats.clip_obs, stats.epsilon)


def load_policy(model_path: Path, device: str | torch.device = "cpu", trust_pickle: bool = False) -> BasePolicy:
    """The policy of a stable-baselines3 model zip, rebuilt from its constructor arguments and weights."""
    try:
        data = read_model_data(model_path, trust_pickle)
        _, params, _ = load_from_zip_file(model_path, load_data=False, device=device)
    except ModelFileError as error:
        raise RunFolderError(str(error)) from error
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError, TypeError, RuntimeError,
            UnicodeDecodeError, pickle.UnpicklingError) as exc:
        raise RunFolderError(f"{model_path} is corrupt or not a stable-baselines3 model zip "
                             f"({reason(exc)}); use another checkpoint (best/, checkpoints/).") from exc
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


def load_run(path: str | Path, device: str | torch.device = "cpu", trust_pickle: bool = False, best: bool = False,
             checkpoint: int | None = None) -> LoadedRun:
    """Policy, observation statistics and configuration of a run folder or model zip (see :func:`locate`)."""
    files = locate(path, best, checkpoint)
    config = read_config(files)
    stats = load_observation_stats(files, config, trust_pickle)
    return LoadedRun(load_policy(files.model, device, trust_pickle), files, stats, config)
