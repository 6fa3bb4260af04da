"""Code written for sb3-contrib's RecurrentPPO runs here: defaults, policy keywords, Cnn / MultiInput policies,
stacked layers, MultiDiscrete actions, and what agents and exports do with such policies."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN

from agents import LTCAgent, export_onnx, export_torchscript, load_torchscript
from ltc_rl.cells import CfCCell, GRUCell, LSTMCell, LTCCell, StackedCell
from ltc_rl.rl import RecurrentPPO, RecurrentRolloutBuffer

CELLS = {"Ltc": LTCCell, "Cfc": CfCCell, "Lstm": LSTMCell, "Gru": GRUCell}


class TinyEnv(gym.Env):
    """Ten-step episodes of random observations (``"dict"``: a vector and a 36x36 image, ``"image"``: the
    image alone, ``"box"``: the vector); reward for the first action component being 1."""

    def __init__(self, kind: str = "dict", action_space: spaces.Space | None = None) -> None:
        vector = spaces.Box(-1.0, 1.0, (3,), np.float32)
        image = spaces.Box(0, 255, (36, 36, 1), np.uint8)
        self.kind = kind
        self.observation_space = {"dict": spaces.Dict({"pos": vector, "img": image}), "image": image,
                                  "box": vector}[kind]
        self.action_space = action_space or spaces.Discrete(2)
        self.steps = 0

    def _obs(self):
        vector = self.np_random.uniform(-1, 1, 3).astype(np.float32)
        image = self.np_random.integers(0, 255, (36, 36, 1), dtype=np.uint8)
        return {"dict": {"pos": vector, "img": image}, "image": image, "box": vector}[self.kind]

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        return self._obs(), {}

    def step(self, action):
        self.steps += 1
        first = np.asarray(action).flat[0]
        return self._obs(), float(first == 1), False, self.steps >= 10, {}


def _episode_observations(kind: str, steps: int = 4) -> list:
    env = TinyEnv(kind)
    obs, _ = env.reset(seed=3)
    out = [obs]
    for _ in range(steps - 1):
        out.append(env.step(env.action_space.sample())[0])
    return out


# ------------------------------------------------------------------------------ RecurrentPPO defaults
def test_sb3_contrib_defaults_work_with_short_rollouts():
    model = RecurrentPPO("MlpLstmPolicy", "CartPole-v1", n_steps=16)
    assert model.sequence_length == 16  # clamped to n_steps
    model.learn(32)
    assert RecurrentPPO("MlpLstmPolicy", "CartPole-v1").sequence_length == 32  # today's default where it fits


def test_batch_size_not_a_multiple_of_the_sequence_length_rounds_up_to_whole_sequences():
    model = RecurrentPPO("MlpGruPolicy", "CartPole-v1", n_steps=32, batch_size=20, sequence_length=8, n_epochs=1,
                         policy_kwargs=dict(units=4))
    model.learn(32)
    sizes = [batch.actions.shape[0] for batch in model.rollout_buffer.get(model.batch_size)]
    assert sizes == [3, 1]  # ceil(20 / 8) = 3 sequences, then the one left over
    assert [b.actions.shape[0] for b in model.rollout_buffer.get(16)] == [2, 2]


# ------------------------------------------------------------------------------ policy keywords
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_sb3_contrib_policy_kwargs_are_aliases_on_every_cell(cell):
    kwargs = dict(lstm_hidden_size=6, n_lstm_layers=2, enable_critic_lstm=False)
    model = RecurrentPPO(f"Mlp{cell}Policy", "CartPole-v1", n_steps=16, policy_kwargs=kwargs)
    policy = model.policy
    assert policy.units == 6 and policy.n_layers == 2 and policy.critic == "none" and policy.critic_cell is None
    assert isinstance(policy.actor_cell, StackedCell)
    assert [type(layer) for layer in policy.actor_cell.layers] == [CELLS[cell]] * 2
    assert policy.actor_cell.state_size == 2 * CELLS[cell](4, 6).state_size
    model.learn(16)

    shared = RecurrentPPO(f"Mlp{cell}Policy", "CartPole-v1", n_steps=16,
                          policy_kwargs=dict(shared_lstm=True, enable_critic_lstm=False)).policy
    assert shared.critic == "detached"
    assert RecurrentPPO(f"Mlp{cell}Policy", "CartPole-v1", n_steps=16,
                        policy_kwargs=dict(enable_critic_lstm=True)).policy.critic == "separate"


def test_lstm_kwargs_reach_the_cell():
    policy = RecurrentPPO("MlpLtcPolicy", "CartPole-v1", n_steps=16,
                          policy_kwargs=dict(units=4, lstm_kwargs=dict(ode_unfolds=2))).policy
    assert policy.actor_cell.ode_unfolds == 2 and policy.cell_kwargs == {"ode_unfolds": 2}


def test_shared_lstm_does_not_train_the_actor_with_the_value_loss():
    model = RecurrentPPO("MlpLstmPolicy", "CartPole-v1", n_steps=16,
                         policy_kwargs=dict(lstm_hidden_size=8, shared_lstm=True, enable_critic_lstm=False))
    policy = model.policy
    obs = torch.randn(2, 5, 4)
    starts = torch.zeros(2, 5, dtype=torch.bool)
    values, _, _ = policy.evaluate_actions(obs, torch.zeros(10), policy.initial_state(2), starts)
    values.sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in policy.actor_cell.parameters())
    assert any(p.grad is not None and p.grad.any() for p in policy.value_net.parameters())


@pytest.mark.parametrize("kwargs, message", [
    (dict(shared_lstm=True, enable_critic_lstm=True), "shared_lstm=True and enable_critic_lstm=True contradict"),
    (dict(units=8, lstm_hidden_size=16), "units=8 and its sb3-contrib alias lstm_hidden_size=16 disagree"),
    (dict(critic="separate", enable_critic_lstm=False), "critic='separate' and its sb3-contrib alias"),
    (dict(n_lstm_layers=0), "n_layers \\(n_lstm_layers\\) must be at least 1"),
])
def test_conflicting_policy_kwargs_are_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RecurrentPPO("MlpLstmPolicy", "CartPole-v1", n_steps=16, policy_kwargs=kwargs)


# ------------------------------------------------------------------------------ Cnn / MultiInput policies
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_multi_input_policy_on_dict_observations_end_to_end(cell, tmp_path):
    model = RecurrentPPO(f"MultiInput{cell}Policy", TinyEnv("dict"), n_steps=16, batch_size=16, n_epochs=1, seed=0,
                         policy_kwargs=dict(units=6, n_lstm_layers=2 if cell == "Ltc" else 1,
                                            features_extractor_kwargs=dict(cnn_output_dim=8)))
    assert isinstance(model.policy.features_extractor, CombinedExtractor)
    model.learn(32)
    model.save(tmp_path / "model.zip")
    loaded = RecurrentPPO.load(tmp_path / "model.zip", device="cpu")
    agent = LTCAgent.load(tmp_path / "model.zip")
    state_a = state_b = None
    for step, obs in enumerate(_episode_observations("dict")):
        start = np.array([step == 0])
        action_a, state_a = model.predict(obs, state_a, start, deterministic=True)
        action_b, state_b = loaded.predict(obs, state_b, start, deterministic=True)
        np.testing.assert_array_equal(action_a, action_b)
        np.testing.assert_allclose(agent.act(obs), action_a)
        np.testing.assert_allclose(agent.state.numpy(), state_a, atol=1e-5)
    batch = {key: np.stack([obs[key], obs[key]]) for key in obs}  # a batch of two environments
    assert agent.predict(batch)[0].shape == (2,)


def test_dict_observation_export_is_refused_in_one_line(tmp_path):
    model = RecurrentPPO("MultiInputLtcPolicy", TinyEnv("dict"), n_steps=16, policy_kwargs=dict(units=4))
    model.save(tmp_path / "model.zip")
    agent = LTCAgent.load(tmp_path / "model.zip")
    with pytest.raises(ValueError, match="cannot export a policy on Dict observations"):
        export_torchscript(agent, tmp_path / "policy.pt")
    with pytest.raises(ValueError, match="keys \\['img', 'pos'\\]"):
        agent.act({"pos": np.zeros(3, np.float32)})


def test_mlp_policy_on_dict_observations_names_the_multi_input_policy():
    with pytest.raises(ValueError, match="use the MultiInput\\*Policy of the same cell"):
        RecurrentPPO("MlpLtcPolicy", TinyEnv("dict"), n_steps=16)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_cnn_policy_on_images_trains_predicts_acts_and_exports(cell, tmp_path):
    model = RecurrentPPO(f"Cnn{cell}Policy", TinyEnv("image"), n_steps=16, batch_size=16, n_epochs=1, seed=0,
                         policy_kwargs=dict(units=6, features_extractor_kwargs=dict(features_dim=16)))
    assert isinstance(model.policy.features_extractor, NatureCNN)
    model.learn(16)
    model.save(tmp_path / "model.zip")
    agent = LTCAgent.load(tmp_path / "model.zip")
    module, _ = load_torchscript(export_torchscript(agent, tmp_path / "policy.pt"))
    state = torch.zeros(1, agent.state_size)
    predicted = None
    for step, obs in enumerate(_episode_observations("image")):  # channel-last, as the environment gives it
        action, predicted = model.predict(obs, predicted, np.array([step == 0]), deterministic=True)
        assert agent.act(obs) == action
        with torch.no_grad():
            exported, state = module(torch.as_tensor(obs, dtype=torch.float32).permute(2, 0, 1)[None], state,
                                     torch.ones(1))
        assert exported.item() == action
        np.testing.assert_allclose(state.numpy(), predicted, atol=1e-5)


def test_cnn_policy_exports_to_onnx(tmp_path):
    pytest.importorskip("onnx", reason="ONNX export needs the 'export' extra (onnx)")
    ort = pytest.importorskip("onnxruntime", reason="running the ONNX file needs onnxruntime ('export' extra)")
    model = RecurrentPPO("CnnLtcPolicy", TinyEnv("image"), n_steps=16, policy_kwargs=dict(units=6, n_layers=2))
    model.save(tmp_path / "model.zip")
    agent = LTCAgent.load(tmp_path / "model.zip")
    session = ort.InferenceSession(str(export_onnx(agent, tmp_path / "policy.onnx")))
    obs = _episode_observations("image", 1)[0]
    inputs = {"obs": obs.transpose(2, 0, 1)[None].astype(np.float32), "state": np.zeros((1, agent.state_size),
                                                                                         np.float32)}
    inputs.update({"dt": np.ones(1, np.float32)} if "dt" in [i.name for i in session.get_inputs()] else {})
    action, state = session.run(None, inputs)
    assert action[0] == agent.act(obs)
    np.testing.assert_allclose(state, agent.state.numpy(), atol=1e-5)


# ------------------------------------------------------------------------------ stacked layers
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_stacked_layers_replay_the_rollout_in_training_sequences(cell):
    model = RecurrentPPO(f"Mlp{cell}Policy", "CartPole-v1", n_steps=16, sequence_length=8, seed=0,
                         learning_rate=0.0, policy_kwargs=dict(units=5, n_layers=3))
    model.learn(16)  # fills the buffer with one rollout (and leaves the weights as they were)
    buffer: RecurrentRolloutBuffer = model.rollout_buffer
    batch = next(buffer.get(None))
    actions = batch.actions.reshape(-1, 1).long().flatten()
    values, log_prob, _ = model.policy.evaluate_actions(batch.observations, actions, batch.states,
                                                        batch.episode_starts, batch.dts)
    mask = batch.mask.flatten()
    np.testing.assert_allclose(log_prob[mask].detach().numpy(), batch.old_log_prob.flatten()[mask].numpy(),
                               atol=1e-4)


# ------------------------------------------------------------------------------ actions
def test_ncp_without_controller_accepts_multi_discrete_actions():
    env = TinyEnv("box", spaces.MultiDiscrete([3, 2]))
    model = RecurrentPPO("MlpLtcPolicy", env, n_steps=32, batch_size=32, sequence_length=16,
                         policy_kwargs=dict(units=16, wiring="ncp", controller=False))
    model.learn(32)
    assert model.policy.actor_cell.output_size == 5  # one motor neuron per logit (3 + 2)
    action, _ = model.predict(env.reset(seed=0)[0])
    assert env.action_space.contains(action)
