"""A run folder and everything read back from it: :class:`RunFolder`, the one reader of what a run left behind.

A run folder (layout: :mod:`ltc_rl.runs.layout`) holds ``config.yaml``, ``model.zip``, ``vecnormalize.npz``
(when observations were normalised), ``best/`` (the best evaluated model and its statistics) and
``checkpoints/``. :class:`RunFolder` reads the configuration (:func:`read_config_file` is the only parser of
``config.yaml`` in the project), finds the model files that belong together (a folder without ``model.zip``
stands for its newest checkpoint), and loads the model (with its algorithm, for training and evaluation), the
policy alone (no algorithm object, no environment: for agents) or the observation statistics. The agents,
``evaluate.py``, ``collect_traces.py``, sweeps and ``--resume`` all read runs through it.

Every problem (a missing file, a corrupt one, a zip that is not a stable-baselines3 model) raises
:class:`RunFolderError` saying which file and what to do. Nothing is unpickled (:mod:`ltc_rl.rl.safe_files`)
unless ``trust_pickle`` is given for files of older versions.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.vec_env import VecEnv

from ltc_rl.errors import ModelFileError
from ltc_rl.rl.safe_files import NormalizationStats, reason
from ltc_rl.runs.config import RunConfig
from ltc_rl.runs.layout import BEST_FOLDER, CHECKPOINT_FOLDER, VECNORMALIZE_FILE, checkpoints, config_file
from ltc_rl.runs.run_files import ModelFiles, latest_checkpoint, resolve_model_files
from ltc_rl.runs.serialization import inspect_model_file, load_model, read_normalization

__all__ = ["RunFolderError", "RunFiles", "ObservationStats", "LoadedRun", "RunFolder", "read_config_file",
           "load_run"]


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


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The ``config.yaml`` at ``path`` as written (configuration, versions, sessions): the one parser of that
    file. :class:`RunFolderError` if it is unreadable or not a run configuration."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise RunFolderError(f"{path} is unreadable ({type(exc).__name__}): {detail}; restore it, or start a new "
                             "run (its settings are also in logs/).") from exc
    if not isinstance(document, dict) or "env_id" not in document:
        what = "no env_id" if isinstance(document, dict) else f"a {type(document).__name__}"
        raise RunFolderError(f"{path} is not a run configuration ({what}); it was not written by "
                             "scripts/train.py.")
    return document


class RunFolder:
    """A run written by :mod:`ltc_rl.runs.training`: its folder (or the ``best/`` or ``checkpoints/`` folder in
    it), its ``model.zip`` or one of its checkpoint zips.

    ``best`` / ``checkpoint`` (rl-zoo's ``--load-best`` / ``--load-checkpoint``) choose the model the methods
    read: ``best/model.zip``, or the checkpoint at that many steps; by default ``model.zip``, else the newest
    checkpoint (with a :class:`~ltc_rl.runs.run_files.CheckpointWarning` saying so).
    """

    def __init__(self, path: str | Path, trust_pickle: bool = False) -> None:
        self.path = Path(path)
        self.trust_pickle = trust_pickle
        self._files: dict[tuple[bool, int | None], ModelFiles] = {}

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ------------------------------------------------------------------ configuration
    @property
    def root(self) -> Path:
        """The run folder itself (where ``config.yaml``, ``best/`` and ``checkpoints/`` are)."""
        folder = self.path if self.path.is_dir() else self.path.parent
        return folder.parent if folder.name in (BEST_FOLDER, CHECKPOINT_FOLDER) else folder

    @property
    def config_path(self) -> Path | None:
        """The run's ``config.yaml`` (beside the model or one folder up), None for a bare model zip."""
        return config_file(self.path if self.path.is_dir() else self.path.parent)

    @cached_property
    def document(self) -> dict[str, Any]:
        """``config.yaml`` as written (configuration, versions, sessions); empty without one."""
        return {} if self.config_path is None else read_config_file(self.config_path)

    @property
    def config(self) -> RunConfig | None:
        """The run's configuration, typed; None without ``config.yaml``
        (:class:`~ltc_rl.errors.ConfigError` if it lacks entries or names an unknown algorithm)."""
        return RunConfig.from_dict(self.document) if self.document else None

    # ------------------------------------------------------------------ files
    def model_files(self, best: bool = False, checkpoint: int | None = None) -> ModelFiles:
        """The model zip, statistics and config that belong together (see the class docstring)."""
        key = (best, checkpoint)
        if key not in self._files:
            try:
                self._files[key] = resolve_model_files(self.path, best, checkpoint)
            except ModelFileError as error:
                raise RunFolderError(str(error)) from error
        return self._files[key]

    def model_path(self, best: bool = False, checkpoint: int | None = None) -> Path:
        """The model zip the run stands for (see the class docstring)."""
        return self.model_files(best, checkpoint).model

    def checkpoints(self) -> list[tuple[int, Path]]:
        """``(timesteps, model zip)`` of every checkpoint of the run, oldest first (nothing read yet)."""
        return checkpoints(self.root / CHECKPOINT_FOLDER)

    def latest_checkpoint(self) -> tuple[int, Path, Path | None] | None:
        """``(timesteps, model zip, statistics or None)`` of the newest readable checkpoint, None without one
        (unreadable ones skipped with a warning: :func:`~ltc_rl.runs.run_files.latest_checkpoint`)."""
        return latest_checkpoint(self.root / CHECKPOINT_FOLDER, trust_pickle=self.trust_pickle)

    # ------------------------------------------------------------------ loading
    def normalization(self, best: bool = False, checkpoint: int | None = None) -> NormalizationStats | None:
        """The VecNormalize statistics saved with the model, or None where the run did not normalise.

        A run whose ``config.yaml`` says it normalised but whose statistics are missing is an error: the
        policy would see inputs on the wrong scale.
        """
        files = self.model_files(best, checkpoint)
        if files.normalizer is None:
            normalize = self.document.get("normalize", False)
            if normalize is not False:
                raise RunFolderError(f"{files.model.parent} lacks {VECNORMALIZE_FILE}: the run normalised its "
                                     f"observations (config.yaml: normalize={normalize}) and the policy needs "
                                     f"those statistics; copy the file next to {files.model.name}.")
            return None
        try:
            return read_normalization(files.normalizer, self.trust_pickle)
        except ModelFileError as error:
            raise RunFolderError(str(error)) from error

    def observation_stats(self, best: bool = False, checkpoint: int | None = None) -> ObservationStats | None:
        """What the saved normalisation does to (flat Box) observations, None where observations were not
        normalised."""
        stats = self.normalization(best, checkpoint)
        if stats is None or not stats.norm_obs:
            return None
        if set(stats.obs_rms) != {""}:
            raise RunFolderError(f"{self.model_files(best, checkpoint).normalizer} normalises a Dict observation "
                                 "space; agents take flat Box observations.")
        return ObservationStats(np.asarray(stats.flat.mean, dtype=np.float64),
                                np.asarray(stats.flat.var, dtype=np.float64), stats.clip_obs, stats.epsilon)

    def load_policy(self, best: bool = False, checkpoint: int | None = None,
                    device: str | torch.device = "cpu") -> BasePolicy:
        """The policy of the model, rebuilt from its saved constructor arguments and weights alone (no
        algorithm object, no environment)."""
        model_path = self.model_path(best, checkpoint)
        try:
            data = inspect_model_file(model_path, self.trust_pickle)  # archive, checksums and metadata first
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
            raise RunFolderError(f"{model_path} names a policy class that cannot be imported here "
                                 f"({policy_class!r}); install the package it was trained with.")
        policy = policy_class(data["observation_space"], data["action_space"], lambda _: 0.0,
                              use_sde=data.get("use_sde", False), **data.get("policy_kwargs", {}))
        try:
            policy.load_state_dict(params["policy"])
        except RuntimeError as exc:
            raise RunFolderError(f"the weights in {model_path} do not fit its policy ({exc}).") from exc
        return policy.to(device).eval()

    def load_model(self, env: VecEnv | None = None, best: bool = False, checkpoint: int | None = None,
                   device: str = "auto", algorithm: type[BaseAlgorithm] | None = None) -> BaseAlgorithm:
        """The model with its algorithm (``RecurrentPPO`` or SB3's ``PPO``), its spaces checked against ``env``
        (see :func:`~ltc_rl.runs.serialization.load_model`)."""
        return load_model(self.model_path(best, checkpoint), env=env, device=device, algorithm=algorithm,
                          trust_pickle=self.trust_pickle)


def load_run(path: str | Path, device: str | torch.device = "cpu", trust_pickle: bool = False, best: bool = False,
             checkpoint: int | None = None) -> LoadedRun:
    """Policy, observation statistics and configuration of a run folder or model zip, read through
    :class:`RunFolder` (what :meth:`agents.LTCAgent.load` needs)."""
    run = RunFolder(path, trust_pickle)
    files = run.model_files(best, checkpoint)
    config = run.document
    stats = run.observation_stats(best, checkpoint)
    return LoadedRun(run.load_policy(best, checkpoint, device), files, stats, config)
