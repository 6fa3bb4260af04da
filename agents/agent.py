"""A trained policy for your own control loop: it keeps the recurrent state, you feed observations.

    agent = LTCAgent.load("runs/HalfCheetah-v4_ltc_seed0")
    obs, info = env.reset()
    agent.reset()
    while True:
        action = agent.act(obs, dt=info.get("elapsed_time"))     # dt optional: None = one nominal step
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            obs, info = env.reset()
            agent.reset()

Vectorised environments pass a batch ``(n_envs, *obs_shape)`` and reset finished rows with
``agent.reset(dones)``. Dict observations (``MultiInput*Policy``) are dicts of such arrays; image
observations may come channel-last, as the environment gives them (transposed as SB3's ``predict`` does). :meth:`LTCAgent.predict` is the stateless form with stable-baselines3's
``predict`` signature (so ``evaluate_policy`` and :func:`ltc_rl.rl.evaluation.evaluate` accept an agent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import maybe_transpose
from torch import Tensor

from agents.network import PolicyNetwork, network_from_policy
from ltc_rl.runs.run_folder import RunFiles, load_run
from ltc_rl.cells import RecurrentCell
from ltc_rl.rl.elapsed_time import check_dt_scale
from ltc_rl.wirings import Wiring

__all__ = ["LTCAgent"]


class LTCAgent:
    """A trained (recurrent) policy that holds its own state; needs no stable-baselines3 algorithm object.

    Attributes:
        network: the acting :class:`~agents.network.PolicyNetwork` (a plain ``torch.nn.Module``).
        observation_space / action_space: the spaces the policy was trained on.
        config: the run's ``config.yaml`` (empty when loaded from a bare model zip).
        state: the current recurrent state ``(batch, state_size)``, None before the first step.
    """

    def __init__(self, network: PolicyNetwork, observation_space: spaces.Box | spaces.Dict, action_space: spaces.Space,
                 config: dict[str, Any] | None = None, files: RunFiles | None = None) -> None:
        self.network = network.eval()
        self.observation_space, self.action_space = observation_space, action_space
        self.config = dict(config or {})
        self.files = files
        self.state: Tensor | None = None
        # One observation's input tensor (and its numpy view on CPU), reused by every single-observation
        # step (see _observation).
        self._single_input: Tensor | None = None
        self._single_input_array: np.ndarray | None = None
        self._action_dtype = action_space.dtype if isinstance(action_space, spaces.Box) else None

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", trust_pickle: bool = False,
             best: bool = False, checkpoint: int | None = None) -> LTCAgent:
        """Load a run folder written by ``scripts/train.py`` (or its ``best/`` folder, a model ``.zip`` or a
        checkpoint ``ckpt_<steps>_steps.zip``); ``best`` / ``checkpoint`` pick ``best/`` or the checkpoint at
        that many steps of the run folder. A run folder without ``model.zip`` loads its newest checkpoint.

        The observation normalisation saved with the model (``vecnormalize.npz``, or the checkpoint's own) is
        applied by the agent; a missing or corrupt file raises :class:`~ltc_rl.runs.run_folder.RunFolderError`.
        Nothing is unpickled: files of older versions (``vecnormalize.pkl``, pickled model metadata) load only
        with ``trust_pickle=True``, for files from a source you trust.
        """
        run = load_run(path, device, trust_pickle, best, checkpoint)
        network = network_from_policy(run.policy, run.stats)  # type: ignore[arg-type]
        return cls(network.to(device), run.policy.observation_space, run.policy.action_space,  # type: ignore[arg-type]
                   run.config, run.files)

    # ------------------------------------------------------------------ the network
    @property
    def cell(self) -> RecurrentCell | None:
        """The trained recurrent cell (``LTCCell`` for LTC / NCP policies), None for feed-forward policies."""
        return self.network.cell

    @property
    def wiring(self) -> Wiring | None:
        """The LTC cell's wiring (fully connected, random or NCP), None for other cells."""
        return getattr(self.cell, "wiring", None)

    @property
    def state_size(self) -> int:
        return self.network.state_size

    @property
    def time_unit(self) -> float | None:
        """The nominal control period the policy was trained with (a ``dt`` of 1.0 in cell time).

        None for models saved without one: they count every step as one nominal step and ignore ``dt``.
        """
        return self.network.time_unit

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def env_id(self) -> str | None:
        return self.config.get("env_id")

    @property
    def env_options(self) -> dict[str, Any]:
        """The env options the run was trained with (``envs.make`` keyword arguments)."""
        return dict(self.config.get("env_options") or {})

    # ------------------------------------------------------------------ acting
    def reset(self, mask: np.ndarray | None = None) -> None:
        """Start new episodes: all of them (``mask`` None), or the rows of the batch where ``mask`` is True."""
        if mask is None or self.state is None:
            self.state = None
            return
        mask_t = torch.as_tensor(np.asarray(mask, dtype=bool), device=self.device).reshape(-1)
        if mask_t.shape[0] != self.state.shape[0]:
            raise ValueError(f"reset mask has {mask_t.shape[0]} entries for a batch of {self.state.shape[0]}.")
        if self.cell is not None:
            self.state = self.cell.reset_state(self.state, mask_t)

    def act(self, obs: np.ndarray | dict[str, np.ndarray], dt: float | np.ndarray | None = None, deterministic: bool = True) -> np.ndarray:
        """The action for ``obs`` (one observation or a batch), advancing the agent's state.

        ``dt``: elapsed time since the previous observation in the environment's unit (its
        ``info["elapsed_time"]``), a float or one per batch row; None for one nominal step (so
        ``dt=info.get("elapsed_time")`` works with ``envs.make`` and plain ``gymnasium.make`` envs alike).
        A ``dt`` on another scale than :attr:`time_unit` warns once.
        """
        state, buffer = self.state, self._single_input
        if (dt is None and deterministic and state is not None and buffer is not None and state.shape[0] == 1
                and buffer.device == state.device and np.shape(obs) == buffer.shape[1:]):
            return self._control_step(obs, buffer, state)
        action, self.state = self._step(obs, self.state, None, dt, deterministic)
        return action

    def _control_step(self, obs: np.ndarray, buffer: Tensor, state: Tensor) -> np.ndarray:
        """:meth:`act`'s common case (one observation, one nominal step, deterministic, after the first
        step) with nothing around the network but a copy into the preallocated input."""
        self._fill_single_input(obs, buffer)
        with torch.inference_mode():
            action_t, self.state = self.network.forward(buffer, state, None)
        return self._actions(action_t)[0]

    def _fill_single_input(self, observation: np.ndarray, buffer: Tensor) -> None:
        """Copy one observation into the preallocated ``(1, *obs_shape)`` input (through its numpy view on CPU)."""
        if buffer.device.type == "cpu":
            np.copyto(self._single_input_array, observation, casting="same_kind")
        else:
            buffer.copy_(torch.as_tensor(np.asarray(observation, dtype=np.float32)).reshape(buffer.shape))

    def _actions(self, action_t: Tensor) -> np.ndarray:
        """The network's actions as a numpy array of the action space's dtype."""
        action = action_t.numpy() if action_t.device.type == "cpu" else action_t.cpu().numpy()
        return action if self._action_dtype is None else action.astype(self._action_dtype, copy=False)

    def predict(self, observation: np.ndarray | dict[str, np.ndarray], state: np.ndarray | Tensor | None = None,
                episode_start: np.ndarray | None = None, deterministic: bool = False,
                dt: float | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stateless step with the signature of ``RecurrentPPO.predict``: ``(action, new_state)``."""
        action, new_state = self._step(observation, state, episode_start, dt, deterministic)
        return action, new_state.cpu().numpy()

    def _observation(self, observation: np.ndarray | dict[str, np.ndarray]) -> tuple[Tensor | dict[str, Tensor], bool]:
        """The observation as a float32 ``(batch, *obs_shape)`` tensor (a dict of them for Dict observations),
        and whether it was a single one.

        A single observation is copied into a tensor allocated once (the control-loop case: no
        per-step allocation or numpy-to-torch conversion beyond that copy).
        """
        shape = self.network.observation_shape
        if isinstance(shape, dict):
            return self._dict_observation(observation, shape)
        observation = maybe_transpose(np.asarray(observation), self.observation_space)  # channel-last images
        if np.shape(observation) == shape:
            buffer = self._single_input
            if buffer is None or buffer.device != self.device:
                buffer = self._single_input = torch.empty((1, *shape), dtype=torch.float32, device=self.device)
                self._single_input_array = buffer.numpy()[0] if buffer.device.type == "cpu" else None
            self._fill_single_input(observation, buffer)
            return buffer, True
        obs = np.asarray(observation, dtype=np.float32)
        if obs.shape[1:] != shape:
            raise ValueError(f"observation has shape {obs.shape}; the policy takes {shape} or a batch "
                             f"(n, {', '.join(map(str, shape))}).")
        return torch.as_tensor(obs, device=self.device), False

    def _dict_observation(self, observation: dict[str, np.ndarray],
                          shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, Tensor], bool]:
        """A Dict observation (one, or a batch in every entry) as float32 tensors ``(batch, *shape)`` per key."""
        if not isinstance(observation, dict) or set(observation) != set(shapes):
            keys = sorted(observation) if isinstance(observation, dict) else type(observation).__name__
            raise ValueError(f"the policy observes a Dict with keys {sorted(shapes)}; got {keys}.")
        arrays = {key: maybe_transpose(np.asarray(observation[key], dtype=np.float32), self.observation_space[key])
                  for key in shapes}
        single = all(arrays[key].shape == shape for key, shape in shapes.items())
        batched = (len({array.shape[:1] for array in arrays.values()}) == 1
                   and all(arrays[key].shape[1:] == shape for key, shape in shapes.items()))
        if not (single or batched):
            got = {key: array.shape for key, array in arrays.items()}
            raise ValueError(f"Dict observation has shapes {got}; the policy takes {shapes} or a batch (n, ...) "
                             "in every entry.")
        return {key: torch.as_tensor(array[None] if single else array, device=self.device)
                for key, array in arrays.items()}, single

    def _step(self, observation: np.ndarray, state: np.ndarray | Tensor | None, episode_start: np.ndarray | None,
              dt: float | np.ndarray | None, deterministic: bool) -> tuple[np.ndarray, Tensor]:
        obs_t, single = self._observation(observation)
        batch = next(iter(obs_t.values())).shape[0] if isinstance(obs_t, dict) else obs_t.shape[0]
        device = self.device
        if state is None:
            state_t = self.network.initial_state(batch)
        else:
            state_t = torch.as_tensor(state, dtype=torch.float32, device=device)
            if state_t.shape != (batch, self.state_size):
                raise ValueError(f"state has shape {tuple(state_t.shape)} but {batch} observation(s) need "
                                 f"({batch}, {self.state_size}); call agent.reset() when the batch size changes.")
        if episode_start is not None and self.cell is not None:
            state_t = self.cell.reset_state(state_t, torch.as_tensor(np.asarray(episode_start, dtype=bool),
                                                                     device=device).reshape(batch))
        check_dt_scale(dt, self.time_unit)
        dt_t = None  # one nominal step
        if dt is not None:
            dt_t = torch.as_tensor(np.asarray(dt, dtype=np.float32), device=device)
            dt_t = dt_t.expand(batch) if dt_t.dim() == 0 else dt_t.reshape(batch)
        # inference_mode: the control step needs no autograd bookkeeping at all.
        with torch.inference_mode():
            action_t, state_t = (self.network.forward if deterministic else self.network.sample)(obs_t, state_t, dt_t)
        action = self._actions(action_t)
        return (action[0] if single else action), state_t

    def __repr__(self) -> str:
        source = self.files.model if self.files is not None else "memory"
        return (f"LTCAgent({source}, cell={type(self.cell).__name__ if self.cell is not None else None}, "
                f"state_size={self.state_size}, time_unit={self.time_unit})")
