"""A rollout buffer for recurrent policies that trains on fixed-length sequences (truncated BPTT).

Besides what SB3's :class:`~stable_baselines3.common.buffers.RolloutBuffer` stores, every step keeps
the policy's recurrent state *entering* that step (one flat ``(state_size,)`` vector, whatever the
cell) and the elapsed time ``dt`` of its observation.

For training, each environment's column of ``n_steps`` transitions is cut into consecutive chunks of
``sequence_length`` steps (the last one padded and masked out). A chunk starts from the stored state of
its first step and carries the episode-start flags of all its steps, which the cells'
``forward_sequence(x, state, dt, resets)`` use to reset the state *before* an episode's first step: no
state crosses an episode boundary, even inside a chunk. Minibatches are random sets of whole chunks,
``ceil(batch_size / sequence_length)`` of them.

Dict observations are stored as SB3's ``DictRolloutBuffer`` stores them (one array per key) and sampled as
dicts of ``(n_seq, T, ...)`` tensors.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer

__all__ = ["RecurrentRolloutBuffer", "RecurrentSequenceSamples"]


class RecurrentSequenceSamples(NamedTuple):
    """A minibatch of ``n_seq`` sequences of length ``T``; per-step tensors are ``(n_seq, T, ...)``."""

    observations: torch.Tensor | dict[str, torch.Tensor]
    actions: torch.Tensor
    old_values: torch.Tensor
    old_log_prob: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    #: ``(n_seq, state_size)``: the state entering each sequence's first step.
    states: torch.Tensor
    #: ``(n_seq, T)`` bool: True where an episode starts (reset before that step).
    episode_starts: torch.Tensor
    #: ``(n_seq, T)``: elapsed time of each step's observation.
    dts: torch.Tensor
    #: ``(n_seq, T)`` bool: False on padding.
    mask: torch.Tensor


class RecurrentRolloutBuffer(RolloutBuffer):
    """Rollout buffer storing flat recurrent states and elapsed times, sampled as sequences.

    Args:
        buffer_size: steps per environment (``n_steps``).
        observation_space / action_space: the environment's spaces.
        state_size: size of the policy's flat recurrent state.
        sequence_length: length of the training sequences (truncated back-propagation through time).
        device / gae_lambda / gamma / n_envs: as in SB3's ``RolloutBuffer``.
    """

    def __init__(self, buffer_size: int, observation_space: spaces.Space, action_space: spaces.Space,
                 state_size: int, sequence_length: int, device: torch.device | str = "auto",
                 gae_lambda: float = 1.0, gamma: float = 0.99, n_envs: int = 1) -> None:
        if not 1 <= sequence_length <= buffer_size:
            raise ValueError(f"sequence_length must lie in [1, n_steps={buffer_size}], got {sequence_length}; "
                             "lower sequence_length or raise n_steps.")
        self.state_size = int(state_size)
        self.sequence_length = int(sequence_length)
        self._sequences: dict[str, torch.Tensor] | None = None
        super().__init__(buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs)

    def reset(self) -> None:
        if isinstance(self.observation_space, spaces.Dict):
            DictRolloutBuffer.reset(self)  # type: ignore[arg-type]  # one observation array per key
        else:
            super().reset()
        self.states = np.zeros((self.buffer_size, self.n_envs, self.state_size), dtype=np.float32)
        self.dts = np.ones((self.buffer_size, self.n_envs), dtype=np.float32)
        self._sequences = None

    def add(self, *args, states: torch.Tensor, dts: np.ndarray | torch.Tensor, **kwargs) -> None:  # type: ignore[override]
        """Store one step; ``states`` is the ``(n_envs, state_size)`` state entering it, ``dts`` its elapsed times."""
        self.states[self.pos] = states.detach().cpu().numpy()
        self.dts[self.pos] = dts.detach().cpu().numpy() if torch.is_tensor(dts) else np.asarray(dts)
        if isinstance(self.observation_space, spaces.Dict):
            DictRolloutBuffer.add(self, *args, **kwargs)  # type: ignore[arg-type]
        else:
            super().add(*args, **kwargs)

    @property
    def n_sequences(self) -> int:
        """Number of training sequences in a full buffer."""
        return self.n_envs * -(-self.buffer_size // self.sequence_length)

    def _chunk(self, array: np.ndarray, pad_value: float = 0.0) -> np.ndarray:
        """``(n_steps, n_envs, *rest)`` -> ``(n_envs * n_chunks, sequence_length, *rest)``, time padded at the end."""
        length = self.sequence_length
        n_chunks = -(-self.buffer_size // length)
        per_env = array.swapaxes(0, 1)
        padding = n_chunks * length - self.buffer_size
        if padding:
            widths = [(0, 0), (0, padding)] + [(0, 0)] * (per_env.ndim - 2)
            per_env = np.pad(per_env, widths, constant_values=pad_value)
        return per_env.reshape(self.n_envs * n_chunks, length, *per_env.shape[2:])

    def _prepare_sequences(self) -> dict[str, torch.Tensor]:
        mask = self._chunk(np.ones((self.buffer_size, self.n_envs), dtype=bool), pad_value=False)
        data = {
            "observations": ({key: self._chunk(value) for key, value in self.observations.items()}
                             if isinstance(self.observations, dict) else self._chunk(self.observations)),
            "actions": self._chunk(self.actions),
            "old_values": self._chunk(self.values),
            "old_log_prob": self._chunk(self.log_probs),
            "advantages": self._chunk(self.advantages),
            "returns": self._chunk(self.returns),
            "states": self._chunk(self.states)[:, 0],
            "episode_starts": self._chunk(self.episode_starts.astype(bool), pad_value=False),
            "dts": self._chunk(self.dts, pad_value=1.0),
            "mask": mask,
        }
        return {key: ({sub: self._tensor(item) for sub, item in value.items()} if isinstance(value, dict)
                      else self._tensor(value)) for key, value in data.items()}

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), device=self.device)

    def get(self, batch_size: int | None = None) -> Generator[RecurrentSequenceSamples, None, None]:  # type: ignore[override]
        """Yield minibatches of ``ceil(batch_size / sequence_length)`` random whole sequences (all of them if None);
        the last one holds the sequences left over."""
        assert self.full, "the rollout buffer must be full before sampling from it"
        if self._sequences is None:
            self._sequences = self._prepare_sequences()
        total = self.n_sequences
        per_batch = total if batch_size is None else -(-batch_size // self.sequence_length)
        order = torch.randperm(total, device=self.device)
        for start in range(0, total, per_batch):
            index = order[start:start + per_batch]
            yield RecurrentSequenceSamples(**{
                key: {sub: item[index] for sub, item in value.items()} if isinstance(value, dict) else value[index]
                for key, value in self._sequences.items()})
