"""The layout of a run folder: every file and folder name, and which checkpoint files belong together.

A run folder holds::

    config.yaml              fully resolved configuration, seed, package versions, sessions
    model.zip                final model            vecnormalize.npz   its VecNormalize statistics
    best/                    best model by periodic evaluation (model.zip, vecnormalize.npz)
    checkpoints/             ckpt_<steps>_steps.zip + ckpt_<steps>_steps_vecnormalize.npz
                             + ckpt_<steps>_steps_state.json, at step 0 and periodically (for --resume)
    evaluations.npz          evaluation history     learning_curve.png evaluation + training returns
    monitor/                 Monitor CSVs of the training environments
    logs/session_<k>/        progress.csv and TensorBoard events of each (resumed) session

Older versions wrote the statistics and state as pickles (``vecnormalize.pkl``, ``_state.pkl``); they are
found too and load only when trusted (:mod:`ltc_rl.rl.safe_files`). This module only names paths (it reads
nothing but folder listings), so every other module can use it without importing the pipeline.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["MODEL_FILE", "VECNORMALIZE_FILE", "LEGACY_VECNORMALIZE_FILE", "CONFIG_FILE", "EVALUATIONS_FILE",
           "LEARNING_CURVE_FILE", "CHECKPOINT_FOLDER", "BEST_FOLDER", "MONITOR_FOLDER", "LOGS_FOLDER",
           "is_checkpoint", "checkpoint_steps", "checkpoint_files", "checkpoints", "checkpoint_members",
           "statistics_file", "state_file", "config_file", "session_log_folder"]

MODEL_FILE = "model.zip"
VECNORMALIZE_FILE = "vecnormalize.npz"
LEGACY_VECNORMALIZE_FILE = "vecnormalize.pkl"
CONFIG_FILE = "config.yaml"
EVALUATIONS_FILE = "evaluations.npz"
LEARNING_CURVE_FILE = "learning_curve.png"
CHECKPOINT_FOLDER = "checkpoints"
BEST_FOLDER = "best"
MONITOR_FOLDER = "monitor"
LOGS_FOLDER = "logs"
TRAINING_STATE_SUFFIX = "_state.json"
LEGACY_TRAINING_STATE_SUFFIX = "_state.pkl"
_CHECKPOINT = re.compile(r"^ckpt_(\d+)_steps\.zip$")


def is_checkpoint(model: str | Path) -> bool:
    """Whether ``model`` is named as a checkpoint zip (``ckpt_<steps>_steps.zip``)."""
    return _CHECKPOINT.match(Path(model).name) is not None


def checkpoint_steps(model: str | Path) -> int:
    """The timesteps in the name of the checkpoint zip ``model`` (``ValueError`` for other names)."""
    match = _CHECKPOINT.match(Path(model).name)
    if match is None:
        raise ValueError(f"{model} is not named as a checkpoint (ckpt_<steps>_steps.zip)")
    return int(match.group(1))


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
    if is_checkpoint(model):
        return _sibling(model, f"_{VECNORMALIZE_FILE}", f"_{LEGACY_VECNORMALIZE_FILE}")
    found = [model.parent / name for name in (VECNORMALIZE_FILE, LEGACY_VECNORMALIZE_FILE)]
    return next((path for path in found if path.is_file()), None)


def state_file(model: str | Path) -> Path | None:
    """The training state saved with the checkpoint zip ``model`` (None for checkpoints without one)."""
    return _sibling(Path(model), TRAINING_STATE_SUFFIX, LEGACY_TRAINING_STATE_SUFFIX)


def config_file(folder: str | Path) -> Path | None:
    """The ``config.yaml`` of the run a model in ``folder`` belongs to: in ``folder`` (the run folder) or one up
    (``best/``, ``checkpoints/``); None for a model outside a run folder."""
    folder = Path(folder)
    return next((path for path in (folder / CONFIG_FILE, folder.parent / CONFIG_FILE) if path.is_file()), None)


def session_log_folder(run_dir: str | Path, session: int) -> Path:
    """Where the SB3 logger of the run's ``session``-th session (1, 2, ...) writes ``progress.csv``."""
    return Path(run_dir) / LOGS_FOLDER / f"session_{session}"
