"""agents/: loading trained runs into light agents, exports, evaluation, and train.py's env options."""

from __future__ import annotations

import functools
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import PPO

import envs
from agents import LTCAgent, RunFolderError, export_onnx, export_torchscript, load_torchscript
from agents.diagnostics import diagnose_cell, format_diagnostics
from agents.benchmark import agent_step_latency, format_agent_latency, halfcheetah_sized_agent
from agents.evaluation import (EnvMismatchError, VideoUnavailableError, evaluate_agent, opengl_backend,
                               record_episode, record_video)
from ltc_rl import wirings
from ltc_rl.rl import RecurrentPPO
from ltc_rl.runs.callbacks import save_model
from ltc_rl.rl.safe_files import NormalizationStats
from ltc_rl.cli import evaluate as evaluate_script, train as train_script
from ltc_rl.errors import ConfigError
from ltc_rl.kernels import native
from ltc_rl.runs.training import sb3_make_vec

from conftest import REPO_ROOT, requires_cuda, tiny_flags



TINY = [*tiny_flags(eval_freq=0, n_eval_episodes=1, checkpoint_freq=128), "--n-envs", "2", "--seed", "3"]
PENDULUM_OPTIONS = ["--irregular", "2,4", "--dt-in-obs", "--obs-noise", "0.05"]
PENDULUM_STEP = 0.05  # seconds of one Pendulum-v1 step; --irregular 2,4 draws 2-4 of them (nominal 3)


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory):
    """An LTC run on Pendulum with irregular steps, dt in the observation, noise and VecNormalize."""
    run = tmp_path_factory.mktemp("runs") / "pendulum"
    argv = ["--env", "Pendulum-v1", "--policy", "ltc", "--total-timesteps", "256", "--output", str(run),
            *PENDULUM_OPTIONS, *TINY, "--hp", "policy_kwargs.units=5"]
    assert train_script.main(argv) == 0
    return run


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    """An NCP run on CartPole without velocities: discrete actions, a sparse wiring, no normalisation."""
    run = tmp_path_factory.mktemp("runs") / "cartpole"
    argv = ["--env", "CartPoleNoVel-v1", "--policy", "ncp", "--total-timesteps", "128", "--output", str(run),
            *TINY, "--hp", "policy_kwargs.units=8"]
    assert train_script.main(argv) == 0
    return run


def _normalizer(run):
    """stable-baselines3's own VecNormalize holding the run's statistics (an independent normalize_obs)."""
    venv = envs.make_vec("Pendulum-v1", n_envs=1, dt_in_obs=True)
    return NormalizationStats.read(run / "vecnormalize.npz").to_vecnormalize(venv, training=False)


# ---------------------------------------------------------------------------------------------- train.py
def test_train_records_env_options_and_time_unit_and_resume_rebuilds_the_env(pendulum_run, capsys):
    config = yaml.safe_load((pendulum_run / "config.yaml").read_text())
    assert config["env_options"] == {"obs_noise": 0.05, "irregular": [2, 4], "dt_in_obs": True}
    assert config["vec_env"] == "dummy"
    assert config["time_unit"] == pytest.approx(3 * PENDULUM_STEP)  # the nominal (mean) irregular period
    model = RecurrentPPO.load(pendulum_run / "model.zip", device="cpu")
    assert model.policy.time_unit == pytest.approx(3 * PENDULUM_STEP)
    assert model.observation_space.shape == (4,)  # (cos, sin, velocity) + the step's elapsed time
    monitor_before = (pendulum_run / "monitor" / "0.monitor.csv").read_text()

    resumed = pendulum_run.parent / "pendulum_resumed"
    shutil.copytree(pendulum_run, resumed)
    # Resuming loads the checkpoint onto a freshly built env: without the recorded options its
    # observation space (3 entries instead of 4) would not fit the model.
    assert train_script.main(["--resume", str(resumed), "--total-timesteps", "384", "--no-progress"]) == 0
    assert "done: 384 steps" in capsys.readouterr().out
    assert RecurrentPPO.load(resumed / "model.zip", device="cpu").num_timesteps == 384
    assert (resumed / "monitor" / "0.monitor.csv").read_text().startswith(monitor_before)  # appended, not replaced
    config = yaml.safe_load((resumed / "config.yaml").read_text())
    assert config["env_options"]["irregular"] == [2, 4] and config["time_unit"] == pytest.approx(0.15)


@pytest.mark.parametrize("argv, match", [
    (["--env", "HalfCheetah-v9"], "unknown environment id 'HalfCheetah-v9' (did you mean 'HalfCheetah-v"),
    (["--env", "Pendulum-v1", "--irregular", "2-4"], "--irregular takes MIN,MAX"),
    (["--env", "Pendulum-v1", "--irregular", "4,2"], "1 <= min_frames <= max_frames"),
    (["--env", "Pendulum-v1", "--obs-noise", "-1"], "sigma must be a finite number >= 0"),
    (["--resume", "somewhere", "--obs-noise", "0.1"], "drop --obs-noise"),
])
def test_bad_env_options_are_one_clear_error_line(argv, match, capsys, tmp_path):
    output = tmp_path / "run"
    assert train_script.main([*argv, "--output", str(output)] if "--resume" not in argv else argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
    if argv[1] == "HalfCheetah-v9":
        assert "--gym-packages" in err[0]  # how to make one's own id known
    assert not output.exists()


def test_default_env_factory_refuses_env_options():
    with pytest.raises(ConfigError, match="need an env factory that supports them"):
        sb3_make_vec("Pendulum-v1", obs_noise=0.1)


# ---------------------------------------------------------------------------------------------- the agent
def test_agent_acts_like_recurrent_ppo_predict_over_episodes_with_resets(pendulum_run):
    agent = LTCAgent.load(pendulum_run)
    model = RecurrentPPO.load(pendulum_run / "model.zip", device="cpu")
    normalizer = _normalizer(pendulum_run)
    venv = envs.make_vec("Pendulum-v1", n_envs=2, seed=11, irregular=(2, 4), dt_in_obs=True, obs_noise=0.05)
    obs = venv.reset()
    dts = np.array([info["elapsed_time"] for info in venv.reset_infos], dtype=np.float32)
    starts, state, resets = np.ones(2, dtype=bool), None, 0
    agent.reset()
    for _ in range(160):  # irregular Pendulum episodes last ~67 steps: several resets per copy
        expected, state = model.predict(normalizer.normalize_obs(obs), state=state, episode_start=starts,
                                        deterministic=True, dt=dts)
        action = agent.act(obs, dt=dts)
        np.testing.assert_allclose(action, expected, atol=1e-5)
        np.testing.assert_allclose(agent.state.numpy(), state, atol=1e-5)
        obs, _, dones, infos = venv.step(action)
        agent.reset(dones)
        resets += int(dones.sum())
        starts = dones
        dts = np.array([(venv.reset_infos[i] if done else info)["elapsed_time"]
                        for i, (info, done) in enumerate(zip(infos, dones))], dtype=np.float32)
    assert resets >= 4
    venv.close()


def test_agent_applies_the_saved_normalisation_with_clipping(pendulum_run):
    agent = LTCAgent.load(pendulum_run)
    normalizer = _normalizer(pendulum_run)
    obs = np.array([[1.0, 0.0, 0.5, 0.15], [-1.0, 0.3, 1e6, 0.1]], dtype=np.float32)  # 1e6: clipped
    expected = normalizer.normalize_obs(obs)
    assert np.abs(expected).max() == pytest.approx(normalizer.clip_obs)
    np.testing.assert_allclose(agent.network.normalize(torch.as_tensor(obs)).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_dt_is_fed_in_units_of_the_nominal_period(pendulum_run):
    agent = LTCAgent.load(pendulum_run)
    assert agent.time_unit == pytest.approx(0.15)
    obs = np.array([0.5, 0.5, 0.1, 0.15], dtype=np.float32)
    nominal = agent.act(obs)
    agent.reset()
    assert np.array_equal(agent.act(obs, dt=0.15), nominal)  # None = one nominal step = 0.15 s
    with torch.no_grad():
        _, cell_state = agent.cell(agent.network.normalize(torch.as_tensor(obs[None])), agent.cell.initial_state(1),
                                   1.0)
    np.testing.assert_allclose(agent.state.numpy(), cell_state.numpy(), atol=1e-6)  # the cell saw dt = 1
    agent.reset()
    assert not np.allclose(agent.act(obs, dt=0.6), nominal)  # a longer step integrates further


def test_agent_exposes_the_trained_network_and_wiring(cartpole_run):
    agent = LTCAgent.load(cartpole_run)
    assert isinstance(agent.network, torch.nn.Module)
    assert isinstance(agent.wiring, wirings.NCP) and agent.wiring.output_size == 2  # a motor neuron per action
    assert agent.cell.wiring is agent.wiring and agent.state_size == 8
    assert agent.network.time_unit == pytest.approx(0.02)  # CartPole's tau
    model = RecurrentPPO.load(cartpole_run / "model.zip", device="cpu")
    for (name, trained), loaded in zip(model.policy.actor_cell.state_dict().items(), agent.cell.state_dict().values()):
        assert torch.equal(trained, loaded), name
    obs = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    expected, _ = model.predict(obs, episode_start=np.ones(3, dtype=bool), deterministic=True)
    actions = agent.act(obs)
    assert actions.dtype.kind == "i" and np.array_equal(actions, expected)  # no normalisation in this run
    with pytest.raises(ValueError, match="call agent.reset"):
        agent.act(obs[:2])


@requires_cuda
def test_agent_on_cuda_acts_like_on_cpu(pendulum_run):
    on_cpu, on_cuda = LTCAgent.load(pendulum_run), LTCAgent.load(pendulum_run, device="cuda")
    assert on_cuda.device.type == "cuda"
    obs = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)
    for _ in range(3):
        np.testing.assert_allclose(on_cuda.act(obs, dt=0.1), on_cpu.act(obs, dt=0.1), atol=1e-4)


@pytest.mark.parametrize("kind", ["lstm", "cfc", "mlp"])
def test_other_policies_load_as_agents(kind, tmp_path):
    venv = envs.make_vec("Pendulum-v1", n_envs=2, seed=0)
    if kind == "mlp":
        model = PPO("MlpPolicy", venv, n_steps=32, batch_size=32, seed=0)
    else:
        model = RecurrentPPO(f"Mlp{kind.capitalize()}Policy", venv, n_steps=32, batch_size=32, sequence_length=8,
                             seed=0, policy_kwargs=dict(units=6))
    save_model(model, tmp_path / "model.zip")  # stable-baselines3's own PPO.save writes pickles only
    agent = LTCAgent.load(tmp_path / "model.zip")
    assert agent.config == {} and (agent.cell is None) == (kind == "mlp")
    obs = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)
    state = None
    for step in range(3):
        kwargs = {} if kind == "mlp" else {"state": state, "episode_start": np.full(2, step == 0), "dt": 0.5}
        expected, state = model.predict(obs, deterministic=True, **kwargs)
        np.testing.assert_allclose(agent.act(obs, dt=0.5), expected, atol=1e-6)
    sampled = agent.act(obs, deterministic=False)
    assert sampled.shape == (2, 1) and np.all(np.abs(sampled) <= 2.0)
    if kind == "cfc":  # saved before learning: no time unit, so every step is one nominal step (dt ignored)
        assert agent.time_unit is None and model.policy.time_unit is None
        agent.reset()
        short = agent.act(obs, dt=0.1)
        agent.reset()
        np.testing.assert_array_equal(agent.act(obs, dt=5.0), short)


# ---------------------------------------------------------------------------------------------- exports
def _rollout_inputs(agent: LTCAgent, steps: int = 6, batch: int = 3):
    rng = np.random.default_rng(2)
    shape = agent.network.observation_shape
    return [(rng.normal(size=(batch, *shape)).astype(np.float32),
             rng.uniform(0.5, 2.0, size=batch).astype(np.float32) * agent.time_unit) for _ in range(steps)]


@pytest.mark.parametrize("kernel", ["reference", "native"])
@pytest.mark.parametrize("run_name", ["pendulum_run", "cartpole_run"])
def test_torchscript_export_matches_the_agent(run_name, kernel, request, tmp_path):
    """The exported step follows the agent over a rollout; kernel="native" makes one call of the agent's own
    kernel per cell step, so it matches to float rounding."""
    agent = LTCAgent.load(request.getfixturevalue(run_name))
    if kernel == "native" and not native.ensure_for(agent.network):
        pytest.skip("the native kernel is unavailable here (no C++ compiler)")
    module, metadata = load_torchscript(export_torchscript(agent, tmp_path / "policy.pt", kernel=kernel))
    assert metadata["state_size"] == agent.state_size and metadata["time_unit"] == pytest.approx(agent.time_unit)
    assert metadata["kernel"] == kernel and ("ltc_rl::inference" in str(module.graph)) == (kernel == "native")
    tolerance = 1e-6 if kernel == "native" else 1e-5
    state = torch.zeros(3, agent.state_size)
    agent.reset()
    for obs, dt in _rollout_inputs(agent):
        with torch.no_grad():
            action, state = module(torch.as_tensor(obs), state, torch.as_tensor(dt))
        expected = agent.act(obs, dt=dt)
        np.testing.assert_allclose(action.numpy(), expected, atol=tolerance)
        np.testing.assert_allclose(state.numpy(), agent.state.numpy(), atol=tolerance)


def test_native_kernel_export_loads_with_ltc_rl_and_names_the_operator_without(pendulum_run, tmp_path):
    """In a fresh process, load_torchscript loads the kernel before the graph; a plain torch.jit.load without
    ltc_rl fails naming the operator, while the default export loads anywhere."""
    agent = LTCAgent.load(pendulum_run)
    if not native.ensure_for(agent.network):
        pytest.skip("the native kernel is unavailable here (no C++ compiler)")
    native_file = export_torchscript(agent, tmp_path / "native.pt", kernel="native")
    reference_file = export_torchscript(agent, tmp_path / "reference.pt")
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    with_ltc_rl = run([sys.executable, "-c", "import sys; from agents.export import load_torchscript; "
                       "print(load_torchscript(sys.argv[1])[1]['kernel'])", str(native_file)])
    assert with_ltc_rl.returncode == 0 and with_ltc_rl.stdout.strip() == "native", with_ltc_rl.stderr
    plain = "import sys, torch; torch.jit.load(sys.argv[1])"
    without = run([sys.executable, "-c", plain, str(native_file)])
    assert without.returncode != 0 and "ltc_rl::inference" in without.stderr
    assert run([sys.executable, "-c", plain, str(reference_file)]).returncode == 0


def test_native_kernel_export_refuses_policies_it_cannot_run(tmp_path):
    model = RecurrentPPO("MlpLstmPolicy", envs.make_vec("Pendulum-v1", seed=0), n_steps=32, batch_size=32,
                         sequence_length=8, policy_kwargs=dict(units=4))
    model.save(tmp_path / "model.zip")
    agent = LTCAgent.load(tmp_path / "model.zip")
    with pytest.raises(ValueError, match="has none; export it with kernel='reference'"):
        export_torchscript(agent, tmp_path / "lstm.pt", kernel="native")
    with pytest.raises(ValueError, match="unknown kernel 'fast'"):
        export_torchscript(agent, tmp_path / "lstm.pt", kernel="fast")
    rk4 = halfcheetah_sized_agent("fc", units=4)
    rk4.network.cell.solver = "rk4"
    with pytest.raises(ValueError, match="fused solver only"):
        export_torchscript(rk4, tmp_path / "rk4.pt", kernel="native")


@pytest.mark.parametrize("run_name", ["pendulum_run", "cartpole_run"])
def test_onnx_export_matches_the_agent(run_name, request, tmp_path):
    pytest.importorskip("onnx", reason="ONNX export needs the 'export' extra (onnx)")
    ort = pytest.importorskip("onnxruntime", reason="running the ONNX file needs onnxruntime ('export' extra)")
    agent = LTCAgent.load(request.getfixturevalue(run_name))
    session = ort.InferenceSession(str(export_onnx(agent, tmp_path / "policy.onnx")))
    props = session.get_modelmeta().custom_metadata_map
    assert json.loads(props["state_size"]) == agent.state_size
    state = np.zeros((3, agent.state_size), np.float32)
    agent.reset()
    for obs, dt in _rollout_inputs(agent):
        action, state = session.run(None, {"obs": obs, "state": state, "dt": dt})
        np.testing.assert_allclose(action, agent.act(obs, dt=dt), atol=1e-5)
        np.testing.assert_allclose(state, agent.state.numpy(), atol=1e-5)


def test_onnx_graph_names_the_inputs_it_takes(tmp_path):
    pytest.importorskip("onnx", reason="ONNX export needs the 'export' extra (onnx)")
    ort = pytest.importorskip("onnxruntime", reason="running the ONNX file needs onnxruntime ('export' extra)")
    model = RecurrentPPO("MlpLstmPolicy", envs.make_vec("Pendulum-v1", seed=0), n_steps=32, batch_size=32,
                         sequence_length=8, policy_kwargs=dict(units=4))
    model.save(tmp_path / "model.zip")
    agent = LTCAgent.load(tmp_path / "model.zip")
    session = ort.InferenceSession(str(export_onnx(agent, tmp_path / "lstm.onnx")))
    inputs = json.loads(session.get_modelmeta().custom_metadata_map["inputs"])
    assert inputs == [i.name for i in session.get_inputs()] == ["obs", "state"]  # an LSTM takes no dt
    obs = np.ones((2, 3), np.float32)
    action, _ = session.run(None, {"obs": obs, "state": np.zeros((2, agent.state_size), np.float32)})
    np.testing.assert_allclose(action, agent.act(obs), atol=1e-5)


@pytest.mark.parametrize("time_unit", [None, 0.05], ids=["no-dt", "dt"])
@pytest.mark.parametrize("wiring", ["fc", "ncp"])
def test_ltc_policy_exports_match_the_agent_at_batch_1_and_3(wiring, time_unit, tmp_path):
    """The FC 64 and AutoNCP(64, 6) policies that the latency benchmark times, with input and output mappings
    away from identity: the exports' folded step (input mapping in the sensory synapses, output mapping in
    the action layer, without dt the update divided by cm / h, the NCP's recurrent synapses cropped to the
    neurons receiving them) follows the agent, batch 1 and 3, with dt where the policy takes it."""
    pytest.importorskip("onnx", reason="ONNX export needs the 'export' extra (onnx)")
    ort = pytest.importorskip("onnxruntime", reason="running the ONNX file needs onnxruntime ('export' extra)")
    agent = halfcheetah_sized_agent(wiring)
    agent.network.time_unit = time_unit
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name in ("input_w", "input_b", "output_w", "output_b"):
            getattr(agent.network.cell, name).add_(0.3 * torch.randn(agent.network.cell.output_size if "output" in name
                                                                     else 17, generator=generator))
    session = ort.InferenceSession(str(export_onnx(agent, tmp_path / "policy.onnx")),
                                   providers=["CPUExecutionProvider"])
    assert ("dt" in {i.name for i in session.get_inputs()}) == (time_unit is not None)
    module, _ = load_torchscript(export_torchscript(agent, tmp_path / "policy.pt"))
    rng = np.random.default_rng(4)
    for batch in (1, 3):
        onnx_state = script_state = np.zeros((batch, agent.state_size), np.float32)
        agent.reset()
        for _ in range(4):
            obs = rng.normal(size=(batch, 17)).astype(np.float32)
            dt = rng.uniform(0.5, 2.0, batch).astype(np.float32) * (time_unit or 1.0)
            feed = {"obs": obs, "state": onnx_state, **({"dt": dt} if time_unit is not None else {})}
            onnx_action, onnx_state = session.run(None, feed)
            with torch.no_grad():
                script_action, script_state = module(torch.as_tensor(obs), torch.as_tensor(script_state),
                                                     torch.as_tensor(dt))
            expected = agent.act(obs, dt=dt if time_unit is not None else None)
            for action, state in ((onnx_action, onnx_state), (script_action.numpy(), script_state.numpy())):
                np.testing.assert_allclose(action, expected, atol=1e-5)
                np.testing.assert_allclose(state, agent.state.numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------------- evaluation
def test_evaluate_script_writes_tables_json_and_neuron_plots(pendulum_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    plot = tmp_path / "neurons.png"
    argv = ["--model", str(pendulum_run), "--episodes", "2", "--obs-noise", "0", "0.3",
            "--json", str(out), "--plot-neurons", str(plot), "--diagnose"]
    assert evaluate_script.main(argv) == 0
    printed = capsys.readouterr().out
    assert "LTCCell over one episode" in printed and "memory" in printed
    # deterministic by default (as training's evaluations and LTCAgent.act), and the table says so
    assert "| Pendulum-v1 | 0 | deterministic | 2 |" in printed and "| Pendulum-v1 | 0.3 | deterministic | 2 |" in printed
    document = json.loads(out.read_text())
    assert document["trained_env_options"]["irregular"] == [2, 4] and document["deterministic"] is True
    assert [r["obs_noise"] for r in document["results"]] == [0.0, 0.3]
    for result in document["results"]:
        assert len(result["returns"]) == 2 and result["mean_return"] == pytest.approx(np.mean(result["returns"]))
    assert plot.stat().st_size > 10_000 and (tmp_path / "neurons_wiring.png").stat().st_size > 10_000
    diagnostics = document["cell_diagnostics"]
    low, median, high = diagnostics["time_constants"]
    assert 0 < low <= median <= high and diagnostics["memory"] >= 0 and diagnostics["steps"] > 0
    assert isinstance(diagnostics["memoryless_return"], float) and isinstance(diagnostics["episode_return"], float)


def _cell_diagnostics_with_cm(run, cm: float):
    """Diagnostics of the run's agent with every membrane capacitance set to ``cm``."""
    agent = LTCAgent.load(run)
    trace = record_episode(agent, max_steps=40)
    cell = agent.network.cell
    with torch.no_grad():
        cell.cm.fill_(math.log(math.expm1(cm)) if cell.implicit_param_constraints else cm)
    return diagnose_cell(agent, trace)


def test_cell_diagnostics_follow_the_membrane_time_constant(pendulum_run):
    # a huge capacitance: time constants of thousands of steps, the state kept; a tiny one: settled at once
    slow = _cell_diagnostics_with_cm(pendulum_run, 1e4)
    fast = _cell_diagnostics_with_cm(pendulum_run, 1e-6)
    assert slow.steps == fast.steps == 40
    assert slow.time_constants[0] > 100 and slow.memory > 0.95
    assert fast.time_constants[2] < 1e-3 and fast.memory < 0.05
    assert slow.sensitivity_negative < fast.sensitivity_negative  # a slow membrane barely moves with its input
    assert "time constants" in format_diagnostics(slow, "LTCCell")


def test_time_constants_count_steps_of_the_length_the_cell_took(pendulum_run):
    agent = LTCAgent.load(pendulum_run)
    trace = record_episode(agent, max_steps=20)
    nominal = diagnose_cell(agent, trace).time_constants
    agent.network.time_unit *= 2  # the same episode, every step half as long for the cell
    halved = diagnose_cell(agent, trace).time_constants
    np.testing.assert_allclose(np.array(halved), 2 * np.array(nominal), rtol=1e-5)


def test_memory_is_reported_for_short_and_long_steps_where_their_lengths_differ(pendulum_run):
    agent = LTCAgent.load(pendulum_run)  # trained with 2-4 frames per step
    with torch.no_grad():  # time constants near one step: what survives a step depends on its length
        agent.network.cell.cm.fill_(math.log(math.expm1(0.3)) if agent.network.cell.implicit_param_constraints
                                    else 0.3)
    trace = record_episode(agent, max_steps=60)
    diagnostics = diagnose_cell(agent, trace)
    (short_dt, short_memory), (long_dt, long_memory) = diagnostics.memory_by_step_length
    assert short_dt < long_dt and short_memory > 1.5 * long_memory > 0
    assert "after the shortest quarter of the steps" in format_diagnostics(diagnostics, "LTCCell")
    agent.network.time_unit = None  # the cell no longer takes the elapsed time: every step is one step
    assert diagnose_cell(agent, trace).memory_by_step_length is None


def test_memoryless_episode_resets_the_state_before_every_step(pendulum_run):
    agent = LTCAgent.load(pendulum_run)
    with torch.no_grad():  # a slow membrane: the state carries over, so the reset changes what the agent does
        agent.network.cell.cm.fill_(10.0)
    kept, reset = record_episode(agent, max_steps=30), record_episode(agent, max_steps=30, memoryless=True)
    for step in (3, 17, 29):  # each state of the memoryless episode is one step from the initial state
        agent.reset()
        agent.act(reset.observations[step], dt=float(reset.dts[step]))
        np.testing.assert_allclose(reset.states[step], agent.state[0].numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(kept.states[5:], reset.states[5:], atol=1e-3)
    diagnostics = diagnose_cell(agent, kept, memoryless=reset)
    assert diagnostics.memoryless_return == reset.episode_return and diagnostics.episode_return == kept.episode_return
    assert "with the state reset before every step" in format_diagnostics(diagnostics, "LTCCell")
    assert diagnose_cell(agent, kept).memoryless_return is None


def test_evaluate_script_samples_only_with_stochastic(pendulum_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert evaluate_script.main(["--model", str(pendulum_run), "--episodes", "1", "--stochastic",
                                 "--json", str(out)]) == 0
    assert "| stochastic | 1 |" in capsys.readouterr().out
    assert json.loads(out.read_text())["deterministic"] is False
    # the former flag still parses, says it is the default now, and evaluates deterministically
    assert evaluate_script.main(["--model", str(pendulum_run), "--episodes", "1", "--deterministic"]) == 0
    captured = capsys.readouterr()
    assert "| deterministic | 1 |" in captured.out and "warning: --deterministic is the default now" in captured.err


def test_evaluation_is_reproducible_and_noise_changes_it(pendulum_run):
    agent = LTCAgent.load(pendulum_run)
    first = evaluate_agent(agent, episodes=2, obs_noise=0.0, seed=5)
    again = evaluate_agent(agent, episodes=2, obs_noise=0.0, seed=5)
    noisy = evaluate_agent(agent, episodes=2, obs_noise=0.5, seed=5)
    assert first.returns == again.returns
    assert first.returns != noisy.returns


def _evaluate_fails(argv, capsys, match):
    assert evaluate_script.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
    return err[0]


def test_evaluating_on_another_observation_space_says_so(pendulum_run, capsys):
    message = _evaluate_fails(["--model", str(pendulum_run), "--env", "PendulumNoVel-v1", "--episodes", "1"], capsys,
                              "trained on observations of shape (4,)")
    assert "PendulumNoVel-v1 gives observations of shape (3,)" in message
    with pytest.raises(EnvMismatchError):
        evaluate_agent(LTCAgent.load(pendulum_run), 1, env_id="CartPole-v1")


@pytest.mark.parametrize("damage, match", [
    (lambda run: shutil.rmtree(run), "does not exist"),
    (lambda run: [(run / "model.zip").unlink(), shutil.rmtree(run / "checkpoints")], "has no model.zip and no checkpoint"),
    (lambda run: (run / "model.zip").write_bytes(b"not a zip"), "is not a readable model file"),
    (lambda run: (run / "vecnormalize.npz").unlink(), "lacks vecnormalize.npz"),
    (lambda run: (run / "vecnormalize.npz").write_bytes(b"\x80\x04junk"), "vecnormalize.npz are unreadable"),
    (lambda run: (run / "config.yaml").write_text("env_id: [unclosed"), "config.yaml is unreadable"),
], ids=["missing-folder", "missing-model", "corrupt-model", "missing-stats", "corrupt-stats", "corrupt-config"])
def test_missing_or_corrupt_run_files_are_named(damage, match, pendulum_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(pendulum_run, run)
    damage(run)
    _evaluate_fails(["--model", str(run), "--episodes", "1"], capsys, match)
    with pytest.raises(RunFolderError, match=match.split(" ")[-1]):
        LTCAgent.load(run)


def test_video_without_opengl_gives_a_clear_message(pendulum_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MUJOCO_GL", "no-such-backend")
    with pytest.raises(VideoUnavailableError, match="MUJOCO_GL=no-such-backend.*set MUJOCO_GL=egl or MUJOCO_GL=osmesa"):
        opengl_backend()
    # Pendulum renders through pygame, not MuJoCo: where that is missing, the message names it, before any
    # episode runs (nothing is written).
    try:
        import pygame  # noqa: F401
    except ImportError:
        with pytest.raises(VideoUnavailableError, match="rendering Pendulum-v1 needs pygame"):
            record_video(LTCAgent.load(pendulum_run), tmp_path / "v.gif")
        argv = ["--model", str(pendulum_run), "--episodes", "1", "--json", str(tmp_path / "e.json"),
                "--video", str(tmp_path / "v.gif")]
        assert evaluate_script.main(argv) == 1
        assert not (tmp_path / "e.json").exists() and not (tmp_path / "v.gif").exists()
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: rendering Pendulum-v1 needs pygame"), err


def test_mp4_without_its_encoder_fails_before_the_episodes(pendulum_run, tmp_path, capsys):
    try:
        import imageio_ffmpeg  # noqa: F401
        pytest.skip("imageio-ffmpeg is installed")
    except ImportError:
        pass
    argv = ["--model", str(pendulum_run), "--episodes", "1", "--json", str(tmp_path / "e.json"),
            "--video", str(tmp_path / "v.mp4")]
    assert evaluate_script.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install -e ".[video]"' in err[0], err
    assert not (tmp_path / "e.json").exists()


@pytest.mark.slow
def test_halfcheetah_video_where_opengl_works(tmp_path):
    """A tiny HalfCheetah run rendered through MuJoCo's offscreen renderer to a .gif (no encoder needed; skips where
    no OpenGL works)."""
    try:
        opengl_backend()
    except VideoUnavailableError as exc:
        pytest.skip(str(exc))
    run = tmp_path / "cheetah"
    argv = ["--env", "HalfCheetah-v4", "--total-timesteps", "64", "--output", str(run), *TINY,
            "--hp", "policy_kwargs.units=4"]
    assert train_script.main(argv) == 0
    path, frames = record_video(LTCAgent.load(run), tmp_path / "cheetah.gif", max_frames=10)
    assert frames == 10 and path.stat().st_size > 1000
    import imageio

    frame = imageio.v3.imread(path, index=5)
    assert frame.shape[-1] == 3 and frame.std() > 10  # a rendered scene, not a blank image


def test_pomdp_study_trains_evaluates_reports_and_reuses_runs(tmp_path):
    from ltc_rl.cli import pomdp_study as study

    argv = ["--env", "CartPoleNoVel-v1", "--policies", "ltc,mlp", "--timesteps", "128", "--noise", "0", "0.5",
            "--episodes", "2", "--hp", "n_steps=32", "--hp", "batch_size=32", "--hp", "n_epochs=1",
            "--hp", "n_envs=2", "--out", str(tmp_path), "--no-progress"]
    assert study.main(argv) == 0
    document = json.loads((tmp_path / "results.json").read_text())
    assert [run["policy"] for run in document["runs"]] == ["ltc", "mlp"]
    for run in document["runs"]:
        assert [r["obs_noise"] for r in run["results"]] == [0.0, 0.5]
        assert all(len(r["returns"]) == 2 for r in run["results"]) and run["train_seconds"] > 0
    table = (tmp_path / "results.md").read_text()
    assert "| ltc | 1 |" in table and "| mlp | 1 |" in table and "return, noise 0.5" in table
    assert (tmp_path / "robustness.png").stat().st_size > 10_000
    stamp = (tmp_path / "ltc_seed0" / "model.zip").stat().st_mtime_ns
    assert study.main(argv) == 0  # finished runs are reused, not retrained
    assert (tmp_path / "ltc_seed0" / "model.zip").stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "results.json").read_text())["runs"] == document["runs"]


def test_control_step_path_matches_the_network_step_by_step():
    agent = halfcheetah_sized_agent("ncp")
    rng = np.random.default_rng(0)
    state = agent.network.initial_state(1)
    agent.reset()
    actions = []
    for _ in range(4):
        obs = rng.normal(size=17) * 3  # float64, as environments return them; some entries clipped
        with torch.no_grad():
            expected, state = agent.network(torch.as_tensor(obs, dtype=torch.float32)[None], state,
                                            torch.ones(1))
        action = agent.act(obs)
        assert action.dtype == np.float32 and action.shape == (6,)
        np.testing.assert_allclose(action, expected[0].numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(agent.state.numpy(), state.numpy(), rtol=0, atol=1e-6)
        actions.append((action, action.copy()))
    assert all(np.array_equal(a, kept) for a, kept in actions)  # returned actions own their memory


def test_control_step_follows_replaced_modules_and_device_moves():
    agent = halfcheetah_sized_agent("fc")
    obs = np.random.default_rng(0).normal(size=17).astype(np.float32)
    agent.act(obs)
    replaced = torch.nn.Linear(64, 6)
    torch.nn.init.zeros_(replaced.weight)
    torch.nn.init.constant_(replaced.bias, 0.25)
    agent.network.action_net = replaced  # the step looks its parts up again
    np.testing.assert_array_equal(agent.act(obs), np.full(6, 0.25, np.float32))
    agent.network.to("cpu", torch.float64).to(torch.float32)  # buffers replaced by conversions
    with torch.no_grad():
        agent.network.obs_scale.zero_()
        agent.network.obs_shift.zero_()  # every observation now reads as zeros
    agent.reset()
    zeros = agent.act(np.zeros(17, np.float32))
    agent.reset()
    np.testing.assert_array_equal(agent.act(obs), zeros)


def test_agent_latency_benchmark_measures_every_path():
    seconds = agent_step_latency("fc", blocks=1)
    assert set(seconds) >= {"agent", "torchscript"} and all(0 < s < 0.1 for s in seconds.values())
    table = format_agent_latency({"FC 64": seconds})
    assert "| FC 64 |" in table and "x)" in table
