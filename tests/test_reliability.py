"""Reliability: atomic files, resume after SIGKILL / SIGTERM, divergence and NaN guards,
reproducibility, and one clear error line for bad input."""

from __future__ import annotations

import importlib
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import envs
from ltc_rl.errors import (DivergenceError, ModelFileError, NonFiniteObservationError, SpaceMismatchError,
                           TrainingInterrupted, cli_main)
from ltc_rl.rl import RecurrentPPO
from ltc_rl.runs.callbacks import RunCheckpointCallback, save_model, save_vecnormalize
from ltc_rl.runs.files import atomic_write
from ltc_rl.runs.layout import checkpoint_files
from ltc_rl.runs.run_files import CheckpointWarning, latest_checkpoint, read_training_state
from ltc_rl.runs.guards import VecCheckFinite
from ltc_rl.runs.run_state import capture_random_state, restore_random_state
from ltc_rl.runs.serialization import inspect_model_file, load_model, load_vecnormalize
from ltc_rl.runs.config import RunConfig, resolve_config
from ltc_rl.runs.training import build_model, train

from conftest import REPO_ROOT, TINY_HP, tiny_flags
from toy_envs import NaNAfter

TRAIN = REPO_ROOT / "scripts" / "train.py"
TINY = tiny_flags(n_eval_episodes=1, policy_kwargs__units=4)
TINY_RUN = {**TINY_HP, "n_eval_episodes": 1, "eval_freq": 0, "checkpoint_freq": 128, "policy_kwargs": {"units": 4}}


train_script = importlib.import_module("ltc_rl.cli.train")


def _one_error_line(err: str, match: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[-1].startswith("error: ") and match in lines[-1], err
    assert "Traceback" not in err
    return lines[-1]


def _fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _tiny_model(env_id: str = "CartPole-v1", n_envs: int = 1, seed: int = 0) -> RecurrentPPO:
    return RecurrentPPO("MlpLtcPolicy", make_vec_env(env_id, n_envs=n_envs, seed=seed), n_steps=16, batch_size=16,
                        sequence_length=8, n_epochs=1, policy_kwargs={"units": 4}, seed=seed, device="cpu")


def _subprocess_env() -> dict[str, str]:
    return {**os.environ, "LTC_RL_COMPILE": "0", "PYTHONUNBUFFERED": "1"}


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------ atomic files
def test_atomic_write_leaves_the_old_file_and_no_temporary_when_interrupted(tmp_path):
    target = tmp_path / "ckpt.zip"
    atomic_write(target, lambda handle: handle.write(b"good"))

    def killed(handle):
        handle.write(b"torn")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, killed)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.zip"]


def test_no_model_with_nan_parameters_is_ever_written(tmp_path):
    model = _tiny_model()
    save_model(model, tmp_path / "model.zip")
    before = (tmp_path / "model.zip").read_bytes()
    with torch.no_grad():
        next(model.policy.parameters()).fill_(float("inf"))
    with pytest.raises(DivergenceError, match="refusing to write"):
        save_model(model, tmp_path / "model.zip")
    assert (tmp_path / "model.zip").read_bytes() == before


# ------------------------------------------------------------------------------------------ model files
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny saved model and VecNormalize statistics of CartPole."""
    folder = tmp_path_factory.mktemp("saved")
    model = _tiny_model()
    save_model(model, folder / "model.zip")
    venv = VecNormalize(make_vec_env("CartPole-v1", n_envs=1))
    save_vecnormalize(venv, folder / "vecnormalize.npz")
    return folder


def _corrupt(source: Path, target: Path, how: str) -> Path:
    data = bytearray(source.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 3]
    elif how == "bit flips":
        with zipfile.ZipFile(source) as archive:
            info = archive.getinfo("data")
        for i in range(info.header_offset + 200, info.header_offset + 260):
            data[i] ^= 0xFF
    elif how == "empty":
        data = bytearray()
    elif how == "foreign zip":
        with zipfile.ZipFile(target, "w") as archive:
            archive.writestr("readme.txt", "not a model")
        return target
    elif how == "text":
        data = bytearray(b"hello, I am not a zip file\n")
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("how, match", [
    ("truncated", "truncated"), ("bit flips", "corrupt"), ("empty", "not a readable model file"),
    ("foreign zip", "not a stable-baselines3 model"), ("text", "not a readable model file"),
])
def test_corrupt_truncated_or_foreign_model_files_are_one_clear_error(saved, tmp_path, how, match):
    path = _corrupt(saved / "model.zip", tmp_path / "model.zip", how)
    for load in (inspect_model_file, load_model):
        with pytest.raises(ModelFileError, match=match) as error:
            load(path)
        assert "\n" not in str(error.value)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "missing.zip")


def test_model_and_environment_with_different_spaces(saved):
    pendulum = make_vec_env("Pendulum-v1", n_envs=1)
    with pytest.raises(SpaceMismatchError, match="observation space .* but the environment has"):
        load_model(saved / "model.zip", env=pendulum)
    with pytest.raises(SpaceMismatchError, match=r"shape \(4,\) but the environment gives \(3,\)"):
        load_vecnormalize(saved / "vecnormalize.npz", pendulum)
    assert load_model(saved / "model.zip", env=make_vec_env("CartPole-v1", n_envs=2)).n_envs == 2


def test_unreadable_vecnormalize_statistics(saved, tmp_path):
    broken = tmp_path / "vecnormalize.npz"
    broken.write_bytes((saved / "vecnormalize.npz").read_bytes()[:50])
    with pytest.raises(ModelFileError, match="VecNormalize statistics .* unreadable"):
        load_vecnormalize(broken, make_vec_env("CartPole-v1", n_envs=1))


# ------------------------------------------------------------------------------------------ checkpoints
def _checkpointed(folder: Path, steps: list[int]) -> RecurrentPPO:
    model = _tiny_model()
    callback = RunCheckpointCallback(0, folder, keep=5)
    callback.init_callback(model)
    for value in steps:
        model.num_timesteps = value
        callback.save()
    return model


def test_corrupt_newest_checkpoint_is_skipped_with_a_warning(tmp_path):
    _checkpointed(tmp_path, [100, 200, 300])
    assert read_training_state(checkpoint_files(tmp_path, 300)[0])["timesteps"] == 300
    _corrupt(tmp_path / "ckpt_300_steps.zip", tmp_path / "ckpt_300_steps.zip", "truncated")
    checkpoint_files(tmp_path, 200)[2].write_bytes(b"{garbage")
    with pytest.warns(CheckpointWarning) as warned:
        steps, model_path, _ = latest_checkpoint(tmp_path)
    assert steps == 100 and model_path.name == "ckpt_100_steps.zip"
    assert [str(w.message).split(":")[0] for w in warned] == ["skipping unreadable checkpoint ckpt_300_steps.zip",
                                                             "skipping unreadable checkpoint ckpt_200_steps.zip"]
    _corrupt(model_path, model_path, "empty")
    with pytest.warns(CheckpointWarning), pytest.raises(ModelFileError, match="no readable checkpoint"):
        latest_checkpoint(tmp_path)


def test_random_generator_states_round_trip():
    model = _tiny_model()
    state = capture_random_state(model)
    drawn = (random.random(), np.random.rand(), torch.rand(3), model.action_space.sample())
    random.seed(99), np.random.seed(99), torch.manual_seed(99), model.action_space.seed(99)
    restore_random_state(model, state)
    again = (random.random(), np.random.rand(), torch.rand(3), model.action_space.sample())
    assert drawn[:2] == again[:2] and torch.equal(drawn[2], again[2]) and drawn[3] == again[3]


# ------------------------------------------------------------------------------------------ NaN guards
gym.register("NaNCartPole-v0", entry_point=lambda: NaNAfter(gym.make("CartPole-v1")))


def test_non_finite_observations_and_rewards_name_the_environment_index():
    venv = VecCheckFinite(DummyVecEnv([lambda: gym.make("CartPole-v1"), lambda: NaNAfter(gym.make("CartPole-v1"))]),
                          "training environment", start_step=100)
    venv.seed(4)  # copy 1 is reset with seed 5 (odd): poisoned
    venv.reset()
    with pytest.raises(NonFiniteObservationError,
                       match=r"training environment 1 \(of 2\) returned a non-finite observation at timestep 106"):
        for _ in range(3):
            venv.step(np.zeros(2, dtype=int))
    venv = VecCheckFinite(DummyVecEnv([lambda: NaNAfter(gym.make("CartPole-v1"), 1, "reward")]))
    venv.seed(1)
    venv.reset()
    with pytest.raises(NonFiniteObservationError, match=r"environment 0 \(of 1\) returned a non-finite reward"):
        venv.step(np.zeros(1, dtype=int))


def test_the_env_factory_check_names_the_index_too():
    venv = VecCheckFinite(envs.make_vec("CartPole-v1", n_envs=2, seed=0))
    venv.reset()
    venv.venv.envs[1].unwrapped.state = np.full(4, np.nan)
    with pytest.raises(NonFiniteObservationError, match="CartPole-v1 returned a non-finite observation .* in "
                                                        "environment 1"):
        venv.step(np.zeros(2, dtype=int))


def test_nan_observation_stops_the_pipeline_at_the_step(tmp_path):
    config = resolve_config("NaNCartPole-v0", "ltc", total_timesteps=512, n_envs=2, seed=0, device="cpu",
                            overrides={**TINY_RUN, "normalize": False})
    with pytest.raises(NonFiniteObservationError, match=r"training environment 1 \(of 2\) returned a non-finite "
                                                        r"observation at timestep 6:"):
        train(config, tmp_path / "run", progress_bar=False)
    assert not (tmp_path / "run" / "model.zip").exists()


def test_divergence_stops_training_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    updates = []
    original = RecurrentPPO.train

    def poisoned(self):  # the 3rd update "blows up"
        original(self)
        updates.append(self.num_timesteps)
        if len(updates) == 3:
            with torch.no_grad():
                next(self.policy.parameters()).mul_(float("nan"))

    monkeypatch.setattr(RecurrentPPO, "train", poisoned)
    run = tmp_path / "run"
    argv = ["--env", "CartPole-v1", "--total-timesteps", "1024", "--n-envs", "2", "--seed", "1", "--output", str(run),
            *TINY, "--hp", "eval_freq=0", "--hp", "checkpoint_freq=64"]
    assert train_script.main(argv) == 2
    line = _one_error_line(capsys.readouterr().err, f"training diverged in the update at timestep {updates[2]}: "
                                                     "parameter")
    assert "ckpt_192_steps.zip (192 steps) is kept" in line
    assert not (run / "model.zip").exists()
    steps, model_path, _ = latest_checkpoint(run / "checkpoints")
    assert steps == updates[2] == 192  # saved during the rollout, before the update that diverged
    for path in (run / "checkpoints").glob("ckpt_*_steps.zip"):
        model = load_model(path)
        assert all(torch.isfinite(p).all() for p in model.policy.parameters())


# ------------------------------------------------------------------------------------------ reproducibility
def _trained_parameters(tmp_path: Path, name: str, seed: int) -> dict[str, torch.Tensor]:
    config = resolve_config("CartPole-v1", "ltc", total_timesteps=192, n_envs=2, seed=seed, device="cpu",
                            overrides={**TINY_RUN, "checkpoint_freq": 0})
    train(config, tmp_path / name, progress_bar=False)
    return load_model(tmp_path / name / "model.zip").policy.state_dict()


def test_same_seed_same_settings_give_identical_parameters(tmp_path):
    first, second = _trained_parameters(tmp_path, "a", 5), _trained_parameters(tmp_path, "b", 5)
    initial = build_model(RunConfig.from_dict(yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())),
                          make_vec_env("CartPole-v1", n_envs=2)).policy.state_dict()
    assert first.keys() == second.keys() == initial.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], initial[k]) for k in first)  # training changed them: not trivially equal
    config = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert config["seed"] == 5 and config["device"] == "cpu" and config["hyperparams"]["n_steps"] == 32
    assert {"python", "torch", "stable_baselines3", "gymnasium", "numpy", "ltc_rl"} <= set(config["versions"])
    assert config["sessions"][0]["command"]


# ------------------------------------------------------------------------------------------ signals
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, str(TRAIN), "--env", "Pendulum-v1", "--total-timesteps", "1000000", "--n-envs", "2",
         "--seed", "2", "--output", str(run), *TINY, "--hp", "eval_freq=0", "--hp", "checkpoint_freq=128"],
        cwd=tmp_path, env=_subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(run / "checkpoints" / "ckpt_128_steps.zip", process)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("stopped: SIGTERM at timestep ") and f"continue with --resume {run}" in last
    steps, model_path, stats = latest_checkpoint(run / "checkpoints")
    assert f"checkpoint {model_path} saved" in last and stats is not None
    assert load_model(model_path).num_timesteps == steps == int(last.split("timestep ")[1].split(":")[0])
    assert not list(run.rglob(".*.tmp"))


def test_interrupt_exit_codes():
    @cli_main
    def stopped(argv):
        raise TrainingInterrupted("SIGTERM at timestep 5: checkpoint saved", signal.SIGTERM)

    @cli_main
    def bug(argv):
        raise KeyError("a genuine bug keeps its traceback")

    assert stopped([]) == 143
    with pytest.raises(KeyError):
        bug([])


def _logged_past_checkpoint(run: Path) -> bool:
    """Whether a Monitor CSV grew after the newest checkpoint was written."""
    steps, _, _ = latest_checkpoint(run / "checkpoints", validate=False)
    sizes = read_training_state(checkpoint_files(run / "checkpoints", steps)[0])["monitor_sizes"]
    return any((run / "monitor" / name).stat().st_size > size for name, size in sizes.items())


def _run_until_killed(run: Path, cwd: Path, argv: list[str], kill_after: Path) -> None:
    process = subprocess.Popen([sys.executable, str(TRAIN), *argv], cwd=cwd, env=_subprocess_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(kill_after, process)
        deadline = time.monotonic() + 60
        while not _logged_past_checkpoint(run) and time.monotonic() < deadline:  # episodes the resume must cut
            time.sleep(0.05)
        process.kill()
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_target_with_consistent_logs(tmp_path, capsys):
    run, total, n_envs = tmp_path / "run", 1536, 2
    argv = ["--env", "CartPole-v1", "--total-timesteps", str(total), "--n-envs", str(n_envs), "--seed", "3",
            "--output", str(run), *TINY, "--hp", "eval_freq=256", "--hp", "checkpoint_freq=256",
            "--hp", "learning_rate=lin_0.001"]
    _run_until_killed(run, tmp_path, argv, run / "checkpoints" / "ckpt_512_steps.zip")
    killed_at, _, _ = latest_checkpoint(run / "checkpoints")
    logged = {path.name: path.read_bytes() for path in (run / "monitor").glob("*.monitor.csv")}
    at_checkpoint = read_training_state(checkpoint_files(run / "checkpoints", killed_at)[0])["monitor_sizes"]
    assert set(at_checkpoint) == set(logged) and all(len(logged[n]) >= at_checkpoint[n] for n in logged)
    (run / "checkpoints" / ".ckpt_768_steps.zip.123-deadbeef.tmp").write_bytes(b"half a checkpoint")

    assert train_script.main(["--resume", str(run), "--no-progress"]) == 0
    assert f"done: {total} steps" in capsys.readouterr().out
    final = load_model(run / "model.zip")
    assert final.num_timesteps == total and not list(run.rglob(".*.tmp"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert [s["kind"] for s in config["sessions"]] == ["train", "resume"]
    # Monitor CSVs: each counted step once (episodes logged after the checkpoint by the killed run were cut).
    for index in range(n_envs):
        name = f"{index}.monitor.csv"
        final, cut = (run / "monitor" / name).read_bytes(), at_checkpoint[name]
        assert final[:cut] == logged[name][:cut]  # appended to what was there at the checkpoint ...
        if len(logged[name]) > cut:  # ... without the rows the killed run logged after it
            assert final[cut:len(logged[name])] != logged[name][cut:]
        episodes = pd.read_csv(run / "monitor" / name, skiprows=1)
        assert 0 < episodes["l"].sum() <= total // n_envs
    history = np.load(run / "evaluations.npz")["timesteps"]
    assert list(history) == list(range(256, total + 1, 256))
    # progress.csv continues where the checkpoint left off, and the learning-rate schedule continues too.
    second = pd.read_csv(run / "logs" / "session_2" / "progress.csv")
    assert second["time/total_timesteps"].min() == killed_at + 64
    step = 32 * n_envs  # a row logs the learning rate of the update one rollout earlier
    for session in (1, 2):
        rows = pd.read_csv(run / "logs" / f"session_{session}" / "progress.csv")
        rows = rows.dropna(subset=["train/learning_rate", "time/total_timesteps"])
        expected = 0.001 * (1 - (rows["time/total_timesteps"] - step) / total)
        assert len(rows) >= 3 and np.allclose(rows["train/learning_rate"], expected), rows
