"""What a checkpoint saves beyond the model zip, so that a resumed run continues instead of restarting.

* Random generator states: python's ``random``, numpy's global generator, torch (CPU, and CUDA when in
  use) and the model's action space, captured with every checkpoint and restored after loading it.
* The sizes of the run's Monitor CSV files, so that resuming cuts off the episodes a killed run logged
  after its last checkpoint: the resumed run steps through that stretch again, and each counted step
  appears in the CSVs once.

The policy, optimiser state, timestep counter and learning-rate schedule position (``num_timesteps`` and
``_total_timesteps`` give ``progress_remaining``) travel in the model zip, the VecNormalize statistics in
their own file. Environments in general cannot be saved (MuJoCo simulator state, subprocess copies): a
resumed run resets them, seeded from ``seed + timesteps``, so the episode in progress at the checkpoint
starts over.
"""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm

__all__ = ["STATE_VERSION", "capture_training_state", "restore_training_state", "capture_random_state",
           "restore_random_state", "monitor_sizes", "rewind_monitor_files"]

STATE_VERSION = 1
MONITOR_PATTERN = "*.monitor.csv"


def capture_random_state(model: BaseAlgorithm) -> dict[str, Any]:
    """The states of every random generator training draws from (global ones and the action space's)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "action_space": model.action_space.np_random.bit_generator.state,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(model: BaseAlgorithm, state: dict[str, Any]) -> None:
    """Put the generators back into the states :func:`capture_random_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    model.action_space.np_random.bit_generator.state = state["action_space"]
    cuda = state.get("torch_cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def monitor_sizes(folder: str | Path | None) -> dict[str, int]:
    """Byte sizes of the Monitor CSVs in ``folder`` (they are flushed after every episode, so sizes fall
    between complete rows)."""
    if folder is None or not Path(folder).is_dir():
        return {}
    return {path.name: path.stat().st_size for path in sorted(Path(folder).glob(MONITOR_PATTERN))}


def rewind_monitor_files(folder: str | Path, sizes: dict[str, int]) -> list[Path]:
    """Truncate each Monitor CSV in ``folder`` to its size in ``sizes`` (files it does not list stay as they are);
    returns the files that were cut.

    Only regular files directly in ``folder`` whose names match :data:`MONITOR_PATTERN` are touched: a name
    with a path in it, or a symbolic link (which could lead outside the run folder), is left alone.
    """
    cut = []
    for name, size in sizes.items():
        path = Path(folder) / str(name)
        if Path(str(name)).name != name or not path.match(MONITOR_PATTERN) or not isinstance(size, int) or size < 0:
            continue
        try:
            descriptor = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except OSError:  # missing, or a symbolic link
            continue
        with os.fdopen(descriptor, "r+b") as handle:
            if stat.S_ISREG(os.fstat(descriptor).st_mode) and os.fstat(descriptor).st_size > size:
                handle.truncate(size)
                handle.flush()
                os.fsync(descriptor)
                cut.append(path)
    return cut


def capture_training_state(model: BaseAlgorithm, monitor_dir: str | Path | None = None) -> dict[str, Any]:
    """Everything :func:`restore_training_state` needs, as one dict (saved as JSON by
    :func:`ltc_rl.rl.safe_files.write_state`)."""
    return {"version": STATE_VERSION, "timesteps": int(model.num_timesteps), "random": capture_random_state(model),
            "monitor_sizes": monitor_sizes(monitor_dir)}


def restore_training_state(model: BaseAlgorithm, state: dict[str, Any] | None, seed: int) -> None:
    """Seed a just-loaded ``model`` and its environment with ``seed``, then restore the saved generator states.

    Loading a model re-seeds everything with its original seed, which would replay the run's first episodes;
    ``seed`` (the pipeline passes ``seed + timesteps``) seeds the environment resets instead. Without a saved
    ``state`` (a checkpoint of an older version) the global generators keep that seeding.
    """
    model.set_random_seed(seed)
    if state is not None and "random" in state:
        restore_random_state(model, state["random"])
