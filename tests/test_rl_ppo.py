"""Recurrent PPO with LTC / NCP / CfC / LSTM / GRU policies (ltc_rl.rl)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

import ltc_rl
from ltc_rl.rl import RecurrentPPO
from ltc_rl.kernels import compile_mode
from ltc_rl.rl.evaluation import evaluate

from conftest import requires_cuda
from toy_envs import CartPoleNoVelocity, CueRecall, ReportsElapsedTime


SMALL = dict(n_steps=32, batch_size=32, sequence_length=8, n_epochs=2, seed=0)
POLICIES = [
    ("MlpLtcPolicy", dict(units=8)),
    ("MlpLtcPolicy", dict(units=8, wiring="random", sparsity_level=0.5, critic="shared")),
    ("MlpLtcPolicy", dict(units=10, wiring="ncp")),
    ("MlpCfcPolicy", dict(units=8, critic="none")),
    ("MlpLtcPolicy", dict(units=8, critic="detached", net_arch=dict(pi=[], vf=[16]))),
    ("MlpLstmPolicy", dict(units=8)),
    ("MlpGruPolicy", dict(units=8)),
    ("MlpRecurrentPolicy", dict(cell="ctrnn", units=8)),
]


def _collect(model: RecurrentPPO) -> None:
    """One rollout into the model's buffer, as ``learn`` does it."""
    _, callback = model._setup_learn(model.n_steps * model.n_envs, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)


def test_exports_from_package():
    assert ltc_rl.RecurrentPPO is RecurrentPPO
    for name in ("MlpLtcPolicy", "MlpCfcPolicy", "MlpLstmPolicy", "MlpGruPolicy"):
        assert getattr(ltc_rl, name) is RecurrentPPO.policy_aliases[name]


def test_signatures_match_sb3_contrib_where_they_overlap():
    contrib = pytest.importorskip("sb3_contrib").RecurrentPPO
    for method in ("__init__", "learn", "predict"):
        theirs = list(inspect.signature(getattr(contrib, method)).parameters.values())
        ours = list(inspect.signature(getattr(RecurrentPPO, method)).parameters.values())
        public = [p for p in theirs if not p.name.startswith("_")]
        assert [(p.name, p.default) for p in ours[: len(public)]] == [(p.name, p.default) for p in public], method


def test_sb3_evaluate_policy_runs_our_recurrent_model():
    """SB3's evaluate_policy drives the recurrent state through predict(state, episode_start): its episode returns
    are those of a stateful rollout written out here, on identically seeded environments."""
    model = RecurrentPPO("MlpLtcPolicy", "CartPole-v1", policy_kwargs=dict(units=8), **SMALL)
    returns, lengths = evaluate_policy(model, make_vec_env("CartPole-v1", n_envs=2, seed=0), n_eval_episodes=2,
                                       return_episode_rewards=True)
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    obs, state, starts = env.reset(), None, np.ones(2, dtype=bool)
    running, first_returns = np.zeros(2), [None, None]
    while None in first_returns:
        action, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
        obs, reward, starts, _ = env.step(action)
        running += reward
        for index in np.flatnonzero(starts):
            if first_returns[index] is None:
                first_returns[index] = running[index]
            running[index] = 0.0
    assert sorted(returns) == sorted(first_returns) and returns == [float(n) for n in lengths]  # CartPole: +1 a step


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("policy, kwargs", POLICIES, ids=lambda p: p if isinstance(p, str) else "-".join(map(str, p.values())))
def test_every_policy_trains_a_few_steps(policy, kwargs, env_id):
    model = RecurrentPPO(policy, env_id, n_envs=2, policy_kwargs=kwargs, **SMALL)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(64)
    assert model.num_timesteps == 64
    changed = [not torch.equal(a, b) for a, b in zip(before, model.policy.parameters())]
    assert any(changed)
    obs = model.env.reset()
    action, state = model.predict(obs, episode_start=np.ones(2, dtype=bool))
    assert model.env.action_space.contains(action[0])
    assert state.shape == (2, model.policy.actor_state_size)


def test_minibatch_sequences_replay_the_rollout_exactly():
    """Every stored step is re-evaluated (sequences, stored states, resets, padding) to the rollout's numbers."""
    model = RecurrentPPO("MlpLtcPolicy", "CartPole-v1", n_envs=3, n_steps=50, batch_size=16, sequence_length=8,
                         seed=1, policy_kwargs=dict(units=8))
    _collect(model)
    buffer = model.rollout_buffer
    assert buffer.episode_starts[1:].sum() > 0  # episodes end inside the rollout
    seen = 0
    with torch.no_grad():
        for batch in buffer.get(16):
            actions = batch.actions.reshape(-1, 1).long().flatten()
            values, log_prob, _ = model.policy.evaluate_actions(batch.observations, actions, batch.states,
                                                                batch.episode_starts, batch.dts)
            mask = batch.mask.flatten()
            torch.testing.assert_close(log_prob[mask], batch.old_log_prob.flatten()[mask], atol=1e-5, rtol=0)
            torch.testing.assert_close(values[mask], batch.old_values.flatten()[mask], atol=1e-5, rtol=0)
            seen += int(mask.sum())
    assert seen == 50 * 3  # 50 = 6 sequences of 8 + 2 padded ones per environment


def test_no_state_leaks_across_episodes_inside_a_sequence():
    model = RecurrentPPO("MlpLtcPolicy", "Pendulum-v1", n_steps=16, batch_size=16, sequence_length=16,
                         seed=0, policy_kwargs=dict(units=8))
    policy = model.policy
    obs = torch.randn(2, 10, 3)
    starts = torch.zeros(2, 10, dtype=torch.bool)
    starts[:, 6] = True
    states = torch.randn(2, policy.state_size)
    with torch.no_grad():
        pi, vf, _ = policy._latents(obs, states, starts, None)
        changed_obs = obs.clone()
        changed_obs[:, :6] = torch.randn(2, 6, 3)
        pi2, vf2, _ = policy._latents(changed_obs, states + 1.0, starts, None)
    after = torch.arange(20).reshape(2, 10)[:, 6:].flatten()
    torch.testing.assert_close(pi[after], pi2[after])
    torch.testing.assert_close(vf[after], vf2[after])
    assert not torch.allclose(pi[:6], pi2[:6])  # before the reset the history does matter


def test_predict_resets_state_at_episode_start_and_carries_it_otherwise():
    model = RecurrentPPO("MlpLtcPolicy", "Pendulum-v1", n_steps=16, batch_size=16, sequence_length=8, seed=0,
                         policy_kwargs=dict(units=8))
    obs = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    fresh, fresh_state = model.predict(obs, deterministic=True)
    junk = np.random.default_rng(1).normal(size=fresh_state.shape).astype(np.float32)
    reset, reset_state = model.predict(obs, state=junk, episode_start=np.ones(3, dtype=bool), deterministic=True)
    np.testing.assert_allclose(reset, fresh, atol=1e-6)
    np.testing.assert_allclose(reset_state, fresh_state, atol=1e-6)
    carried, _ = model.predict(obs, state=junk, episode_start=np.zeros(3, dtype=bool), deterministic=True)
    assert not np.allclose(carried, fresh)
    with pytest.raises(ValueError, match="state must have shape"):
        model.predict(obs, state=junk[:, :3])


def test_elapsed_time_reaches_the_buffer_and_the_cell():
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0, wrapper_class=ReportsElapsedTime)
    model = RecurrentPPO("MlpLtcPolicy", env, n_steps=20, batch_size=20, sequence_length=10, seed=0,
                         policy_kwargs=dict(units=8))
    _collect(model)
    dts = model.rollout_buffer.dts
    np.testing.assert_allclose(dts[0], 0.5)  # the reset info's elapsed time for the first observation
    assert np.all((dts[1:] >= 0.1) & (dts[1:] <= 2.0)) and np.unique(dts[1:]).size > 10
    obs = env.reset()
    slow, _ = model.predict(obs, deterministic=True, dt=0.1)
    fast, _ = model.predict(obs, deterministic=True, dt=np.array([3.0, 3.0]))
    assert not np.allclose(slow, fast)


def test_elapsed_time_is_ignored_when_switched_off():
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0, wrapper_class=ReportsElapsedTime)
    model = RecurrentPPO("MlpLtcPolicy", env, n_steps=20, batch_size=20, sequence_length=10, seed=0,
                         policy_kwargs=dict(units=8, use_elapsed_time=False))
    _collect(model)
    obs = env.reset()
    slow, _ = model.predict(obs, deterministic=True, dt=0.1)
    fast, _ = model.predict(obs, deterministic=True, dt=np.array([3.0, 3.0]))
    np.testing.assert_array_equal(slow, fast)


def test_detached_critic_reads_the_actor_cell_without_training_it():
    model = RecurrentPPO("MlpLtcPolicy", "Pendulum-v1", policy_kwargs=dict(units=8, critic="detached"), **SMALL)
    policy = model.policy
    assert policy.critic_cell is None and policy.state_size == policy.actor_state_size
    obs = torch.randn(4, 1, 3)
    starts = torch.zeros(4, 1, dtype=torch.bool)
    state = policy.initial_state(4)
    _, latent_vf, _ = policy._latents(obs, state, starts, None, actor=False)
    policy.value_net(latent_vf).sum().backward()
    cell_grads = [p.grad for p in policy.actor_cell.parameters()]
    assert all(g is None or not g.any() for g in cell_grads)  # the value loss leaves the actor's cell alone
    assert any(p.grad is not None and p.grad.any() for p in policy.mlp_extractor.value_net.parameters())
    # ... but the value depends on the actor's state (memory the observation lacks)
    with torch.no_grad():
        moved = policy.predict_values(obs[:, 0], state + 0.5, starts[:, 0])
        fresh = policy.predict_values(obs[:, 0], state, starts[:, 0])
    assert not torch.allclose(moved, fresh)


def test_save_load_round_trip_gives_identical_actions(tmp_path):
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    model = RecurrentPPO("MlpLtcPolicy", env, policy_kwargs=dict(units=10, wiring="ncp"), **SMALL)
    model.learn(64)
    model.save(tmp_path / "model")
    loaded = RecurrentPPO.load(tmp_path / "model", device="cpu")
    assert loaded.sequence_length == model.sequence_length
    obs = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    state_a = state_b = None
    starts = np.ones(2, dtype=bool)
    for _ in range(5):
        action_a, state_a = model.predict(obs, state=state_a, episode_start=starts, deterministic=True)
        action_b, state_b = loaded.predict(obs, state=state_b, episode_start=starts, deterministic=True)
        np.testing.assert_array_equal(action_a, action_b)
        np.testing.assert_array_equal(state_a, state_b)
        starts = np.zeros(2, dtype=bool)
    for (name, a), b in zip(model.policy.state_dict().items(), loaded.policy.state_dict().values()):
        assert torch.equal(a, b), name
    loaded.set_env(env)
    loaded.learn(32, reset_num_timesteps=False)  # a loaded model trains on


def test_ltc_init_ranges_reach_the_cells_and_survive_save_and_load(tmp_path):
    kwargs = dict(units=8, cell_kwargs=dict(init_ranges={"w": [0.0001, 0.1]}))
    model = RecurrentPPO("MlpLtcPolicy", "Pendulum-v1", policy_kwargs=kwargs, **SMALL)
    for cell in (model.policy.actor_cell, model.policy.critic_cell):
        assert cell.w.max() <= 0.1
    model.save(tmp_path / "model")
    loaded = RecurrentPPO.load(tmp_path / "model", device="cpu")
    assert loaded.policy.cell_kwargs == kwargs["cell_kwargs"]
    torch.testing.assert_close(loaded.policy.actor_cell.w, model.policy.actor_cell.w)


@pytest.mark.parametrize("policy_kwargs", [dict(units=8), dict(units=8, wiring="ncp")])
def test_cell_lr_scale_gives_the_cells_their_own_rate(tmp_path, policy_kwargs):
    model = RecurrentPPO("MlpLtcPolicy", "Pendulum-v1", learning_rate=1e-3,
                         policy_kwargs=dict(policy_kwargs, cell_lr_scale=10.0), **SMALL)
    model.learn(64)
    rate = 1e-3
    cells = {id(p) for cell in (model.policy.actor_cell, model.policy.critic_cell) for p in cell.parameters()}
    rest, cell_group = model.policy.optimizer.param_groups
    assert {id(p) for p in cell_group["params"]} == cells and not cells & {id(p) for p in rest["params"]}
    assert len(rest["params"]) + len(cells) == len(list(model.policy.parameters()))
    assert rest["lr"] == pytest.approx(rate) and cell_group["lr"] == pytest.approx(10 * rate)
    model.save(tmp_path / "model")
    loaded = RecurrentPPO.load(tmp_path / "model", device="cpu")
    assert loaded.policy.cell_lr_scale == 10.0
    assert [group["lr_scale"] for group in loaded.policy.optimizer.param_groups] == [1.0, 10.0]
    with pytest.raises(ValueError, match="cell_lr_scale must be a positive number"):
        RecurrentPPO("MlpLtcPolicy", "Pendulum-v1", policy_kwargs=dict(units=8, cell_lr_scale=0), **SMALL)


def test_ncp_controller_mode_drives_actions_by_motor_neurons():
    model = RecurrentPPO("MlpLtcPolicy", "Pendulum-v1", policy_kwargs=dict(units=12, wiring="ncp"), **SMALL)
    policy = model.policy
    assert policy.controller and isinstance(policy.action_net, torch.nn.Identity)
    assert policy.actor_cell.output_size == 1  # one motor neuron per action dimension
    assert policy.actor_cell.wiring.synapse_count < 12 * 12
    obs = torch.zeros(1, 3)
    with torch.no_grad():
        distribution, _ = policy.get_distribution(obs, policy.actor_cell.initial_state(1), torch.ones(1))
        motor, _ = policy.actor_cell(obs, policy.actor_cell.initial_state(1))
    torch.testing.assert_close(distribution.distribution.mean, motor)


@pytest.mark.parametrize("kwargs, message", [
    (dict(wiring="ncp", cell="lstm"), "needs the 'ltc' cell"),
    (dict(wiring="grid"), "unknown wiring"),
    (dict(critic="both"), "unknown critic mode"),
    (dict(cell="transformer"), "unknown cell"),
    (dict(wiring="ncp", net_arch=[32]), "controller mode"),
])
def test_bad_policy_kwargs_give_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RecurrentPPO("MlpRecurrentPolicy", "Pendulum-v1", policy_kwargs=kwargs, **SMALL)


def test_bad_algorithm_settings_give_clear_errors():
    with pytest.raises(ValueError, match="batch_size must be a positive number"):
        RecurrentPPO("MlpLtcPolicy", "Pendulum-v1", n_steps=32, batch_size=0, sequence_length=8)
    with pytest.raises(ValueError, match="sequence_length must lie"):
        RecurrentPPO("MlpLtcPolicy", "Pendulum-v1", n_steps=16, batch_size=64, sequence_length=32)
    with pytest.raises(ValueError, match="MlpLtcPolicy uses the 'ltc' cell"):
        RecurrentPPO("MlpLtcPolicy", "Pendulum-v1", policy_kwargs=dict(cell="gru"), **SMALL)


def test_cpu_trained_model_loads_on_cpu(tmp_path):
    model = RecurrentPPO("MlpLtcPolicy", "Pendulum-v1", device="cpu", policy_kwargs=dict(units=8), **SMALL)
    model.learn(32)
    model.save(tmp_path / "m.zip")
    loaded = RecurrentPPO.load(tmp_path / "m.zip", device="cpu")
    assert loaded.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in loaded.policy.parameters())


@requires_cuda
def test_cpu_trained_model_loads_and_acts_on_cuda(tmp_path):
    model = RecurrentPPO("MlpLtcPolicy", "Pendulum-v1", device="cpu", policy_kwargs=dict(units=8), **SMALL)
    model.learn(32)
    model.save(tmp_path / "m.zip")
    loaded = RecurrentPPO.load(tmp_path / "m.zip", device="cuda")
    assert all(p.device.type == "cuda" for p in loaded.policy.parameters())
    obs = np.zeros((2, 3), np.float32)
    on_cpu, _ = model.predict(obs, episode_start=np.ones(2, bool), deterministic=True)
    on_cuda, _ = loaded.predict(obs, episode_start=np.ones(2, bool), deterministic=True)
    np.testing.assert_allclose(on_cpu, on_cuda, atol=1e-4)
    loaded.set_env(make_vec_env("Pendulum-v1", n_envs=1, seed=0))
    loaded.learn(32, reset_num_timesteps=False)


def _best_evaluation(model, eval_env, budget: int, target: float, chunk: int = 8192, episodes: int = 10) -> float:
    """Train in chunks up to ``budget`` steps; the best mean evaluation return (stops early at ``target``)."""
    best = -np.inf
    while model.num_timesteps < budget and best < target:
        model.learn(chunk, reset_num_timesteps=False)
        best = max(best, float(np.mean(evaluate(model, eval_env, n_eval_episodes=episodes)[0])))
    return best


def _memory_model(policy: str, seed: int):
    env = make_vec_env(lambda: CueRecall(delay=3), n_envs=4, seed=seed)
    if policy == "mlp":
        return PPO("MlpPolicy", env, n_steps=64, batch_size=64, learning_rate=3e-3, seed=seed)
    return RecurrentPPO(policy, env, n_steps=64, batch_size=64, sequence_length=16, learning_rate=3e-3, seed=seed,
                        policy_kwargs=dict(units=8))


@pytest.mark.slow
def test_ltc_policy_learns_a_memory_task_a_feedforward_policy_cannot():
    """CueRecall: the LTC policy answers from memory (return near +1); an MLP stays at chance (0)."""
    eval_env = make_vec_env(lambda: CueRecall(delay=3), n_envs=4, seed=123)
    ltc_best = _best_evaluation(_memory_model("MlpLtcPolicy", 0), eval_env, budget=6144, target=0.9, chunk=1024,
                                episodes=100)
    mlp_best = _best_evaluation(_memory_model("mlp", 0), eval_env, budget=2048, target=np.inf, chunk=1024,
                                episodes=100)
    assert ltc_best >= 0.9 and mlp_best <= 0.5, (ltc_best, mlp_best)


@pytest.mark.slow
def test_ltc_policy_balances_cartpole_without_velocities():
    """CartPole observing positions only: the LTC policy reaches a return the feed-forward policy does not."""
    def make(seed):
        return make_vec_env("CartPole-v1", n_envs=8, seed=seed, wrapper_class=CartPoleNoVelocity)

    settings = dict(n_steps=128, batch_size=256, n_epochs=10, learning_rate=1e-3, gamma=0.98, gae_lambda=0.8, seed=0)
    with compile_mode(True):  # a long run: the compiled LTC kernels pay for their start-up
        ltc = RecurrentPPO("MlpLtcPolicy", make(0), sequence_length=32, policy_kwargs=dict(units=32), **settings)
        ltc_best = _best_evaluation(ltc, make(100), budget=150_000, target=300.0)
    mlp_best = _best_evaluation(PPO("MlpPolicy", make(0), **settings), make(100), budget=100_000, target=np.inf)
    assert ltc_best >= 300.0 and mlp_best < 150.0, (ltc_best, mlp_best)
