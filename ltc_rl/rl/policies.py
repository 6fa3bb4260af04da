"""Recurrent actor-critic policies over any :class:`~ltc_rl.cells.RecurrentCell` (LTC, NCP, CfC, LSTM, GRU, ...).

The policy follows SB3's :class:`~stable_baselines3.common.policies.ActorCriticPolicy` (features
extractor, ``net_arch`` heads, action distributions, ``ortho_init``, optimiser) and puts recurrent cells
between the features and the heads::

    obs -> features -> actor cell  -> pi head -> action distribution
                    -> critic cell -> vf head -> value

Every cell keeps ONE flat state tensor, so the policy's state is the concatenation
``[actor state | critic state]`` of shape ``(batch, state_size)``; :meth:`predict` only needs and returns
the actor part. The critic can have its own cell (``critic="separate"``, default), read the actor cell's
outputs (``"shared"``; both losses then train the shared cell), read the observation features together
with the actor cell's outputs with the gradient stopped (``"detached"``: the value loss does not shape the
actor's cell, as sb3-contrib's ``shared_lstm``; one recurrent cell per step instead of two) or be
feed-forward (``"none"``).

Observations pass SB3's features extractor first: ``Mlp*Policy`` flattens them, ``Cnn*Policy`` runs
``NatureCNN`` on images, ``MultiInput*Policy`` runs ``CombinedExtractor`` on Dict observations (all of them
honour ``features_extractor_class`` / ``features_extractor_kwargs``; :class:`~ltc_rl.rl.extractors.LinearExtractor`
puts a learned linear layer before the cells). ``n_layers`` stacks recurrent layers
(:class:`~ltc_rl.cells.StackedCell`; the state holds every layer's). sb3-contrib's policy keywords are
accepted as aliases (:data:`SB3_CONTRIB_ALIASES`).

NCP controller mode (``controller=True``, the default with ``wiring="ncp"``): the actor cell has one motor
neuron per action dimension (or per discrete action logit) and its motor outputs *are* the action means,
with no layer in between, as in the neural circuit policy papers: the trained circuit is the controller.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import (BaseFeaturesExtractor, CombinedExtractor, FlattenExtractor,
                                                   NatureCNN, create_mlp)
from stable_baselines3.common.type_aliases import Schedule
from torch import Tensor, nn

from ltc_rl import wirings
from ltc_rl.cells import CELL_TYPES, RecurrentCell, StackedCell, make_cell

__all__ = ["RecurrentActorCriticPolicy", "MlpLtcPolicy", "MlpCfcPolicy", "MlpLstmPolicy", "MlpGruPolicy",
           "CnnRecurrentPolicy", "CnnLtcPolicy", "CnnCfcPolicy", "CnnLstmPolicy", "CnnGruPolicy",
           "MultiInputRecurrentPolicy", "MultiInputLtcPolicy", "MultiInputCfcPolicy", "MultiInputLstmPolicy",
           "MultiInputGruPolicy", "POLICY_CLASSES", "CRITIC_MODES", "SB3_CONTRIB_ALIASES", "resolve_sb3_contrib_aliases"]

CRITIC_MODES = ("separate", "shared", "detached", "none")

#: sb3-contrib ``RecurrentActorCriticPolicy`` keywords and the keyword of ours each one sets.
SB3_CONTRIB_ALIASES = {"lstm_hidden_size": "units", "n_lstm_layers": "n_layers", "lstm_kwargs": "cell_kwargs",
                       "enable_critic_lstm": "critic", "shared_lstm": "critic"}


def resolve_sb3_contrib_aliases(units: int | None, n_layers: int | None, cell_kwargs: dict[str, Any] | None,
                                critic: str | None, lstm_hidden_size: int | None, n_lstm_layers: int | None,
                                lstm_kwargs: dict[str, Any] | None, enable_critic_lstm: bool | None,
                                shared_lstm: bool | None) -> tuple[int, int, dict[str, Any], str]:
    """``(units, n_layers, cell_kwargs, critic)`` from our keywords and their sb3-contrib aliases (None: not given).

    sb3-contrib's meanings: ``enable_critic_lstm=True`` is a critic cell of its own (``critic="separate"``),
    ``False`` a feed-forward critic (``"none"``); ``shared_lstm=True`` a critic reading the actor cell's outputs
    without training the actor with the value loss (``"detached"``). A keyword given twice with different
    values (ours and its alias, or two contradicting sb3-contrib flags) is an error.
    """
    def pick(ours_name: str, ours: Any, alias_name: str, alias: Any) -> Any:
        if ours is not None and alias is not None and ours != alias:
            raise ValueError(f"{ours_name}={ours!r} and its sb3-contrib alias {alias_name}={alias!r} disagree; "
                             "pass one of them.")
        return ours if ours is not None else alias

    if shared_lstm and enable_critic_lstm:
        raise ValueError("shared_lstm=True and enable_critic_lstm=True contradict each other (the critic either "
                         "reads the actor's cell or has its own); pass enable_critic_lstm=False, as sb3-contrib requires.")
    contrib_critic = ("detached" if shared_lstm else "separate" if enable_critic_lstm
                      else "none" if enable_critic_lstm is not None else None)
    critic_alias = "shared_lstm" if shared_lstm else "enable_critic_lstm"
    def default(value: Any, fallback: Any) -> Any:
        return fallback if value is None else value

    return (int(default(pick("units", units, "lstm_hidden_size", lstm_hidden_size), 64)),
            int(default(pick("n_layers", n_layers, "n_lstm_layers", n_lstm_layers), 1)),
            dict(default(pick("cell_kwargs", cell_kwargs, "lstm_kwargs", lstm_kwargs), {})),
            default(pick("critic", critic, critic_alias, contrib_critic), "separate"))


class RecurrentHeads(nn.Module):
    """The MLPs between the recurrent outputs and the action / value layers (SB3's ``mlp_extractor`` role)."""

    def __init__(self, pi_input: int, vf_input: int, net_arch: list[int] | dict[str, list[int]],
                 activation_fn: type[nn.Module]) -> None:
        super().__init__()
        pi_arch, vf_arch = (net_arch.get("pi", []), net_arch.get("vf", [])) if isinstance(net_arch, dict) \
            else (net_arch, net_arch)
        self.policy_net = nn.Sequential(*create_mlp(pi_input, -1, list(pi_arch), activation_fn))
        self.value_net = nn.Sequential(*create_mlp(vf_input, -1, list(vf_arch), activation_fn))
        self.latent_dim_pi = pi_arch[-1] if pi_arch else pi_input
        self.latent_dim_vf = vf_arch[-1] if vf_arch else vf_input

    def forward_actor(self, x: Tensor) -> Tensor:
        return self.policy_net(x)

    def forward_critic(self, x: Tensor) -> Tensor:
        return self.value_net(x)


def _distribution_width(action_space: spaces.Space) -> int:
    """Number of distribution parameters the actor outputs per step (action means, or logits of every
    Discrete / MultiDiscrete / MultiBinary choice)."""
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, spaces.MultiDiscrete):
        return int(np.sum(action_space.nvec))
    return int(np.prod(action_space.shape))  # Box means, MultiBinary logits


def _map_obs(obs: Any, fn: Any) -> Any:
    """``fn`` applied to an observation batch, or to every entry of a Dict observation batch."""
    return {key: fn(value) for key, value in obs.items()} if isinstance(obs, dict) else fn(obs)


def _obs_batch_size(obs: Tensor | dict[str, Tensor]) -> int:
    return int(next(iter(obs.values())).shape[0] if isinstance(obs, dict) else obs.shape[0])


class RecurrentActorCriticPolicy(ActorCriticPolicy):
    """Actor-critic policy with recurrent cells, generic over every cell of :mod:`ltc_rl.cells`.

    Args (beyond SB3's ``ActorCriticPolicy``):
        cell: cell kind (``"ltc"``, ``"cfc"``, ``"ctrnn"``, ``"node"``, ``"ctgru"``, ``"lstm"``, ``"gru"``);
            the named subclasses fix it.
        units: neurons (hidden units) per recurrent cell (default 64).
        n_layers: recurrent layers stacked in each cell (default 1); the layers below the top one are fully
            connected cells of ``units`` neurons, the top one carries the ``wiring``.
        wiring: ``"fc"``, ``"random"`` or ``"ncp"`` (sparse wirings need the ``"ltc"`` cell).
        sparsity_level: fraction of synapses removed by ``"random"`` and ``"ncp"`` wirings.
        wiring_seed: seed of the wiring's random structure (None: the wiring's default seed).
        cell_kwargs: extra keyword arguments for the cell (e.g. ``ode_unfolds``, ``solver``).
        critic: ``"separate"`` (own cell; an ``"ncp"`` actor gets a fully connected critic),
            ``"shared"`` (reads the actor cell's outputs), ``"detached"`` (reads the observation features and
            the actor cell's outputs without passing gradients into the cell) or ``"none"`` (feed-forward);
            default ``"separate"``.
        controller: the actor's motor neurons are the action means (NCP controller mode);
            default True for ``wiring="ncp"``, else False. Needs the ``"ltc"`` cell and no ``pi`` layers.
        net_arch: hidden layers after the cells, ``[64]`` or ``dict(pi=[...], vf=[...])``;
            default ``dict(pi=[], vf=[64])``.
        time_unit: the environment's nominal control period, in the unit its elapsed times come in
            (seconds for ``envs``); every ``dt`` is divided by it, so regular steps reach the cells as
            ``dt = 1`` (see :mod:`ltc_rl.rl.elapsed_time`). None: not known (yet): ``RecurrentPPO`` sets
            it from the environment when learning starts; a model saved without one (never trained, or
            trained before time units were recorded, with ``dt = 1`` per step) counts every step as one
            nominal step and ignores ``dt``.
        use_elapsed_time: feed the cells the elapsed time of every step (True); False counts every step as
            one nominal step whatever the environment reports (an ablation for irregular sampling).
        cell_lr_scale: the recurrent cells' parameters learn at this multiple of the learning rate (default 1).
            Adam moves every parameter by about the learning rate per update whatever its scale; an LTC's
            parameters are tenths to units (``sigma`` 3-8) where an LSTM's weights are hundredths, so at one
            rate an LTC cell barely leaves its initialisation (BENCHMARKS.md, "Why the LSTM is ahead").
        lstm_hidden_size, n_lstm_layers, lstm_kwargs, enable_critic_lstm, shared_lstm: sb3-contrib's names,
            aliases of ``units``, ``n_layers``, ``cell_kwargs`` and ``critic`` (see
            :func:`resolve_sb3_contrib_aliases`), for every cell.
    """

    #: The cell kind of a named policy (None: chosen by the ``cell`` argument).
    cell_kind: ClassVar[str | None] = None
    #: The features extractor when ``features_extractor_class`` is not given (``Cnn*`` / ``MultiInput*`` policies).
    default_features_extractor: ClassVar[type[BaseFeaturesExtractor]] = FlattenExtractor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        use_sde: bool = False,
        log_std_init: float = 0.0,
        full_std: bool = True,
        use_expln: bool = False,
        squash_output: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] | None = None,
        features_extractor_kwargs: dict[str, Any] | None = None,
        share_features_extractor: bool = True,
        normalize_images: bool = True,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        cell: str | None = None,
        units: int | None = None,
        wiring: str = "fc",
        sparsity_level: float = 0.5,
        wiring_seed: int | None = None,
        cell_kwargs: dict[str, Any] | None = None,
        critic: str | None = None,
        controller: bool | None = None,
        time_unit: float | None = None,
        use_elapsed_time: bool = True,
        cell_lr_scale: float = 1.0,
        n_layers: int | None = None,
        lstm_hidden_size: int | None = None,
        n_lstm_layers: int | None = None,
        lstm_kwargs: dict[str, Any] | None = None,
        enable_critic_lstm: bool | None = None,
        shared_lstm: bool | None = None,
    ) -> None:
        units, n_layers, cell_kwargs, critic = resolve_sb3_contrib_aliases(
            units, n_layers, cell_kwargs, critic, lstm_hidden_size, n_lstm_layers, lstm_kwargs, enable_critic_lstm,
            shared_lstm)
        if n_layers < 1:
            raise ValueError(f"n_layers (n_lstm_layers) must be at least 1, got {n_layers}.")
        features_extractor_class = features_extractor_class or self.default_features_extractor
        if isinstance(observation_space, spaces.Dict) and features_extractor_class in (FlattenExtractor, NatureCNN):
            raise ValueError(f"{type(self).__name__} takes Box or Discrete observations, not Dict; use the "
                             "MultiInput*Policy of the same cell (e.g. 'MultiInputLtcPolicy', CombinedExtractor).")
        # Names (the cell objects are actor_cell / critic_cell, each with its Wiring object as .wiring).
        self.cell_name = self._resolve_cell(cell)
        if wiring not in wirings.WIRING_CHOICES:
            raise ValueError(f"unknown wiring {wiring!r}; choose one of {wirings.WIRING_CHOICES}.")
        if wiring != "fc" and self.cell_name != "ltc":
            raise ValueError(f"wiring {wiring!r} needs the 'ltc' cell (cell {self.cell_name!r} is fully "
                             "connected); use wiring='fc' or MlpLtcPolicy.")
        if critic not in CRITIC_MODES:
            raise ValueError(f"unknown critic mode {critic!r}; choose one of {CRITIC_MODES}.")
        if critic == "shared" and not share_features_extractor:
            raise ValueError("critic='shared' needs share_features_extractor=True (the critic reads the actor cell).")
        self.controller = wiring == "ncp" if controller is None else bool(controller)
        if self.controller and self.cell_name != "ltc":
            raise ValueError("controller mode needs the 'ltc' cell, whose motor neurons drive the actions.")
        net_arch = dict(pi=[], vf=[64]) if net_arch is None else net_arch
        if self.controller and (net_arch.get("pi") if isinstance(net_arch, dict) else net_arch):
            raise ValueError("controller mode drives the actions by the motor neurons directly: use "
                             "net_arch=dict(pi=[], vf=[...]) or controller=False.")
        self.units = units
        self.n_layers = n_layers
        self.wiring_name = wiring
        self.sparsity_level = float(sparsity_level)
        self.wiring_seed = wiring_seed
        self.cell_kwargs = cell_kwargs
        self.critic = critic
        if time_unit is not None and not (np.isfinite(time_unit) and time_unit > 0):
            raise ValueError(f"time_unit must be a positive number (the nominal control period) or None; "
                             f"got {time_unit!r}.")
        self.time_unit = None if time_unit is None else float(time_unit)
        self.use_elapsed_time = bool(use_elapsed_time)
        if not (np.isfinite(cell_lr_scale) and cell_lr_scale > 0):
            raise ValueError(f"cell_lr_scale must be a positive number (the cells' multiple of the learning rate); "
                             f"got {cell_lr_scale!r}.")
        self.cell_lr_scale = float(cell_lr_scale)
        super().__init__(observation_space, action_space, lr_schedule, net_arch, activation_fn, ortho_init, use_sde,
                         log_std_init, full_std, use_expln, squash_output, features_extractor_class,
                         features_extractor_kwargs, share_features_extractor, normalize_images, optimizer_class,
                         optimizer_kwargs)

    def _resolve_cell(self, cell: str | None) -> str:
        if self.cell_kind is not None and cell not in (None, self.cell_kind):
            raise ValueError(f"{type(self).__name__} uses the {self.cell_kind!r} cell; pass cell={cell!r} to "
                             "RecurrentActorCriticPolicy (alias 'MlpRecurrentPolicy') instead.")
        cell = cell or self.cell_kind or "ltc"
        if cell not in CELL_TYPES:
            raise ValueError(f"unknown cell {cell!r}; choose one of {sorted(CELL_TYPES)}.")
        return cell

    # ------------------------------------------------------------------ construction
    def _make_layer(self, input_size: int, wiring: str, output_size: int | None) -> RecurrentCell:
        if self.cell_name != "ltc":
            return make_cell(self.cell_name, input_size, self.units, **self.cell_kwargs)
        circuit = wirings.make(wiring, self.units, output_size, sparsity_level=self.sparsity_level,
                               seed=self.wiring_seed)
        return make_cell("ltc", input_size, circuit, **self.cell_kwargs)

    def _make_cell(self, wiring: str, output_size: int | None) -> RecurrentCell:
        """One cell, or ``n_layers`` stacked: fully connected layers below, the ``wiring`` on top."""
        layers: list[RecurrentCell] = []
        for _ in range(self.n_layers - 1):
            layers.append(self._make_layer(layers[-1].output_size if layers else self.features_dim, "fc", None))
        layers.append(self._make_layer(layers[-1].output_size if layers else self.features_dim, wiring, output_size))
        return layers[0] if len(layers) == 1 else StackedCell(layers)

    def _build_mlp_extractor(self) -> None:
        """Create the recurrent cells and the heads after them (called by ``ActorCriticPolicy._build``)."""
        motors = _distribution_width(self.action_space) if self.controller or self.wiring_name == "ncp" else None
        self.actor_cell = self._make_cell(self.wiring_name, motors)
        self.critic_cell = (self._make_cell("fc" if self.wiring_name == "ncp" else self.wiring_name, None)
                            if self.critic == "separate" else None)
        vf_input = {"separate": self.critic_cell.output_size if self.critic_cell is not None else 0,
                    "shared": self.actor_cell.output_size, "none": self.features_dim,
                    "detached": self.features_dim + self.actor_cell.output_size}[self.critic]
        self.mlp_extractor = RecurrentHeads(self.actor_cell.output_size, vf_input, self.net_arch, self.activation_fn)

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        if self.controller:
            # The motor neurons are the distribution parameters: no layer between circuit and actions.
            self.action_net = nn.Identity()
        if self.controller or self.cell_lr_scale != 1.0:  # one group unless the cells have a rate of their own
            params = self._parameter_groups(lr_schedule(1)) if self.cell_lr_scale != 1.0 else self.parameters()
            self.optimizer = self.optimizer_class(params, lr=lr_schedule(1), **self.optimizer_kwargs)

    def _parameter_groups(self, learning_rate: float) -> list[dict[str, Any]]:
        """The optimiser's groups: the recurrent cells' parameters apart, each group with its ``lr_scale``
        (:class:`~ltc_rl.rl.ppo.RecurrentPPO` multiplies its scheduled rate by it)."""
        cells = [p for cell in (self.actor_cell, self.critic_cell) if cell is not None for p in cell.parameters()]
        in_cells = {id(p) for p in cells}
        rest = [p for p in self.parameters() if id(p) not in in_cells]
        return [dict(params=rest, lr_scale=1.0),
                dict(params=cells, lr_scale=self.cell_lr_scale, lr=learning_rate * self.cell_lr_scale)]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(cell=self.cell_name, units=self.units, n_layers=self.n_layers, wiring=self.wiring_name,
                    sparsity_level=self.sparsity_level, wiring_seed=self.wiring_seed, cell_kwargs=self.cell_kwargs,
                    critic=self.critic, controller=self.controller, time_unit=self.time_unit,
                    use_elapsed_time=self.use_elapsed_time, cell_lr_scale=self.cell_lr_scale)
        return data

    # ------------------------------------------------------------------ state
    @property
    def actor_state_size(self) -> int:
        return self.actor_cell.state_size

    @property
    def state_size(self) -> int:
        """Size of the policy's flat state ``[actor state | critic state]`` (what the rollout buffer stores)."""
        return self.actor_cell.state_size + (self.critic_cell.state_size if self.critic_cell is not None else 0)

    def initial_state(self, batch_size: int) -> Tensor:
        """The full policy state of fresh episodes."""
        parts = [self.actor_cell.initial_state(batch_size, self.device)]
        if self.critic_cell is not None:
            parts.append(self.critic_cell.initial_state(batch_size, self.device))
        return torch.cat(parts, dim=-1)

    def apply_weight_constraints(self) -> None:
        """Project the cells' parameters into their valid range; call after every optimiser step."""
        for cell in (self.actor_cell, self.critic_cell):
            if cell is not None:
                cell.apply_weight_constraints()

    # ------------------------------------------------------------------ recurrent core
    @staticmethod
    def _run_cell(cell: RecurrentCell, features: Tensor, state: Tensor, resets: Tensor,
                  dts: Tensor | None) -> tuple[Tensor, Tensor]:
        """Run one cell over ``(n_seq, T, features)``; returns flat ``(n_seq * T, out)`` outputs and the final state.

        Single steps (rollouts, ``predict``) take the cell's one-step ``forward``, which costs a fused
        cell about half of a length-1 ``forward_sequence``.
        """
        dts = dts if cell.uses_time else None
        if features.shape[1] == 1:
            return cell(features[:, 0], cell.reset_state(state, resets[:, 0]), None if dts is None else dts[:, 0])
        outputs, state = cell.forward_sequence(features, state, dts, resets)
        return outputs.reshape(-1, outputs.shape[-1]), state

    def _latents(self, obs: Tensor, states: Tensor, episode_starts: Tensor, dts: Tensor | None,
                 actor: bool = True, critic: bool = True) -> tuple[Tensor | None, Tensor | None, Tensor]:
        """Latent codes of ``n_seq`` sequences of ``T`` steps.

        Args:
            obs: ``(n_seq, T, *obs_shape)``; states: ``(n_seq, state_size)`` entering the first step;
            episode_starts: ``(n_seq, T)``, True resets the state before that step; dts: ``(n_seq, T)`` or None.
            actor / critic: which latents are needed.
        Returns:
            ``latent_pi`` ``(n_seq * T, dim)`` (or None), ``latent_vf`` (or None), final states ``(n_seq, state_size)``.
        """
        n_seq, steps = episode_starts.shape
        resets = episode_starts.to(torch.bool)
        if dts is not None:
            dts = dts / self.time_unit if self.time_unit is not None and self.use_elapsed_time else None
        features = self.extract_features(_map_obs(obs, lambda x: x.reshape(n_seq * steps, *x.shape[2:])))
        pi_features, vf_features = (features, features) if self.share_features_extractor else features
        split = self.actor_cell.state_size
        actor_state, critic_state = states[:, :split], states[:, split:]
        latent_pi = latent_vf = out_pi = None
        if actor or self.critic in ("shared", "detached"):
            out_pi, actor_state = self._run_cell(self.actor_cell, pi_features.reshape(n_seq, steps, -1), actor_state,
                                                 resets, dts)
            if actor:
                latent_pi = self.mlp_extractor.forward_actor(out_pi)
        if critic:
            if self.critic == "separate":
                out_vf, critic_state = self._run_cell(self.critic_cell, vf_features.reshape(n_seq, steps, -1),
                                                      critic_state, resets, dts)
            elif self.critic == "detached":
                out_vf = torch.cat([vf_features, out_pi.detach()], dim=-1)
            else:
                out_vf = out_pi if self.critic == "shared" else vf_features
            latent_vf = self.mlp_extractor.forward_critic(out_vf)
        return latent_pi, latent_vf, torch.cat([actor_state, critic_state], dim=-1)

    @staticmethod
    def _one_step(obs: Tensor | dict[str, Tensor], episode_starts: Tensor,
                  dt: Tensor | None) -> tuple[Tensor | dict[str, Tensor], Tensor, Tensor | None]:
        """View a batch of single steps as ``n_seq`` sequences of length 1."""
        return _map_obs(obs, lambda x: x.unsqueeze(1)), episode_starts.reshape(-1, 1), None if dt is None else dt.reshape(-1, 1)

    # ------------------------------------------------------------------ SB3 policy API (recurrent signatures)
    def forward(self, obs: Tensor, state: Tensor, episode_starts: Tensor, deterministic: bool = False,  # type: ignore[override]
                dt: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One step for a batch of environments: ``(actions, values, log_prob, new_state)``."""
        obs, episode_starts, dt = self._one_step(obs, episode_starts, dt)
        latent_pi, latent_vf, state = self._latents(obs, state, episode_starts, dt)
        distribution = self._get_action_dist_from_latent(latent_pi)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        actions = actions.reshape((-1, *self.action_space.shape))  # type: ignore[misc]
        return actions, self.value_net(latent_vf), log_prob, state

    def predict_values(self, obs: Tensor, state: Tensor, episode_starts: Tensor,  # type: ignore[override]
                       dt: Tensor | None = None) -> Tensor:
        """Values ``(batch, 1)`` of one step from the full policy state."""
        obs, episode_starts, dt = self._one_step(obs, episode_starts, dt)
        _, latent_vf, _ = self._latents(obs, state, episode_starts, dt, actor=False)
        return self.value_net(latent_vf)

    def evaluate_actions(self, obs: Tensor, actions: Tensor, states: Tensor, episode_starts: Tensor,  # type: ignore[override]
                         dts: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Values, log-probabilities and entropies (each flat ``(n_seq * T,)``) of sequences of actions."""
        latent_pi, latent_vf, _ = self._latents(obs, states, episode_starts, dts)
        distribution = self._get_action_dist_from_latent(latent_pi)
        return self.value_net(latent_vf).flatten(), distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: Tensor, state: Tensor, episode_starts: Tensor,  # type: ignore[override]
                         dt: Tensor | None = None) -> tuple[Distribution, Tensor]:
        """Action distribution of one step and the new *actor* state (``state`` is the actor state)."""
        obs, episode_starts, dt = self._one_step(obs, episode_starts, dt)
        padded = torch.cat([state, state.new_zeros(state.shape[0], self.state_size - self.actor_state_size)], dim=-1)
        latent_pi, _, new_state = self._latents(obs, padded, episode_starts, dt, critic=False)
        return self._get_action_dist_from_latent(latent_pi), new_state[:, : self.actor_state_size]

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray,
        state: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        dt: np.ndarray | float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Action(s) for an observation (batch) and the next recurrent state, as in sb3-contrib.

        Args:
            observation: one observation or a batch ``(n_envs, *obs_shape)``.
            state: the actor state ``(n_envs, actor_state_size)`` returned by the previous call; None starts fresh.
            episode_start: ``(n_envs,)`` bools, True where a new episode starts (the state is reset first).
            deterministic: take the distribution's mode instead of sampling.
            dt: elapsed time since the previous observation (float or ``(n_envs,)``) in the environment's unit
                (divided by ``time_unit``); None: one nominal step.
        """
        self.set_training_mode(False)
        obs, vectorized_env = self.obs_to_tensor(observation)
        n_envs = _obs_batch_size(obs)
        with torch.no_grad():
            if state is None:
                state_t = self.actor_cell.initial_state(n_envs, self.device)
            else:
                state_t = torch.as_tensor(np.asarray(state), dtype=torch.float32, device=self.device)
                if state_t.shape != (n_envs, self.actor_state_size):
                    raise ValueError(f"state must have shape ({n_envs}, {self.actor_state_size}) (the state returned "
                                     f"by the previous predict call), got {tuple(state_t.shape)}.")
            starts = torch.zeros(n_envs, dtype=torch.bool, device=self.device) if episode_start is None else \
                torch.as_tensor(np.asarray(episode_start), device=self.device).reshape(n_envs).to(torch.bool)
            dt_t = None if dt is None else torch.as_tensor(np.asarray(dt, dtype=np.float32), device=self.device)
            if dt_t is not None:
                dt_t = dt_t.expand(n_envs) if dt_t.dim() == 0 else dt_t.reshape(n_envs)
            distribution, state_t = self.get_distribution(obs, state_t, starts, dt_t)
            actions = distribution.get_actions(deterministic=deterministic)
        actions_np = actions.cpu().numpy().reshape((-1, *self.action_space.shape))  # type: ignore[misc]
        if isinstance(self.action_space, spaces.Box):
            actions_np = (self.unscale_action(actions_np) if self.squash_output
                          else np.clip(actions_np, self.action_space.low, self.action_space.high))
        if not vectorized_env:
            actions_np = actions_np.squeeze(axis=0)
        return actions_np, state_t.cpu().numpy()


class MlpLtcPolicy(RecurrentActorCriticPolicy):
    """Liquid Time-Constant cells (``wiring="fc"|"random"|"ncp"``)."""

    cell_kind = "ltc"


class MlpCfcPolicy(RecurrentActorCriticPolicy):
    """Closed-form Continuous-time cells."""

    cell_kind = "cfc"


class MlpLstmPolicy(RecurrentActorCriticPolicy):
    """LSTM cells (state ``[h, c]``), through the same generic machinery."""

    cell_kind = "lstm"


class MlpGruPolicy(RecurrentActorCriticPolicy):
    """GRU cells."""

    cell_kind = "gru"


class CnnRecurrentPolicy(RecurrentActorCriticPolicy):
    """Image observations: SB3's ``NatureCNN`` features, then the cell chosen by ``cell``."""

    default_features_extractor = NatureCNN


class CnnLtcPolicy(MlpLtcPolicy):
    """``NatureCNN`` features, then Liquid Time-Constant cells."""

    default_features_extractor = NatureCNN


class CnnCfcPolicy(MlpCfcPolicy):
    """``NatureCNN`` features, then CfC cells."""

    default_features_extractor = NatureCNN


class CnnLstmPolicy(MlpLstmPolicy):
    """``NatureCNN`` features, then LSTM cells (sb3-contrib's ``CnnLstmPolicy``)."""

    default_features_extractor = NatureCNN


class CnnGruPolicy(MlpGruPolicy):
    """``NatureCNN`` features, then GRU cells."""

    default_features_extractor = NatureCNN


class MultiInputRecurrentPolicy(RecurrentActorCriticPolicy):
    """Dict observations: SB3's ``CombinedExtractor`` features, then the cell chosen by ``cell``."""

    default_features_extractor = CombinedExtractor


class MultiInputLtcPolicy(MlpLtcPolicy):
    """``CombinedExtractor`` features of Dict observations, then Liquid Time-Constant cells."""

    default_features_extractor = CombinedExtractor


class MultiInputCfcPolicy(MlpCfcPolicy):
    """``CombinedExtractor`` features of Dict observations, then CfC cells."""

    default_features_extractor = CombinedExtractor


class MultiInputLstmPolicy(MlpLstmPolicy):
    """``CombinedExtractor`` features of Dict observations, then LSTM cells (sb3-contrib's ``MultiInputLstmPolicy``)."""

    default_features_extractor = CombinedExtractor


class MultiInputGruPolicy(MlpGruPolicy):
    """``CombinedExtractor`` features of Dict observations, then GRU cells."""

    default_features_extractor = CombinedExtractor


#: Every named policy, by the name ``RecurrentPPO("<name>", env)`` accepts.
POLICY_CLASSES: dict[str, type[RecurrentActorCriticPolicy]] = {
    "MlpRecurrentPolicy": RecurrentActorCriticPolicy,
    **{cls.__name__: cls for cls in (
        MlpLtcPolicy, MlpCfcPolicy, MlpLstmPolicy, MlpGruPolicy,
        CnnRecurrentPolicy, CnnLtcPolicy, CnnCfcPolicy, CnnLstmPolicy, CnnGruPolicy,
        MultiInputRecurrentPolicy, MultiInputLtcPolicy, MultiInputCfcPolicy, MultiInputLstmPolicy, MultiInputGruPolicy)},
}
