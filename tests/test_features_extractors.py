"""A learned input layer before the recurrent cells (ltc_rl.rl.extractors) through the policy, the config files,
save / load, the agent and the exports."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

import envs
from agents import LTCAgent, export_torchscript, load_torchscript
from ltc_rl.rl import RecurrentPPO
from ltc_rl.rl.extractors import FEATURES_EXTRACTORS, LinearExtractor
from ltc_rl.runs.callbacks import save_model
from ltc_rl.runs.config import resolve_config


def _model(features_dim: int = 8) -> RecurrentPPO:
    venv = envs.make_vec("Pendulum-v1", n_envs=2, seed=0)
    return RecurrentPPO("MlpLtcPolicy", venv, n_steps=32, batch_size=32, sequence_length=8, seed=0,
                        policy_kwargs=dict(units=6, features_extractor_class=LinearExtractor,
                                           features_extractor_kwargs=dict(features_dim=features_dim)))


def test_the_linear_layer_feeds_the_cells_and_trains():
    model = _model(features_dim=8)
    policy = model.policy
    assert isinstance(policy.pi_features_extractor, LinearExtractor) and policy.features_dim == 8
    assert policy.actor_cell.input_size == 8 and policy.critic_cell.input_size == 8
    before = policy.pi_features_extractor.linear.weight.detach().clone()
    model.learn(64)
    assert not torch.equal(before, policy.pi_features_extractor.linear.weight)


def test_the_layer_is_in_the_shared_group_when_the_cells_have_a_rate_of_their_own():
    venv = envs.make_vec("Pendulum-v1", n_envs=2, seed=0)
    model = RecurrentPPO("MlpLtcPolicy", venv, n_steps=32, batch_size=32, sequence_length=8, seed=0,
                         policy_kwargs=dict(units=6, cell_lr_scale=10, features_extractor_class=LinearExtractor))
    shared, cells = model.policy.optimizer.param_groups
    layer = {id(p) for p in model.policy.pi_features_extractor.parameters()}
    assert layer <= {id(p) for p in shared["params"]} and not layer & {id(p) for p in cells["params"]}


def test_saved_model_loads_as_agent_and_export_without_pickles(tmp_path):
    model = _model()
    model.learn(64)
    save_model(model, tmp_path / "model.zip")
    loaded = RecurrentPPO.load(tmp_path / "model.zip")
    assert isinstance(loaded.policy.pi_features_extractor, LinearExtractor)
    agent = LTCAgent.load(tmp_path / "model.zip")
    obs = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)
    state = loaded_state = None
    for step in range(3):
        starts = np.full(2, step == 0)
        expected, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
        actions, loaded_state = loaded.predict(obs, state=loaded_state, episode_start=starts, deterministic=True)
        np.testing.assert_allclose(actions, expected, atol=1e-6)
        np.testing.assert_allclose(agent.act(obs), expected, atol=1e-5)
    module, _ = load_torchscript(export_torchscript(agent, tmp_path / "policy.pt"))
    agent.reset()
    exported_state = torch.zeros(2, agent.state_size)
    dt = torch.full((2,), float(agent.time_unit or 1.0))
    for _ in range(3):
        with torch.no_grad():
            action, exported_state = module(torch.as_tensor(obs), exported_state, dt)
        np.testing.assert_allclose(action.numpy(), agent.act(obs, dt=dt.numpy()), atol=1e-5)


def test_config_files_name_the_extractor():
    config = resolve_config("Pendulum-v1", "ltc", overrides={
        "policy_kwargs": {"features_extractor_class": "linear", "features_extractor_kwargs": {"features_dim": 32}}})
    kwargs = config.algorithm_kwargs()["policy_kwargs"]
    assert kwargs["features_extractor_class"] is LinearExtractor
    assert config.hyperparams["policy_kwargs"]["features_extractor_class"] == "linear"  # the file keeps the name
    assert set(FEATURES_EXTRACTORS) == {"flatten", "linear", "nature_cnn", "combined"}


def test_a_dict_observation_space_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="needs a Box observation space, got Dict; use 'combined'"):
        LinearExtractor(spaces.Dict({"a": spaces.Box(-1, 1, (2,))}))
