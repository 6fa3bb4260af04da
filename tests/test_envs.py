"""envs/: registered ids, partial observability, observation noise, irregular sampling, checks, vectorisation."""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import ELAPSED_TIME_KEY, NonFiniteObservationError

from conftest import REPO_ROOT

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # gymnasium's "v4 is out of date"

FULL_OBS_SIZE = {"HalfCheetah-v4": 17, "Hopper-v4": 11, "Walker2d-v4": 17, "Ant-v4": 27, "Swimmer-v4": 8,
                 "Pendulum-v1": 3, "CartPole-v1": 4, "HalfCheetah-v5": 17, "Hopper-v5": 11, "Walker2d-v5": 17,
                 "Ant-v5": 105, "Swimmer-v5": 8}


def _positions(base_id: str, env: gym.Env) -> np.ndarray:
    """What a NoVel observation must equal, computed from the simulator state (not from the wrapper's indices)."""
    u = env.unwrapped
    if base_id == "Pendulum-v1":
        return np.array([np.cos(u.state[0]), np.sin(u.state[0])])
    if base_id == "CartPole-v1":
        return np.array([u.state[0], u.state[2]])
    skip = 2 if base_id.split("-")[0] in ("Ant", "Swimmer") else 1
    return u.data.qpos[skip:]


def _velocities(base_id: str, env: gym.Env) -> np.ndarray:
    u = env.unwrapped
    if base_id == "Pendulum-v1":
        return np.array([u.state[1]])
    if base_id == "CartPole-v1":
        return np.array([u.state[1], u.state[3]])
    qvel = u.data.qvel
    return np.clip(qvel, -10, 10) if base_id.split("-")[0] in ("Hopper", "Walker2d") else qvel


def test_available_ids_cover_the_tasks_and_their_novel_variants():
    ids = envs.available_ids()
    assert set(FULL_OBS_SIZE) <= set(ids)
    assert {"HalfCheetahNoVel-v4", "AntNoVel-v4", "PendulumNoVel-v1", "CartPoleNoVel-v1"} <= set(ids)
    assert len(ids) == 2 * len(FULL_OBS_SIZE)


@pytest.mark.parametrize("env_id", envs.available_ids())
def test_each_id_makes_steps_and_has_its_observation_shape(env_id):
    base_id = envs.NOVEL_ENV_IDS.get(env_id, env_id)
    env = envs.make(env_id, seed=0)
    if env_id in envs.NOVEL_ENV_IDS:
        expected = FULL_OBS_SIZE[base_id] - len(_velocities(base_id, env))
    else:
        expected = FULL_OBS_SIZE[base_id]
    assert env.observation_space.shape == (expected,)
    obs, info = env.reset(seed=1)
    assert obs.shape == (expected,) and info[ELAPSED_TIME_KEY] == pytest.approx(envs.control_dt(env))
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs.shape == (expected,) and np.isfinite(reward)
        assert info[ELAPSED_TIME_KEY] == pytest.approx(envs.control_dt(env))
    assert gym.make(env_id).observation_space.shape == (expected,)  # registered with gymnasium on import


@pytest.mark.parametrize("base_id", list(FULL_OBS_SIZE))
def test_novel_observation_is_the_full_one_without_its_velocities(base_id):
    full, novel = envs.make(base_id, seed=3), envs.make(base_id.replace("-", "NoVel-"), seed=3)
    full_obs, _ = full.reset(seed=3)
    novel_obs, _ = novel.reset(seed=3)
    for _ in range(5):
        velocities = _velocities(base_id, full)
        # The full observation holds the positions and the velocities (CartPole interleaves them) ...
        layout = [0, 2, 1, 3] if base_id == "CartPole-v1" else slice(None)
        expected_full = np.concatenate([_positions(base_id, full), velocities])[layout]
        n_full, n_pos = len(expected_full), len(_positions(base_id, full))
        np.testing.assert_allclose(full_obs[:n_full], expected_full, rtol=1e-6, atol=1e-7)
        # ... and the NoVel one, at the same state, exactly the positions (then the contact forces Ant-v5
        # observes by default, which are not velocities).
        np.testing.assert_allclose(novel_obs[:n_pos], _positions(base_id, novel), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(novel_obs[:n_pos], _positions(base_id, full), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(novel_obs[n_pos:], full_obs[n_full:], rtol=1e-6, atol=1e-7)
        action = full.action_space.sample()
        full_obs, *_ = full.step(action)
        novel_obs, *_ = novel.step(action)
    assert np.any(np.abs(velocities) > 1e-6)  # velocities were really there to drop


def test_ant_novel_keeps_contact_forces_when_they_are_observed():
    env = envs.make("AntNoVel-v4", seed=0, env_kwargs={"use_contact_forces": True})
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(env.action_space.sample())
    u = env.unwrapped
    assert obs.shape == (13 + 84,)
    np.testing.assert_allclose(obs[:13], u.data.qpos[2:])
    np.testing.assert_allclose(obs[13:], u.contact_forces.ravel())


def _run(env: gym.Env, steps: int, seed: int) -> np.ndarray:
    actions = np.random.default_rng(seed).uniform(-1, 1, size=(steps, *env.action_space.shape))
    observations = [env.reset(seed=seed)[0]]
    observations += [env.step(a.astype(np.float32))[0] for a in actions]
    return np.stack(observations)


def test_observation_noise_has_the_configured_sigma_and_leaves_the_dynamics_alone():
    clean = _run(envs.make("HalfCheetah-v4"), 300, seed=7)
    noisy_env = envs.make("HalfCheetah-v4", obs_noise=0.2, seed=0)
    noisy = _run(noisy_env, 300, seed=7)
    residual = noisy - clean  # same seeded physics and actions: the difference is the noise alone
    assert residual.std() == pytest.approx(0.2, rel=0.05)
    assert abs(residual.mean()) < 0.01
    assert abs(np.corrcoef(residual[:-1].ravel(), residual[1:].ravel())[0, 1]) < 0.05  # fresh noise every step
    assert noisy_env.observation_space.contains(noisy[-1])


def test_observation_noise_is_reproducible_with_a_seed():
    a = _run(envs.make("Pendulum-v1", obs_noise=0.1, seed=1), 20, seed=4)
    b = _run(envs.make("Pendulum-v1", obs_noise=0.1, seed=2), 20, seed=4)
    np.testing.assert_array_equal(a, b)  # reset(seed=...) reseeds the noise
    env_a, env_b = envs.make("Pendulum-v1", obs_noise=0.1, seed=5), envs.make("Pendulum-v1", obs_noise=0.1, seed=5)
    np.testing.assert_array_equal(env_a.reset()[0], env_b.reset()[0])  # the seed of make() alone suffices
    assert not np.array_equal(env_a.reset()[0], envs.make("Pendulum-v1", obs_noise=0.1, seed=6).reset()[0])


def test_irregular_sampling_on_mujoco_advances_the_simulation_by_the_reported_time():
    env = envs.make("HalfCheetah-v4", irregular=(2, 8), dt_in_obs=True, seed=0)
    u = env.unwrapped
    timestep = u.model.opt.timestep
    obs, info = env.reset(seed=0)
    assert info[ELAPSED_TIME_KEY] == pytest.approx(5 * timestep) and obs[-1] == pytest.approx(5 * timestep)
    frames_seen = set()
    for _ in range(100):
        time_before, x_before = u.data.time, u.data.qpos[0]
        obs, _, _, _, info = env.step(env.action_space.sample())
        elapsed = info[ELAPSED_TIME_KEY]
        frames = round(elapsed / timestep)
        assert elapsed == pytest.approx(frames * timestep) and 2 <= frames <= 8
        assert u.data.time - time_before == pytest.approx(elapsed)  # MuJoCo's clock moved by exactly that
        assert info["x_velocity"] * elapsed == pytest.approx(u.data.qpos[0] - x_before)  # reward uses the true dt
        assert obs[-1] == pytest.approx(elapsed)
        assert u.frame_skip == 5  # the task's own frame skip is restored between steps
        frames_seen.add(frames)
    assert frames_seen == set(range(2, 9))


def test_irregular_sampling_on_classic_control_equals_holding_the_action():
    irregular = envs.make("Pendulum-v1", irregular=(1, 4), seed=0)
    reference = envs.make("Pendulum-v1", seed=0)
    obs, _ = irregular.reset(seed=11)
    ref_obs, _ = reference.reset(seed=11)
    total_time, truncated, steps = 0.0, False, 0
    while not truncated:
        action = irregular.action_space.sample()
        obs, reward, _, truncated, info = irregular.step(action)
        frames = round(info[ELAPSED_TIME_KEY] / 0.05)
        assert info[ELAPSED_TIME_KEY] == pytest.approx(frames * 0.05) and 1 <= frames <= 4
        ref_reward = 0.0
        for _ in range(frames):
            ref_obs, r, _, ref_truncated, _ = reference.step(action)
            ref_reward += r
        np.testing.assert_allclose(obs, ref_obs)
        assert reward == pytest.approx(ref_reward) and truncated == ref_truncated
        total_time += info[ELAPSED_TIME_KEY]
        steps += 1
    assert total_time == pytest.approx(200 * 0.05)  # the time limit counts simulated time, cut at the end
    assert steps < 200


@pytest.mark.filterwarnings("ignore:.*(NaN|not within the observation space)")  # gymnasium's checker sees it too
def test_non_finite_observation_raises_an_error_naming_the_env():
    env = envs.make("Pendulum-v1", seed=0)
    env.reset()
    env.unwrapped.state = np.array([np.nan, 0.0])
    with pytest.raises(NonFiniteObservationError, match=r"Pendulum-v1 returned a non-finite observation"):
        env.step(np.zeros(1, dtype=np.float32))


def test_bad_ids_and_options_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown environment id 'HalfCheetah-v9' \\(did you mean 'HalfCheetah-v"):
        envs.make("HalfCheetah-v9")
    with pytest.raises(ValueError, match="any id registered with gymnasium works"):
        envs.make_vec("Nope-v0", 2)
    with pytest.raises(ValueError, match="min_frames"):
        envs.make("Pendulum-v1", irregular=(0, 3))
    with pytest.raises(ValueError, match=r"\(min_frames, max_frames\) pair"):
        envs.make("Pendulum-v1", irregular=5)
    with pytest.raises(ValueError, match="sigma"):
        envs.make("Pendulum-v1", obs_noise=-0.1)
    with pytest.raises(ValueError, match="vec_env"):
        envs.make_vec("Pendulum-v1", 2, vec_env="threads")
    with pytest.raises(TypeError):
        envs.make_vec("Pendulum-v1", 2, obs_nosie=0.1)


def test_spec_recreates_the_wrapped_env():
    env = envs.make("HalfCheetahNoVel-v4", irregular=(3, 6), obs_noise=0.1, dt_in_obs=True)
    again = gym.make(env.spec)
    assert again.observation_space == env.observation_space
    assert [type(w).__name__ for w in _wrappers(again)] == [type(w).__name__ for w in _wrappers(env)]


def _wrappers(env: gym.Env) -> list[gym.Env]:
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain


def test_make_vec_dummy_and_subproc_give_the_same_seeded_rollout():
    options = dict(obs_noise=0.05, irregular=(1, 3), dt_in_obs=True, env_kwargs={"max_episode_steps": 4})
    rollouts = {}
    for kind in ("dummy", "subproc"):
        venv = envs.make_vec("PendulumNoVel-v1", n_envs=2, seed=10, vec_env=kind, **options)
        try:
            assert venv.num_envs == 2 and venv.observation_space.shape == (3,)
            observations = [venv.reset()]
            assert all(ELAPSED_TIME_KEY in info for info in venv.reset_infos)
            episodes = 0
            for _ in range(6):
                obs, _, dones, infos = venv.step(np.zeros((2, 1), dtype=np.float32))
                observations.append(obs)
                assert all(ELAPSED_TIME_KEY in info for info in infos)
                episodes += sum("episode" in info for info in infos)  # Monitor reports finished episodes
            assert episodes >= 2
        finally:
            venv.close()
        rollouts[kind] = np.stack(observations)
        assert not np.allclose(rollouts[kind][:, 0], rollouts[kind][:, 1])  # the copies are seeded apart
    np.testing.assert_array_equal(rollouts["dummy"], rollouts["subproc"])


def test_any_registered_id_makes_an_env_and_unknown_periods_report_no_elapsed_time():
    import toy_gym_package  # noqa: F401 - registers ToyDrift-v0, a task without a dt attribute

    env = envs.make("ToyDrift-v0", seed=0, env_kwargs={"drift": 0.5})
    obs, info = env.reset(seed=0)
    assert obs.shape == (3,) and ELAPSED_TIME_KEY not in info and env.unwrapped.drift == 0.5
    # gymnasium tasks outside the shipped list work too, with their period reported
    pendulum = envs.make("InvertedPendulum-v5", seed=0)
    assert pendulum.reset(seed=0)[1][ELAPSED_TIME_KEY] == pytest.approx(pendulum.unwrapped.dt)
    with pytest.raises(ValueError, match="dt_in_obs|Cannot tell how much simulated time"):
        envs.make("ToyDrift-v0", dt_in_obs=True)


def test_gym_packages_are_imported_before_the_id_is_checked():
    with pytest.raises(ValueError, match="cannot import gym package 'no_such_package_here'"):
        envs.make("Whatever-v0", gym_packages=["no_such_package_here"])
    env = envs.make_vec("ToyDrift-v0", 2, seed=0, gym_packages=["toy_gym_package"])
    assert env.observation_space.shape == (3,)


def test_simulator_start_up_warnings_show_once_per_process():
    # libraries enter warnings.catch_warnings() all the time (cli_main too), which resets Python's own
    # once-per-location memory: the repeats came from there
    code = ("import warnings, envs\n"
            "for _ in range(3):\n"
            "    with warnings.catch_warnings():\n"
            "        envs.make_vec('HalfCheetah-v4', 2).close(); envs.make('Hopper-v4').close()\n"
            "warnings.warn('an unrelated deprecation', DeprecationWarning)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=str(REPO_ROOT), env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("settotalmass") == 1
    assert result.stderr.count("HalfCheetah-v4 is out of date") == 1
    assert result.stderr.count("Hopper-v4 is out of date") == 1
    assert "an unrelated deprecation" in result.stderr  # only those two are filtered


@pytest.mark.parametrize("env_id, reports", [("HalfCheetah-v4", True), ("HalfCheetahNoVel-v4", True),
                                             ("Hopper-v4", True), ("Swimmer-v4", False), ("Pendulum-v1", False)])
def test_bodies_with_a_root_pitch_report_whether_they_are_upside_down(env_id, reports):
    env = envs.make(env_id, seed=0, irregular=(1, 3) if env_id.startswith("HalfCheetahNoVel") else None)
    info = env.step(env.action_space.sample())[-1]
    assert (envs.UPSIDE_DOWN_KEY in info) == reports
    if reports:
        assert info[envs.UPSIDE_DOWN_KEY] is False  # upright after reset
        base = env.unwrapped
        qpos, qvel = base.data.qpos.copy(), base.data.qvel.copy()
        qpos[envs.wrappers.root_pitch_address(env)] = np.pi  # on its back
        base.set_state(qpos, qvel)
        assert env.step(np.zeros(env.action_space.shape))[-1][envs.UPSIDE_DOWN_KEY] is True


def test_upside_down_wrapper_names_what_it_needs():
    with pytest.raises(ValueError, match="needs a MuJoCo body with a root pitch joint 'rooty'; Pendulum-v1"):
        envs.wrappers.UpsideDownInfo(gym.make("Pendulum-v1"))


class _StartOnItsBack(gym.Wrapper):
    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        base = self.env.unwrapped
        qpos = base.data.qpos.copy()
        qpos[2] = np.pi
        base.set_state(qpos, base.data.qvel)
        return base._get_obs(), info


def test_evaluation_counts_the_steps_spent_upside_down():
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from ltc_rl.rl.evaluation import evaluate

    def cheetah(on_its_back: bool):
        def make():
            env = envs.make("HalfCheetah-v4", seed=0, env_kwargs={"max_episode_steps": 20})
            return Monitor(_StartOnItsBack(env) if on_its_back else env)
        return DummyVecEnv([make, make])

    model = PPO("MlpPolicy", cheetah(False), n_steps=16, batch_size=16, seed=0)
    upright = evaluate(model, cheetah(False), n_eval_episodes=3)
    assert len(upright.returns) == len(upright.upside_down) == 3 and upright.lengths == [20, 20, 20]
    assert upright.upside_down == [0.0, 0.0, 0.0]  # 20 steps of a fresh policy do not flip it
    assert evaluate(model, cheetah(True), n_eval_episodes=3).upside_down == [1.0, 1.0, 1.0]
    pendulum = envs.make_vec("Pendulum-v1", n_envs=1, seed=0, env_kwargs={"max_episode_steps": 5})
    assert evaluate(PPO("MlpPolicy", pendulum, n_steps=16, batch_size=16), pendulum, 1).upside_down is None
