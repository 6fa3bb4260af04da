"""The files of a run folder and which of them belong together: the one place that answers "which model file,
which statistics file, which config" for the agents, ``evaluate.py``, ``collect_traces.py`` and ``--resume``.

A run folder (see :mod:`ltc_rl.training`) holds ``model.zip`` + ``vecnormalize.npz``, ``best/`` (the same two
files) and ``checkpoints/ckpt_<steps>_steps.zip`` + ``ckpt_<steps>_steps_vecnormalize.npz`` +
``ckpt_<steps>_steps_state.json``. Older versions wrote the statistics and state as pickles
(``vecnormalize.pkl``, ``_state.pkl``); they are found too and load only when trusted
(:mod:`ltc_rl.rl.safe_files`).
"""

from __future__ import annotations

import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ltc_rl.errors import LtcRlWarning, ModelFileError
from ltc_rl.rl.safe_files import read_legacy_pickle, read_state, reason
from ltc_rl.rl.serialization import inspect_model_file, read_normalization

__all__ = ["MODEL_FILE", "VECNORMALIZE_FILE", "LEGACY_VECNORMALIZE_FILE", "CONFIG_FILE", "CHECKPOINT_FOLDER",
           "BEST_FOLDER", "ModelFiles", "CheckpointWarning", "checkpoint_files", "checkpoints", "checkpoint_members", "statistics_file",
           "state_file", "read_training_state", "check_checkpoint", "latest_checkpoint", "resolve_model_files"]

MODEL_FILE = "model.zip"
VECNORMALIZE_FILE = "vecnormalize.npz"
LEGACY_VECNORMALIZE_FILE = "vecnormalize.pkl"
CONFIG_FILE = "config.yaml"
CHECKPOINT_FOLDER = "checkpoints"
BEST_FOLDER = "best"
TRAINING_STATE_SUFFIX = "_state.json"
LEGACY_TRAINING_STATE_SUFFIX = "_state.pkl"
_CHECKPOINT = re.compile(r"^ckpt_(\d+)_steps\.zip$")


class CheckpointWarning(LtcRlWarning):
    """An unreadable checkpoint was passed over in favour of an older one, or a checkpoint stands in for a
    missing ``model.zip``."""


@dataclass(frozen=True)
class ModelFiles:
    """The files of one trained model: its zip, its VecNormalize statistics and the run's config (if any)."""

    model: Path
    normalizer: Path | None
    config: Path | None


def checkpoint_files(folder: str | Path, steps: int) -> tuple[Path, Path, Path]:
    """The model zip, VecNormalize statistics and training state this version writes for the checkpoint at
    ``steps`` in ``folder``."""
    folder = Path(folder)
    return (folder / f"ckpt_{steps}_steps.zip", folder / f"ckpt_{steps}_steps_{VECNORMALIZE_FILE}",
            folder / f"ckpt_{steps}_steps{TRAINING_STATE_SUFFIX}")


def checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """``(timesteps, model zip)`` of every checkpoint in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in folder.glob("ckpt_*_steps.zip") if (m := _CHECKPOINT.match(p.name)))


def checkpoint_members(model: str | Path) -> list[Path]:
    """Every file that may belong to the checkpoint zip ``model`` (this version's and older ones'), the zip
    first: deleting in this order never leaves a checkpoint that looks complete but is not."""
    model = Path(model)
    suffixes = (f"_{VECNORMALIZE_FILE}", f"_{LEGACY_VECNORMALIZE_FILE}", TRAINING_STATE_SUFFIX,
                LEGACY_TRAINING_STATE_SUFFIX)
    return [model, *(model.with_name(model.stem + suffix) for suffix in suffixes)]


def _sibling(model: Path, suffix: str, legacy_suffix: str) -> Path | None:
    """``<stem><suffix>`` beside a checkpoint zip, else its older-version form, else None."""
    found = [model.with_name(model.stem + s) for s in (suffix, legacy_suffix)]
    return next((path for path in found if path.is_file()), None)


def statistics_file(model: str | Path) -> Path | None:
    """The VecNormalize statistics that belong to the model zip ``model``, or None where there are none:
    ``ckpt_<n>_steps_vecnormalize.npz`` beside a checkpoint, ``vecnormalize.npz`` beside any other zip
    (the ``.pkl`` of an older version where the ``.npz`` is missing)."""
    model = Path(model)
    if _CHECKPOINT.match(model.name):
        return _sibling(model, f"_{VECNORMALIZE_FILE}", f"_{LEGACY_VECNORMALIZE_FILE}")
    found = [model.parent / name for name in (VECNORMALIZE_FILE, LEGACY_VECNORMALIZE_FILE)]
    return next((path for path in found if path.is_file()), None)


def state_file(model: str | Path) -> Path | None:
    """The training state saved with the checkpoint zip ``model`` (None for checkpoints without one)."""
    return _sibling(Path(model), TRAINING_STATE_SUFFIX, LEGACY_TRAINING_STATE_SUFFIX)


def read_training_state(model: str | Path, trust_pickle: bool = False) -> dict[str, Any] | None:
    """The training state saved with the checkpoint zip ``model`` (see :mod:`ltc_rl.rl.run_state`), or None for
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
    steps = int(_CHECKPOINT.match(model.name).group(1))  # type: ignore[union-attr]
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
    folder = model.parent
    config = next((c for c in (folder / CONFIG_FILE, folder.parent / CONFIG_FILE) if c.is_file()), None)
    return ModelFiles(model, statistics_file(model), config)

