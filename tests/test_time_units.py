"""Elapsed time whichever way the env was made: plain gymnasium ids record their real period, and a dt on
another scale than the model's time unit warns once."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents import LTCAgent
from ltc_rl.errors import LtcRlWarning
from ltc_rl.rl import RecurrentPPO, elapsed_time

from conftest import TINY_HP

TINY = {**TINY_HP, "n_steps": 16, "batch_size": 16, "policy_kwargs": {"units": 4}}


@pytest.fixture(scope="module")
def plain_model():
    """A CfC policy trained by the Python API on a plain env id (no elapsed time in its infos)."""
    model = RecurrentPPO("MlpCfcPolicy", "Pendulum-v1", seed=0, device="cpu", **TINY)
    return model.learn(32)


@pytest.fixture(autouse=True)
def _fresh_warning_memory(monkeypatch):
    monkeypatch.setattr(elapsed_time, "_warned_scales", set())


def test_a_plain_env_id_records_the_envs_real_period(plain_model):
    assert plain_model.policy.time_unit == pytest.approx(gym.make("Pendulum-v1").unwrapped.dt)  # 0.05 s, not 1.0
    # the same unit as envs.make reports, so dt from either env means the same
    assert envs.make("Pendulum-v1").reset(seed=0)[1][envs.ELAPSED_TIME_KEY] == pytest.approx(
        plain_model.policy.time_unit)
    obs = np.zeros((1, 3), dtype=np.float32)
    nominal, _ = plain_model.predict(obs, deterministic=True)
    seconds, _ = plain_model.predict(obs, deterministic=True, dt=0.05)
    np.testing.assert_allclose(nominal, seconds, rtol=1e-6)


def test_a_dt_on_another_scale_warns_once(plain_model):
    obs = np.zeros((1, 3), dtype=np.float32)
    with pytest.warns(LtcRlWarning, match=r"dt=1 is 20 times the model's time unit \(0.05"):
        plain_model.predict(obs, deterministic=True, dt=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain_model.predict(obs, deterministic=True, dt=1.0)  # once
        plain_model.predict(obs, deterministic=True, dt=0.07)  # irregular steps of the same scale: fine


def test_the_readme_loop_runs_on_a_plain_gymnasium_env(plain_model, tmp_path):
    plain_model.save(tmp_path / "model.zip")
    agent = LTCAgent.load(tmp_path / "model.zip")
    env = gym.make("Pendulum-v1")
    obs, info = env.reset(seed=0)
    agent.reset()
    for _ in range(3):
        action = agent.act(obs, dt=info.get("elapsed_time"))  # None here: one nominal step
        obs, reward, terminated, truncated, info = env.step(action)
    with pytest.warns(LtcRlWarning, match="times the model's time unit"):
        agent.act(obs, dt=1.0)  # a step count fed to a model that counts seconds
