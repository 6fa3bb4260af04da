"""Guards of a training run's environments and process: NaN / infinity from the environments, and stop signals.

* :class:`VecCheckFinite` wraps a VecEnv and raises :class:`~ltc_rl.errors.NonFiniteObservationError`
  at the step where an observation or reward is NaN or infinite, naming the environment index.
* :class:`StopRequest` turns the first SIGINT / SIGTERM into a request that training stops after the
  current environment step (so the checkpoint written then is consistent); a second signal interrupts
  at once.

The guards of the model itself (NaN / infinity in parameters, gradients, losses) belong to the algorithm:
:mod:`ltc_rl.rl.guards`.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from ltc_rl.errors import NonFiniteObservationError

__all__ = ["VecCheckFinite", "StopRequest"]


def _entries(values: np.ndarray) -> str:
    flat = np.asarray(values, dtype=np.float64).ravel()
    bad = np.flatnonzero(~np.isfinite(flat))
    shown = ", ".join(f"[{i}]={flat[i]}" for i in bad[:5])
    return shown + (" ..." if len(bad) > 5 else "")


class VecCheckFinite(VecEnvWrapper):
    """Checks every observation (also terminal observations) and reward of ``venv`` for NaN and infinity.

    ``name`` and ``start_step`` make the message ("training environment 1 (of 4) ... at timestep 2048"):
    the step counts environment transitions over all copies, as ``num_timesteps`` does. Each copy is told
    its index through ``set_wrapper_attr("env_index", i)``, so that a check inside a copy that raises first
    (``envs.wrappers.NonFiniteObservationCheck``) names it too.

    Why not SB3's ``VecCheckNan``: that one raises a plain ``ValueError`` listing the step's arrays (no
    environment index, no timestep), does not look into ``info["terminal_observation"]`` (where a NaN from the
    last step of an episode hides, since the VecEnv has already reset), and checks actions, which the policy
    produces. This one raises :class:`~ltc_rl.errors.NonFiniteObservationError`, which the scripts report in
    one line naming the environment and the step.
    """

    def __init__(self, venv: VecEnv, name: str = "environment", start_step: int = 0) -> None:
        super().__init__(venv)
        self.name, self.timesteps = name, int(start_step)
        for index in range(venv.num_envs):
            venv.env_method("set_wrapper_attr", "env_index", index, indices=[index], force=False)

    def _fail(self, index: int, what: str, values: np.ndarray, where: str) -> None:
        raise NonFiniteObservationError(
            f"{self.name} {index} (of {self.num_envs}) returned a non-finite {what} {where}: {_entries(values)}; "
            "the environment or one of its wrappers produced NaN/inf (fix it or clean its output in a wrapper).")

    def _check_observations(self, observations: VecEnvObs, where: str, what: str = "observation",
                            indices: list[int] | None = None) -> None:
        """``observations``: a batch (rows: environments ``indices``, default 0..n-1), or a dict of batches."""
        parts = observations.items() if isinstance(observations, Mapping) else [(None, observations)]
        for key, part in parts:
            batch = np.asarray(part)
            if not np.issubdtype(batch.dtype, np.number):
                continue
            finite = np.isfinite(batch.reshape(batch.shape[0], -1)).all(axis=1)
            if not finite.all():
                row = int(np.flatnonzero(~finite)[0])
                label = what if key is None else f"{what} ({key!r})"
                self._fail(row if indices is None else indices[row], label, batch[row], where)

    def reset(self) -> VecEnvObs:
        observations = self.venv.reset()
        self._check_observations(observations, f"at reset (timestep {self.timesteps})")
        return observations

    def step_wait(self) -> VecEnvStepReturn:
        observations, rewards, dones, infos = self.venv.step_wait()
        self.timesteps += self.num_envs
        where = f"at timestep {self.timesteps}"
        self._check_observations(observations, where)
        finite = np.isfinite(np.asarray(rewards, dtype=np.float64))
        if not finite.all():
            index = int(np.flatnonzero(~finite)[0])
            self._fail(index, "reward", np.asarray(rewards[index]), where)
        for index, info in enumerate(infos):
            terminal = info.get("terminal_observation")
            if terminal is not None:
                batch = {k: np.asarray(v)[None] for k, v in terminal.items()} if isinstance(terminal, Mapping) \
                    else np.asarray(terminal)[None]
                self._check_observations(batch, where, "terminal observation", indices=[index])
        return observations, rewards, dones, infos


class _StopCallback(BaseCallback):
    def __init__(self, request: StopRequest) -> None:
        super().__init__()
        self.request = request

    def _on_step(self) -> bool:
        return self.request.signal_number is None


class StopRequest:
    """Context manager: while active, SIGINT / SIGTERM ask training to stop instead of killing it.

    The first signal sets :attr:`signal_number` (the :meth:`callback` then ends ``learn`` after the current
    environment step); a second one raises ``KeyboardInterrupt`` at once. Outside the main thread (where
    Python cannot install handlers) it does nothing. :meth:`deferred` holds signals back while a checkpoint
    is written.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}
        self._deferring = False

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        if self.signal_number is not None and not self._deferring:
            raise KeyboardInterrupt
        if self.signal_number is None:
            self.signal_number = signal_number
            print(f"\n{signal.Signals(signal_number).name} received: stopping after the current step and saving a "
                  "checkpoint (send it again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def callback(self) -> BaseCallback:
        """A callback that returns False (stop) once a signal arrived."""
        return _StopCallback(self)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Signals arriving inside only record the request (no ``KeyboardInterrupt`` mid-write)."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
