"""The acting part of a trained policy as one plain ``torch.nn.Module``: ``(obs, state, dt) -> (action, state)``.

:class:`PolicyNetwork` holds everything one control step needs and nothing else: the saved
observation normalisation, the policy's features extractor (none for flat observations: they are
only flattened; ``NatureCNN`` for images, ``CombinedExtractor`` for Dict observations), the actor's recurrent cell (LTC / NCP / CfC / LSTM / ...; none for a
feed-forward policy), the layers between the cell and the action, and the action bounds. The
critic, the optimiser and stable-baselines3's distribution objects stay behind, so the module can
be embedded in other code, fine-tuned, inspected (``network.cell.wiring``) or exported
(:mod:`agents.export`).

Time: ``dt`` is the elapsed time since the previous observation in the environment's unit (seconds
for ``envs``); the network divides it by ``time_unit``, the nominal control period it was trained
with, exactly as the training policy did (see :mod:`ltc_rl.rl.elapsed_time`).
"""

from __future__ import annotations

from typing import Any, NamedTuple
from collections.abc import Callable

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import Tensor, nn

from ltc_rl.runs.run_folder import ObservationStats
from ltc_rl.cells import RecurrentCell
from ltc_rl.errors import ModelFileError

__all__ = ["PolicyNetwork", "network_from_policy"]


class _StepParts(NamedTuple):
    """What every control step reads, looked up once (``nn.Module`` attribute lookups and module calls cost
    about a third of a batch-1 step around the native LTC kernel)."""

    scale: Tensor | None
    shift: Tensor | None
    clip: float
    cell: Callable[..., tuple[Tensor, Tensor]] | None
    head: nn.Module | None
    linear: tuple[Tensor, Tensor | None] | None
    action_net: nn.Module
    low: Tensor | float | None
    high: Tensor | float | None


def _bound(bound: Tensor) -> Tensor | float:
    """An action bound as one number where it is the same for every action (one clamp against two scalars: one
    operation in an export instead of a maximum and a minimum), else the tensor."""
    if bound.numel() and bool((bound == bound[0]).all()):
        return float(bound[0])
    return bound


class PolicyNetwork(nn.Module):
    """One deterministic control step of a trained policy, in plain torch.

    Args:
        cell: the actor's recurrent cell, or None for a feed-forward policy (its state has size 0).
        head: the layers between the cell outputs (or the observation) and ``action_net``.
        action_net: maps the head's output to action means (Box) or logits (Discrete).
        observation_shape: shape of one observation (a dict of shapes for Dict observations).
        action_space: a Box (actions are clipped to its bounds) or a Discrete space (argmax of the logits).
        stats: observation normalisation to apply first (None: raw observations).
        time_unit: the nominal control period; ``dt`` is divided by it. None (a model saved without a
            time unit, see :class:`~ltc_rl.rl.policies.RecurrentActorCriticPolicy`): ``dt`` is ignored and
            every step is one nominal step, as in that model's training.
        log_std: the Gaussian policy's log standard deviations (Box), for stochastic actions.
        features: the policy's features extractor, run on SB3's preprocessing of ``observation_space``
            (images scaled to [0, 1] when ``normalize_images``); None: the observation is flattened.
    """

    def __init__(self, cell: RecurrentCell | None, head: nn.Module, action_net: nn.Module,
                 observation_shape: tuple[int, ...] | dict[str, tuple[int, ...]],
                 action_space: spaces.Box | spaces.Discrete,
                 stats: ObservationStats | None = None, time_unit: float | None = 1.0,
                 log_std: Tensor | None = None, features: nn.Module | None = None,
                 observation_space: spaces.Space | None = None, normalize_images: bool = True) -> None:
        super().__init__()
        self.cell, self.head, self.action_net = cell, head, action_net
        self.empty_head = isinstance(head, nn.Sequential) and len(head) == 0
        self.dict_observations = isinstance(observation_shape, dict)
        if features is not None and observation_space is None:
            raise ValueError("a features extractor needs the observation_space its preprocessing follows.")
        if self.dict_observations and (features is None or stats is not None):
            raise ValueError("Dict observations need the policy's features extractor and no observation statistics.")
        self.features, self.observation_space, self.normalize_images = features, observation_space, normalize_images
        self.observation_shape = ({key: tuple(shape) for key, shape in observation_shape.items()}
                                  if isinstance(observation_shape, dict) else tuple(observation_shape))
        self.discrete = isinstance(action_space, spaces.Discrete)
        self.action_shape = () if self.discrete else tuple(action_space.shape)
        self.time_unit = None if time_unit is None else float(time_unit)
        self.normalized = stats is not None
        if stats is not None:
            self.register_buffer("obs_mean", torch.as_tensor(stats.mean, dtype=torch.float32))
            self.register_buffer("obs_std", torch.as_tensor(np.sqrt(stats.var + stats.epsilon), dtype=torch.float32))
            # obs * scale + shift = (obs - mean) / std in one operation (derived, not saved).
            self.register_buffer("obs_scale", 1.0 / self.obs_std, persistent=False)
            self.register_buffer("obs_shift", -self.obs_mean * self.obs_scale, persistent=False)
            self.obs_clip = float(stats.clip)
        if not self.discrete:
            self.register_buffer("action_low", torch.as_tensor(action_space.low, dtype=torch.float32).flatten())
            self.register_buffer("action_high", torch.as_tensor(action_space.high, dtype=torch.float32).flatten())
        self.log_std = None if log_std is None else nn.Parameter(log_std.detach().clone().flatten())

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__.pop("_step_parts", None)  # a replaced module or tensor: look the parts up again
        super().__setattr__(name, value)

    def _apply(self, fn: Any, recurse: bool = True) -> PolicyNetwork:
        self.__dict__.pop("_step_parts", None)  # .to() / .cuda() / .double() replace the buffers
        return super()._apply(fn, recurse)

    def _parts(self) -> _StepParts:
        parts = self.__dict__.get("_step_parts")
        if parts is None:
            linear = self.action_net if type(self.action_net) is nn.Linear else None
            parts = self.__dict__["_step_parts"] = _StepParts(
                self.obs_scale if self.normalized else None, self.obs_shift if self.normalized else None,
                self.obs_clip if self.normalized else 0.0, None if self.cell is None else self.cell.forward,
                None if self.empty_head else self.head, None if linear is None else (linear.weight, linear.bias),
                self.action_net, *(None, None) if self.discrete else map(_bound, (self.action_low, self.action_high)))
        return parts

    @property
    def state_size(self) -> int:
        return 0 if self.cell is None else self.cell.state_size

    def initial_state(self, batch_size: int) -> Tensor:
        """The state of fresh episodes, ``(batch_size, state_size)``."""
        device = next(self.parameters()).device
        if self.cell is None:
            return torch.zeros(batch_size, 0, device=device)
        return self.cell.initial_state(batch_size, device)

    def normalize(self, obs: Tensor) -> Tensor:
        """The observation as the policy saw it in training (VecNormalize's scaling and clipping)."""
        if obs.dtype != torch.float32:
            obs = obs.to(torch.float32)
        parts = self._parts()
        if parts.scale is not None:
            obs = torch.addcmul(parts.shift, obs, parts.scale).clamp_(-parts.clip, parts.clip)
        return obs

    def cell_input(self, obs: Tensor | dict[str, Tensor]) -> Tensor:
        """What the recurrent cell reads, ``(batch, features)``: the observation normalised, then flattened or
        passed through the policy's features extractor."""
        if self.features is None:
            x = self.normalize(obs)
            return x if x.dim() == 2 else x.flatten(1)
        return self.features(preprocess_obs(obs if self.dict_observations else self.normalize(obs),
                                            self.observation_space, self.normalize_images))

    def cell_time(self, dt: Tensor | None) -> Tensor | None:
        """The cell's step length for elapsed times ``dt`` in the environment's unit: ``dt / time_unit``, or
        None (one nominal step) without ``dt``, without a time unit, or for a cell that ignores time."""
        if dt is None or self.time_unit is None or not self.cell.uses_time:
            return None
        return dt / self.time_unit

    def action_parameters(self, obs: Tensor | dict[str, Tensor], state: Tensor, dt: Tensor | None) -> tuple[Tensor, Tensor]:
        """Action means (Box) or logits (Discrete) ``(batch, width)`` and the new state.

        ``obs`` ``(batch, *observation_shape)`` raw; ``state`` ``(batch, state_size)``; ``dt`` ``(batch,)``
        elapsed times in the environment's unit, or None for one nominal step each.
        """
        x = self.cell_input(obs)
        parts = self._parts()
        if parts.cell is not None:
            x, state = parts.cell(x, state, self.cell_time(dt))
        if parts.head is not None:  # an empty head would cost a module call per step for nothing
            x = parts.head(x)
        if parts.linear is not None:
            return nn.functional.linear(x, *parts.linear), state
        return parts.action_net(x), state

    def to_action(self, parameters: Tensor) -> Tensor:
        """Deterministic action: the logits' argmax, or the means clipped to the action bounds."""
        if self.discrete:
            return parameters.argmax(dim=-1)
        parts = self._parts()
        clipped = torch.clamp(parameters, parts.low, parts.high)
        return clipped if len(self.action_shape) == 1 else clipped.reshape(parameters.shape[0], *self.action_shape)

    def forward(self, obs: Tensor | dict[str, Tensor], state: Tensor, dt: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One control step: ``(action, new_state)`` (deterministic); ``dt`` None is one nominal step."""
        parameters, state = self.action_parameters(obs, state, dt)
        return self.to_action(parameters), state

    def sample(self, obs: Tensor | dict[str, Tensor], state: Tensor, dt: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One control step with a sampled action (the training policy's distribution)."""
        parameters, state = self.action_parameters(obs, state, dt)
        if self.discrete:
            return torch.distributions.Categorical(logits=parameters).sample(), state
        assert self.log_std is not None, "a Box policy keeps its log_std"
        noisy = parameters + torch.randn_like(parameters) * self.log_std.exp()
        return self.to_action(noisy), state


def network_from_policy(policy: ActorCriticPolicy, stats: ObservationStats | None = None) -> PolicyNetwork:
    """Extract the acting modules of a trained SB3 actor-critic policy (recurrent or not) into a :class:`PolicyNetwork`.

    The modules are shared, not copied: the returned network is the trained one.
    """
    if not isinstance(policy, ActorCriticPolicy):
        raise ModelFileError(f"agents take actor-critic policies (RecurrentPPO, PPO), not {type(policy).__name__}.")
    space = policy.observation_space
    if not (isinstance(space, spaces.Box) or isinstance(space, spaces.Dict)
            and all(isinstance(sub, spaces.Box) for sub in space.spaces.values())):
        raise ModelFileError(f"agents take Box observations or Dict observations of Boxes; this policy observes "
                             f"{space}.")
    if not isinstance(policy.action_space, (spaces.Box, spaces.Discrete)):
        raise ModelFileError(f"agents support Box and Discrete actions; this policy acts in {policy.action_space}.")
    if policy.use_sde or policy.squash_output:
        raise ModelFileError("agents do not support gSDE / squashed-output policies (use_sde=True).")
    extractor = policy.pi_features_extractor
    features = None if isinstance(extractor, FlattenExtractor) else extractor
    cell = getattr(policy, "actor_cell", None)
    # A policy trained without elapsed times (use_elapsed_time=False) counts every step as one: no time unit.
    time_unit = getattr(policy, "time_unit", None) if getattr(policy, "use_elapsed_time", True) else None
    log_std = policy.log_std if isinstance(policy.action_space, spaces.Box) else None
    if stats is not None and isinstance(space, spaces.Dict):
        raise ModelFileError("agents apply saved observation statistics to Box observations only; this policy "
                             "observes a Dict.")
    if stats is not None and stats.mean.shape != space.shape:
        raise ModelFileError(f"the observation statistics have shape {stats.mean.shape}, the policy observes "
                         f"{policy.observation_space.shape}: they belong to another run.")
    shape = {key: sub.shape for key, sub in space.spaces.items()} if isinstance(space, spaces.Dict) else space.shape
    return PolicyNetwork(cell, policy.mlp_extractor.policy_net, policy.action_net, shape, policy.action_space, stats,
                         time_unit, log_std, features, space, policy.normalize_images)
