"""The files of a run folder and which of them belong together: the one place that answers "which model file,
which statistics file, which config" for the agents, ``evaluate.py``, ``collect_traces.py`` and ``--resume``.

The names and the layout are those of :mod:`ltc_rl.runs.layout`; this module reads the files (checkpoints
checked before they are trusted, :func:`latest_checkpoint` for ``--resume``).
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ltc_rl.errors import LtcRlWarning, ModelFileError
from ltc_rl.rl.safe_files import read_legacy_pickle, read_state, reason
from ltc_rl.runs.layout import (BEST_FOLDER, CHECKPOINT_FOLDER, MODEL_FILE, checkpoint_files, config_file,
                                checkpoint_steps, checkpoints, statistics_file, state_file)
from ltc_rl.runs.serialization import inspect_model_file, read_normalization

__all__ = ["ModelFiles", "CheckpointWarning", "read_training_state", "check_checkpoint", "latest_checkpoint",
           "resolve_model_files"]

class CheckpointWarning(LtcRlWarning):
    """An unreadable checkpoint was passed over in favour of an older one, or a checkpoint stands in for a
    missing ``model.zip``."""


@dataclass(frozen=True)
class ModelFiles:
    """The files of one trained model: its zip, its VecNormalize statistics and the run's config (if any)."""

    model: Path
    normalizer: Path | None
    config: Path | None


def read_training_state(model: str | Path, trust_pickle: bool = False) -> dict[str, Any] | None:
    """The training state saved with the checkpoint zip ``model`` (see :mod:`ltc_rl.runs.run_state`), or None for
    checkpoints without one; :class:`ModelFileError` if it is unreadable or a pickle that is not trusted."""
    path = state_file(model)
    if path is None:
        return None
    try:
        state = read_state(path) if path.suffix == ".json" else read_legacy_pickle(path, "checkpoint state",
                                                                                   trust_pickle)
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - JSON, base64 and (trusted) unpickling fail in many ways
        raise ModelFileError(f"checkpoint state {path} is unreadable ({reason(exc)}): truncated, "
                             "corrupt or not written by this project.") from exc
    if not isinstance(state, dict) or "random" not in state:
        raise ModelFileError(f"checkpoint state {path} is not a training state written by this project.")
    return state


def _non_finite_weights(model: Path) -> str | None:
    """Which tensor of the zip's ``policy.pth`` holds NaN / infinity (read with ``weights_only``), or None."""
    with zipfile.ZipFile(model) as archive, archive.open("policy.pth") as handle:
        weights = torch.load(handle, map_location="cpu", weights_only=True)
    return next((f"weight {name!r} holds NaN/inf" for name, value in weights.items()
                 if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all()), None)


def check_checkpoint(model: Path, trust_pickle: bool = False) -> None:
    """Raise :class:`ModelFileError` unless the checkpoint zip ``model``, its statistics and its state are
    readable and hold finite numbers (a "good" checkpoint)."""
    steps = checkpoint_steps(model)
    data = inspect_model_file(model, trust_pickle)
    if data.get("num_timesteps") != steps:
        raise ModelFileError(f"{model} holds {data.get('num_timesteps')} timesteps, not {steps}.")
    try:
        problem = _non_finite_weights(model)
    except Exception as exc:  # noqa: BLE001 - torch's restricted unpickler fails in many ways
        raise ModelFileError(f"the weights in {model} are unreadable ({reason(exc)}).") from exc
    if problem is not None:
        raise ModelFileError(f"{model}: {problem}.")
    stats = statistics_file(model)
    if stats is not None:
        read_normalization(stats, trust_pickle)
    read_training_state(model, trust_pickle)


def latest_checkpoint(folder: str | Path, validate: bool = True,
                      trust_pickle: bool = False) -> tuple[int, Path, Path | None] | None:
    """``(timesteps, model zip, VecNormalize file or None)`` of the newest checkpoint in ``folder``, or None.

    With ``validate``, a checkpoint that is unreadable (truncated or corrupt zip, statistics or state) or holds
    NaN / infinity is skipped with a :class:`CheckpointWarning` in favour of the next older one; if none is
    good, :class:`ModelFileError` names them. A pickle-only checkpoint without ``trust_pickle`` is refused
    (:class:`ModelFileError` naming ``--trust-pickle``), not skipped.
    """
    folder = Path(folder)
    skipped = []
    for steps, model_path in reversed(checkpoints(folder)):
        if validate:
            try:
                check_checkpoint(model_path, trust_pickle)
            except ModelFileError as error:
                if "--trust-pickle" in str(error):
                    raise
                skipped.append(model_path.name)
                warnings.warn(f"skipping unreadable checkpoint {model_path.name}: {error}", CheckpointWarning,
                              stacklevel=2)
                continue
        return steps, model_path, statistics_file(model_path)
    if skipped:
        raise ModelFileError(f"no readable checkpoint in {folder} ({', '.join(skipped)}: see the warnings); the run "
                             "cannot be resumed, start it again with a new --output.")
    return None


def _listing(folder: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    return ", ".join(names) if names else "nothing"


def _run_folder_model(folder: Path, best: bool, checkpoint: int | None) -> Path:
    """The model zip a run folder (or its ``best/`` or ``checkpoints/`` folder) stands for."""
    run = folder.parent if folder.name in (BEST_FOLDER, CHECKPOINT_FOLDER) else folder
    if best:
        model = run / BEST_FOLDER / MODEL_FILE
        if not model.is_file():
            raise ModelFileError(f"{run} has no {BEST_FOLDER}/{MODEL_FILE} (no evaluation ran yet); drop "
                                 "--load-best to load the final model or the newest checkpoint.")
        return model
    if checkpoint is not None:
        found = checkpoints(run / CHECKPOINT_FOLDER)
        model = checkpoint_files(run / CHECKPOINT_FOLDER, checkpoint)[0]
        if not model.is_file():
            available = ", ".join(str(steps) for steps, _ in found) or "none"
            raise ModelFileError(f"{run} has no checkpoint at {checkpoint} steps (available: {available}); pass "
                                 "one of those to --load-checkpoint.")
        return model
    if (folder / MODEL_FILE).is_file():
        return folder / MODEL_FILE
    found = checkpoints(folder if folder.name == CHECKPOINT_FOLDER else run / CHECKPOINT_FOLDER)
    if found:
        steps, model = found[-1]
        warnings.warn(f"{folder} has no {MODEL_FILE} (the run did not finish); using its newest checkpoint "
                      f"{model.name} ({steps} steps)", CheckpointWarning, stacklevel=3)
        return model
    hint = f" ({run / BEST_FOLDER / MODEL_FILE} exists: pass --load-best)" \
        if (run / BEST_FOLDER / MODEL_FILE).is_file() else ""
    raise ModelFileError(f"run folder {folder} has no {MODEL_FILE} and no checkpoint (it holds: {_listing(folder)}); "
                         f"the run stopped before its first checkpoint{hint}, or this is not a run folder.")


def resolve_model_files(path: str | Path, best: bool = False, checkpoint: int | None = None) -> ModelFiles:
    """The model zip, statistics and config behind ``path``: a run folder, its ``best/`` or ``checkpoints/``
    folder, a ``model.zip`` or a checkpoint zip.

    ``best`` picks ``best/model.zip``, ``checkpoint`` the checkpoint at that many steps (rl-zoo's
    ``--load-best`` / ``--load-checkpoint``); a run folder without ``model.zip`` stands for its newest
    checkpoint (with a :class:`CheckpointWarning` saying so). The statistics are those of
    :func:`statistics_file`; ``config.yaml`` is taken from the model's folder or its parent.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path} does not exist; pass a run folder written by scripts/train.py (or a model "
                             ".zip).")
    if path.is_dir():
        model = _run_folder_model(path, best, checkpoint)
    elif path.suffix == ".zip":
        if best or checkpoint is not None:
            raise ModelFileError(f"--load-best and --load-checkpoint choose a model in a run folder; pass the run "
                                 f"folder instead of {path}.")
        model = path
    else:
        raise ModelFileError(f"{path} is neither a run folder nor a model .zip.")
    return ModelFiles(model, statistics_file(model), config_file(model.parent))

