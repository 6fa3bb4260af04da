"""Trace files and the paper's sequence-prediction dataset.

A *trace* is one ``.npy`` file holding a ``(steps, obs_dim)`` array of consecutive
observations (the LTC paper's Half-Cheetah traces are ``trace_0000.npy`` ...
``trace_0030.npy``, 1000 x 17 each). The paper's protocol (``experiments_with_ltcs/cheetah.py``
of raminmh/liquid_time_constant_networks), followed here exactly:

* sort the file names; the first 5 files are validation, the next 10 test, the next 10
  training (later files are unused);
* cut every trace into windows of 32 steps starting every 10 steps; the target of a window
  is the same window shifted by one step (predict the next observation at every step).
  Window starts are ``range(0, steps - seq_len - 1, stride)`` as in the paper's code, which
  gives 97 windows per 1000-step trace (the last possible window is not used);
* no normalisation: the paper feeds the raw observations (cast to float32) and reports MSE
  in raw units, so the numbers stay comparable with its table.

The paper's 31 traces come from its repository (:data:`PAPER_DATA_SOURCE`, Apache-2.0 licence);
:func:`default_data_dir` finds a copy without ``--data``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ltc_rl.errors import ConfigError, DataError, MissingFileError

__all__ = ["TRACE_PATTERN", "DATA_ENV_VAR", "PAPER_DATA_SOURCE", "SequenceSplit", "SequenceSplits",
           "default_data_dir", "list_traces", "load_trace", "cut_windows", "load_splits"]

#: Environment variable naming the folder of the paper's traces (read by :func:`default_data_dir`).
DATA_ENV_VAR = "LTC_RL_CHEETAH_DATA"
#: Where the paper's Half-Cheetah traces are published, and their licence.
PAPER_DATA_SOURCE = ("https://github.com/raminmh/liquid_time_constant_networks, folder "
                     "experiments_with_ltcs/data/cheetah (trace_0000.npy ... trace_0030.npy; Apache-2.0 licence)")
#: Where a checkout keeps them by default, relative to the working directory or to the checkout.
_SHARED_DATA = Path("..") / "shared" / "data" / "cheetah"
_HOW_TO_GET = (f"the paper's traces are at {PAPER_DATA_SOURCE}: download the folder and pass --data FOLDER or set "
               f"{DATA_ENV_VAR}=FOLDER; or record your own with scripts/collect_traces.py")


def default_data_dir() -> Path:
    """The paper's traces: ``$LTC_RL_CHEETAH_DATA`` if set, else ``../shared/data/cheetah`` beside the working
    directory or beside this checkout; :class:`MissingFileError` saying how to get them when none exists."""
    configured = os.environ.get(DATA_ENV_VAR)
    if configured:
        return Path(configured)
    checkout = Path(__file__).resolve().parents[2]
    for candidate in (Path.cwd() / _SHARED_DATA, checkout / _SHARED_DATA):
        if candidate.is_dir():
            return candidate.resolve()
    raise MissingFileError(f"no trace folder given (--data) and none at {_SHARED_DATA} or in ${DATA_ENV_VAR}; "
                           f"{_HOW_TO_GET}.")

#: File names the loader picks up (and :func:`ltc_rl.seqpred.traces.collect_traces` writes).
TRACE_PATTERN = "*.npy"


@dataclass
class SequenceSplit:
    """Inputs and next-step targets of one split, both ``(windows, seq_len, obs_dim)`` float32."""

    x: Tensor
    y: Tensor
    files: list[Path]

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class SequenceSplits:
    """The paper's validation / test / training splits of a trace folder."""

    train: SequenceSplit
    valid: SequenceSplit
    test: SequenceSplit
    obs_dim: int
    seq_len: int
    stride: int

    def describe(self) -> str:
        return (f"{len(self.train)} train / {len(self.valid)} valid / {len(self.test)} test windows of "
                f"{self.seq_len} x {self.obs_dim} (stride {self.stride}; files: {len(self.train.files)} train, "
                f"{len(self.valid.files)} valid, {len(self.test.files)} test)")


def list_traces(folder: str | Path) -> list[Path]:
    """The sorted ``.npy`` trace files of ``folder``; a missing or empty folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"trace folder {str(folder)!r} does not exist; {_HOW_TO_GET}.")
    files = sorted(folder.glob(TRACE_PATTERN))
    if not files:
        raise MissingFileError(f"trace folder {str(folder)!r} holds no .npy files; {_HOW_TO_GET}.")
    return files


def load_trace(path: str | Path, min_steps: int = 2) -> np.ndarray:
    """One trace as a float32 ``(steps, obs_dim)`` array; other shapes or non-finite values are errors."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"trace {str(path)!r} is unreadable ({type(exc).__name__}: {exc}): truncated, corrupt or not "
                        "a .npy array; record it again (scripts/collect_traces.py) or remove it from the folder.") from exc
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        raise DataError(f"trace {str(path)!r} has shape {array.shape}; a trace must be a 2-D (steps, obs_dim) array.")
    if array.shape[0] < min_steps:
        raise DataError(f"trace {str(path)!r} has {array.shape[0]} steps; at least {min_steps} are needed to cut one "
                         "window (lower seq_len or record longer traces).")
    if array.shape[1] < 1:
        raise DataError(f"trace {str(path)!r} has shape {array.shape}: no observation columns; record it again "
                        "(scripts/collect_traces.py) or remove it.")
    if np.iscomplexobj(array):
        raise DataError(f"trace {str(path)!r} holds complex values; traces are real (steps, obs_dim) arrays, record it "
                        "again or store the real and imaginary parts as separate columns.")
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
        raise DataError(f"trace {str(path)!r} contains non-numeric or non-finite values; record it again or remove it.")
    return array.astype(np.float32)


def cut_windows(trace: np.ndarray, seq_len: int = 32, stride: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``x = trace[s:s+seq_len]`` and targets ``y = trace[s+1:s+seq_len+1]`` for ``s`` in
    ``range(0, steps - seq_len - 1, stride)`` (the paper's cutting); shapes ``(windows, seq_len, obs_dim)``."""
    if seq_len < 1 or stride < 1:
        raise ConfigError(f"seq_len and stride must be >= 1, got seq_len={seq_len}, stride={stride}.")
    starts = range(0, trace.shape[0] - seq_len - 1, stride)
    x = np.stack([trace[s:s + seq_len] for s in starts]) if len(starts) else np.zeros((0, seq_len, trace.shape[1]))
    y = np.stack([trace[s + 1:s + seq_len + 1] for s in starts]) if len(starts) else np.zeros_like(x)
    return x.astype(np.float32), y.astype(np.float32)


def _split(files: list[Path], seq_len: int, stride: int) -> tuple[SequenceSplit, int]:
    xs, ys, obs_dims = [], [], set()
    for path in files:
        trace = load_trace(path, min_steps=seq_len + 2)
        obs_dims.add(trace.shape[1])
        x, y = cut_windows(trace, seq_len, stride)
        xs.append(x)
        ys.append(y)
    if len(obs_dims) != 1:
        raise DataError(f"traces disagree on the observation size ({sorted(obs_dims)}); every file of the folder "
                         "must have the same number of columns.")
    split = SequenceSplit(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)), list(files))
    return split, obs_dims.pop()


def load_splits(folder: str | Path, seq_len: int = 32, stride: int = 10, n_valid: int = 5, n_test: int = 10,
                n_train: int = 10) -> SequenceSplits:
    """Load a trace folder into the paper's splits (sorted files: valid first, then test, then train)."""
    files = list_traces(folder)
    needed = n_valid + n_test + n_train
    if len(files) < needed:
        raise DataError(
            f"trace folder {str(folder)!r} holds {len(files)} .npy files but the split needs {needed} "
            f"({n_valid} validation + {n_test} test + {n_train} training); collect more traces "
            f"(scripts/collect_traces.py --episodes {needed}) or use a smaller split.")
    valid, dim_valid = _split(files[:n_valid], seq_len, stride)
    test, dim_test = _split(files[n_valid:n_valid + n_test], seq_len, stride)
    train, dim_train = _split(files[n_valid + n_test:needed], seq_len, stride)
    if len({dim_valid, dim_test, dim_train}) != 1:
        raise DataError(f"traces disagree on the observation size (valid {dim_valid}, test {dim_test}, "
                         f"train {dim_train}); every file of the folder must have the same number of columns.")
    return SequenceSplits(train=train, valid=valid, test=test, obs_dim=dim_train, seq_len=seq_len, stride=stride)
