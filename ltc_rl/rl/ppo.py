"""Recurrent PPO for any recurrent cell, on stable-baselines3's ``OnPolicyAlgorithm``.

Constructor, ``learn`` and ``predict`` follow sb3-contrib's ``RecurrentPPO`` where they overlap, so code
written for one runs with the other; what differs:

* the policy is a :class:`~ltc_rl.rl.policies.RecurrentActorCriticPolicy` over any cell (LTC, NCP, CfC,
  LSTM, GRU, ...) whose state is one flat tensor, so ``predict`` returns the state as one array
  ``(n_envs, state_size)`` instead of an LSTM ``(h, c)`` tuple;
* training uses truncated back-propagation through time over fixed-length sequences
  (``sequence_length``), reset at episode starts inside each sequence;
* the elapsed time an environment reports under :data:`~ltc_rl.rl.elapsed_time.ELAPSED_TIME_KEY`
  reaches the cells as ``dt``, in units of the environment's nominal control period (the policy's
  ``time_unit``, taken from the first reset's report, else from the env's ``dt`` / ``tau`` attribute, unless
  ``policy_kwargs`` fixes it); environments that report no elapsed time step one nominal period each;
* ``env`` may be an id string with ``n_envs`` copies;
* ``save`` writes every field in a form that ``load`` reads without unpickling (:mod:`ltc_rl.rl.safe_files`);
  zips that hold pickled fields only (sb3-contrib, older versions) load with ``trust_pickle=True``;
* every minibatch's gradients and updated parameters are checked (:func:`~ltc_rl.rl.guards.guard_updates`):
  NaN / infinity stops training with :class:`~ltc_rl.errors.DivergenceError` before it reaches the model.
"""

from __future__ import annotations

import io
import pathlib
import pickle
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from ltc_rl.rl.buffers import RecurrentRolloutBuffer
from ltc_rl.rl.guards import guard_updates
from ltc_rl.rl.elapsed_time import (DEFAULT_ELAPSED_TIME, check_dt_scale, elapsed_times, nominal_period,
                                    reset_infos)
from ltc_rl.startup_messages import show_startup_messages_once
from ltc_rl.rl.policies import POLICY_CLASSES, RecurrentActorCriticPolicy
from ltc_rl.errors import ModelFileError
from ltc_rl.rl.safe_files import read_model_data, reason, save_algorithm

__all__ = ["RecurrentPPO"]

SelfRecurrentPPO = TypeVar("SelfRecurrentPPO", bound="RecurrentPPO")

#: ``sequence_length`` when not given and ``n_steps`` allows it.
DEFAULT_SEQUENCE_LENGTH = 32


class RecurrentPPO(OnPolicyAlgorithm):
    """Proximal Policy Optimization (clip) with recurrent policies over any :mod:`ltc_rl.cells` cell.

    Parameters are those of sb3-contrib's ``RecurrentPPO`` (see its documentation) plus:

    Args:
        n_envs: number of environment copies when ``env`` is an id string (must stay 1 for env objects).
        sequence_length: length of the training sequences (truncated BPTT), at most ``n_steps``; None (default):
            ``min(32, n_steps)``. Minibatches hold whole sequences: ``ceil(batch_size / sequence_length)`` of
            them (``batch_size`` transitions when it is a multiple of ``sequence_length``), the last minibatch
            of an epoch the sequences left over.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = dict(POLICY_CLASSES)
    policy: RecurrentActorCriticPolicy
    rollout_buffer: RecurrentRolloutBuffer

    def __init__(
        self,
        policy: str | type[RecurrentActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 128,
        batch_size: int | None = 128,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        target_kl: float | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: torch.device | str = "auto",
        n_envs: int = 1,
        sequence_length: int | None = None,
        _init_setup_model: bool = True,
    ) -> None:
        if isinstance(env, str):
            show_startup_messages_once()
            env = make_vec_env(env, n_envs=n_envs, seed=seed)
        elif n_envs != 1:
            raise ValueError("n_envs applies to environment ids only; pass a VecEnv with the number of copies you want.")
        super().__init__(
            policy, env, learning_rate=learning_rate, n_steps=n_steps, gamma=gamma, gae_lambda=gae_lambda,
            ent_coef=ent_coef, vf_coef=vf_coef, max_grad_norm=max_grad_norm, use_sde=use_sde,
            sde_sample_freq=sde_sample_freq, stats_window_size=stats_window_size, tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs, verbose=verbose, seed=seed, device=device, _init_setup_model=False,
            supported_action_spaces=(spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary),
        )
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.clip_range = clip_range
        self.clip_range_vf = clip_range_vf
        self.normalize_advantage = normalize_advantage
        self.target_kl = target_kl
        self.sequence_length = min(DEFAULT_SEQUENCE_LENGTH, n_steps) if sequence_length is None else sequence_length
        self._last_states: torch.Tensor | None = None
        self._last_dts: np.ndarray | None = None
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        if self.sequence_length < 1 or self.sequence_length > self.n_steps:
            raise ValueError(f"sequence_length must lie in [1, n_steps={self.n_steps}], got {self.sequence_length}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive number of transitions or None, got {self.batch_size}.")
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde, **self.policy_kwargs
        )
        if not isinstance(self.policy, RecurrentActorCriticPolicy):
            raise ValueError(f"RecurrentPPO needs a RecurrentActorCriticPolicy, got {type(self.policy).__name__}.")
        self.policy = self.policy.to(self.device)
        guard_updates(self)
        self.rollout_buffer = RecurrentRolloutBuffer(
            self.n_steps, self.observation_space, self.action_space, state_size=self.policy.state_size,  # type: ignore[arg-type]
            sequence_length=self.sequence_length, device=self.device, gamma=self.gamma, gae_lambda=self.gae_lambda,
            n_envs=self.n_envs,
        )
        self._last_states = self.policy.initial_state(self.n_envs)
        self._last_dts = np.ones(self.n_envs, dtype=np.float32)
        self.clip_range = FloatSchedule(self.clip_range)
        if self.clip_range_vf is not None:
            if isinstance(self.clip_range_vf, (float, int)) and self.clip_range_vf <= 0:
                raise ValueError("clip_range_vf must be positive; pass None to disable value clipping.")
            self.clip_range_vf = FloatSchedule(self.clip_range_vf)

    def _setup_learn(self, total_timesteps: int, callback: MaybeCallback = None, reset_num_timesteps: bool = True,
                     tb_log_name: str = "run", progress_bar: bool = False) -> tuple[int, BaseCallback]:
        fresh_start = reset_num_timesteps or self._last_obs is None
        total_timesteps, callback = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name,
                                                         progress_bar)
        if fresh_start:  # the environments were reset: fresh recurrent states, nominal elapsed time
            assert self.env is not None
            if self.policy.time_unit is None:  # saved with the model through policy_kwargs
                self.policy.time_unit = nominal_period(self.env) or DEFAULT_ELAPSED_TIME
                self.policy_kwargs = {**self.policy_kwargs, "time_unit": self.policy.time_unit}
            self._last_states = self.policy.initial_state(self.n_envs)
            self._last_dts = elapsed_times([{}] * self.n_envs, np.ones(self.n_envs, dtype=bool),
                                           reset_infos(self.env), default=self._nominal_dt)
        return total_timesteps, callback

    @property
    def _nominal_dt(self) -> float:
        """The elapsed time of a step the environment does not report: one nominal period."""
        return self.policy.time_unit or DEFAULT_ELAPSED_TIME

    def _update_learning_rate(self, optimizers: list[torch.optim.Optimizer] | torch.optim.Optimizer) -> None:
        """SB3's schedule, then each parameter group's ``lr_scale`` (the policy's ``cell_lr_scale``)."""
        super()._update_learning_rate(optimizers)
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            for group in optimizer.param_groups:
                group["lr"] *= group.get("lr_scale", 1.0)

    def collect_rollouts(self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer,
                         n_rollout_steps: int) -> bool:
        """Fill the rollout buffer, carrying each environment's recurrent state and elapsed time."""
        assert isinstance(rollout_buffer, RecurrentRolloutBuffer), "RecurrentPPO needs a RecurrentRolloutBuffer"
        assert self._last_obs is not None and self._last_states is not None and self._last_dts is not None
        self.policy.set_training_mode(False)
        n_steps = 0
        rollout_buffer.reset()
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)
        callback.on_rollout_start()
        dones = self._last_episode_starts
        while n_steps < n_rollout_steps:
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)
            with torch.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                starts = torch.as_tensor(self._last_episode_starts, device=self.device)
                dts = torch.as_tensor(self._last_dts, device=self.device)
                actions, values, log_probs, states = self.policy(obs_tensor, self._last_states, starts, dt=dts)
            actions = actions.cpu().numpy()
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                clipped_actions = (self.policy.unscale_action(actions) if self.policy.squash_output
                                   else np.clip(actions, self.action_space.low, self.action_space.high))
            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)
            step_dts = elapsed_times(infos, default=self._nominal_dt)
            self._bootstrap_truncated(rewards, dones, infos, states, step_dts)
            rollout_buffer.add(self._last_obs, actions, rewards, self._last_episode_starts, values, log_probs,  # type: ignore[arg-type]
                               states=self._last_states, dts=self._last_dts)
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones
            self._last_states = states
            self._last_dts = elapsed_times(infos, dones, reset_infos(env), default=self._nominal_dt)
        with torch.no_grad():
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device), self._last_states,  # type: ignore[arg-type]
                                                torch.as_tensor(dones, device=self.device),
                                                torch.as_tensor(self._last_dts, device=self.device))
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _bootstrap_truncated(self, rewards: np.ndarray, dones: np.ndarray, infos: list[dict[str, Any]],
                             states: torch.Tensor, step_dts: np.ndarray) -> None:
        """Add ``gamma * V(terminal observation)`` to the reward of episodes cut by a time limit (SB3 issue #633)."""
        cut = [idx for idx, done in enumerate(dones) if done and infos[idx].get("terminal_observation") is not None
               and infos[idx].get("TimeLimit.truncated", False)]
        if not cut:
            return
        terminal = [infos[idx]["terminal_observation"] for idx in cut]
        terminal_obs = ({key: np.stack([obs[key] for obs in terminal]) for key in terminal[0]}
                        if isinstance(terminal[0], dict) else np.stack(terminal))
        with torch.no_grad():
            values = self.policy.predict_values(
                obs_as_tensor(terminal_obs, self.device), states[cut],  # type: ignore[arg-type]
                torch.zeros(len(cut), dtype=torch.bool, device=self.device),
                torch.as_tensor(step_dts[cut], device=self.device),
            )
        rewards[cut] += self.gamma * values.flatten().cpu().numpy()

    def train(self) -> None:
        """PPO epochs over minibatches of whole sequences; padded steps are masked out of every loss."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        entropy_losses, pg_losses, value_losses, clip_fractions, approx_kl_divs, grad_norms = [], [], [], [], [], []
        continue_training = True
        loss = torch.zeros(())
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for batch in self.rollout_buffer.get(self.batch_size):
                mask = batch.mask.flatten()
                actions = batch.actions.reshape(-1, batch.actions.shape[-1])
                if isinstance(self.action_space, spaces.Discrete):
                    actions = actions.long().flatten()
                values, log_prob, entropy = self.policy.evaluate_actions(
                    batch.observations, actions, batch.states, batch.episode_starts, batch.dts)
                values, log_prob = values[mask], log_prob[mask]
                old_values, old_log_prob = batch.old_values.flatten()[mask], batch.old_log_prob.flatten()[mask]
                advantages, returns = batch.advantages.flatten()[mask], batch.returns.flatten()[mask]
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

                ratio = torch.exp(log_prob - old_log_prob)
                policy_loss = -torch.min(advantages * ratio,
                                         advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()
                pg_losses.append(policy_loss.item())
                clip_fractions.append(torch.mean((torch.abs(ratio - 1) > clip_range).float()).item())
                values_pred = values if clip_range_vf is None else \
                    old_values + torch.clamp(values - old_values, -clip_range_vf, clip_range_vf)
                value_loss = torch.mean((returns - values_pred) ** 2)
                value_losses.append(value_loss.item())
                entropy_loss = -torch.mean(-log_prob) if entropy is None else -torch.mean(entropy[mask])
                entropy_losses.append(entropy_loss.item())
                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

                with torch.no_grad():
                    log_ratio = log_prob - old_log_prob
                    approx_kl_div = torch.mean((torch.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                    approx_kl_divs.append(approx_kl_div)
                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_div:.2f}")
                    break

                self.policy.optimizer.zero_grad()
                loss.backward()
                grad_norms.append(torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm).item())
                self.policy.optimizer.step()
                self.policy.apply_weight_constraints()
            self._n_updates += 1
            if not continue_training:
                break

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/grad_norm", float(np.mean(grad_norms)) if grad_norms else float("nan"))
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", torch.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)

    def learn(self: SelfRecurrentPPO, total_timesteps: int, callback: MaybeCallback = None, log_interval: int = 1,
              tb_log_name: str = "RecurrentPPO", reset_num_timesteps: bool = True,
              progress_bar: bool = False) -> SelfRecurrentPPO:
        return super().learn(total_timesteps=total_timesteps, callback=callback, log_interval=log_interval,
                             tb_log_name=tb_log_name, reset_num_timesteps=reset_num_timesteps,
                             progress_bar=progress_bar)

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray,
        state: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        dt: np.ndarray | float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(action, state)`` as in sb3-contrib; ``state`` is one array ``(n_envs, actor_state_size)``.

        ``dt``: elapsed time since the previous observation (float or ``(n_envs,)``) in the environment's unit
        (the policy divides it by its ``time_unit``), None for one nominal step. A ``dt`` on another scale than
        ``time_unit`` (probably another unit) warns once.
        """
        check_dt_scale(dt, self.policy.time_unit)
        return self.policy.predict(observation, state, episode_start, deterministic, dt=dt)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_last_states"]

    def save(self, path: str | pathlib.Path | io.BufferedIOBase, exclude: Iterable[str] | None = None,
             include: Iterable[str] | None = None) -> None:
        """Save as stable-baselines3 does, with every field also in a form :meth:`load` reads without unpickling."""
        if exclude is not None or include is not None:
            raise ValueError("RecurrentPPO.save writes the fields load needs; exclude/include are not supported.")
        save_algorithm(self, path)  # type: ignore[arg-type]

    @classmethod
    def load(cls: type[SelfRecurrentPPO], path: str | pathlib.Path | io.BufferedIOBase,  # type: ignore[override]
             env: GymEnv | None = None, device: torch.device | str = "auto",
             custom_objects: dict[str, Any] | None = None, trust_pickle: bool = False,
             **kwargs: Any) -> SelfRecurrentPPO:
        """stable-baselines3's ``load``, with the ``data`` fields read by
        :func:`~ltc_rl.rl.safe_files.read_model_data`: nothing is unpickled unless ``trust_pickle``."""
        custom_objects = dict(custom_objects or {})
        custom_objects.update(read_model_data(path, trust_pickle, skip=custom_objects))  # type: ignore[arg-type]
        try:
            return super().load(path, env=env, device=device, custom_objects=custom_objects, **kwargs)
        except pickle.UnpicklingError as exc:  # torch's weights_only refusal of a tensor file holding objects
            raise ModelFileError(f"cannot load {path}: {reason(exc)}.") from exc
