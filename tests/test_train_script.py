"""scripts/train.py and the run-folder pipeline (ltc_rl.runs.training)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from ltc_rl.kernels import native
from ltc_rl.rl import RecurrentPPO
from ltc_rl.runs.files import atomic_write
from ltc_rl.runs.run_files import latest_checkpoint
from ltc_rl.errors import ConfigError
from ltc_rl.runs.config import parse_overrides, resolve_config

from conftest import REPO_ROOT, tiny_flags

train_script = importlib.import_module("ltc_rl.cli.train")


TINY = tiny_flags(eval_freq=128, n_eval_episodes=2, checkpoint_freq=128, policy_kwargs__units=4)


def _fails(argv: list[str], capsys, match: str) -> None:
    assert train_script.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err


@pytest.mark.parametrize("argv, match", [
    (["--env", "HalfCheetah-v9"], "unknown environment id 'HalfCheetah-v9'"),
    (["--env", "CartPole-v1", "--policy", "transformer"], "unknown policy 'transformer'"),
    (["--env", "CartPole-v1", "--hp", "n_step=64"], "unknown hyperparameter 'n_step' (did you mean 'n_steps'?)"),
    (["--env", "CartPole-v1", "--hp", "n_steps=abc"], "n_steps='abc' is invalid: expected an integer >= 1"),
    (["--env", "CartPole-v1", "--hp", "n_steps=-4"], "expected an integer >= 1"),
    (["--env", "CartPole-v1", "--hp", "learning_rate=fast"], "expected a number > 0, 'lin_<start>' (linear decay to 0) or 'exp_<start>_<end>'"),
    (["--env", "CartPole-v1", "--hp", "learning_rate=exp_1e-3"], "learning_rate='exp_1e-3' is invalid"),
    (["--env", "CartPole-v1", "--hp", "gamma=1.5"], "gamma=1.5 is invalid"),
    (["--env", "CartPole-v1", "--policy", "mlp", "--hp", "sequence_length=8"], "unknown hyperparameter 'sequence_length'"),
    (["--env", "CartPole-v1", "--hp", "normalize=maybe"], "normalize='maybe' is invalid"),
    (["--env", "CartPole-v1", "--hp", "policy_kwargs.activation_fn=swish"], "unknown activation_fn 'swish'"),
    (["--env", "CartPole-v1", "--hp", "policy_kwargs.wiring=mesh"], "unknown wiring 'mesh'"),
    (["--env", "CartPole-v1", "--hp", "policy_kwargs.features_extractor_class=linar"],
     "unknown features_extractor_class 'linar' (did you mean 'linear'?)"),
    (["--env", "CartPole-v1", "--hp", "policy_kwargs.features_extractor_class=linear", "--hp",
      "policy_kwargs.features_extractor_kwargs.features_dim=0"], "features_dim must be an integer >= 1, got 0"),
    (["--env", "CartPole-v1", "--hp", "sequence_length=4096"], "sequence_length must lie in"),
    (["--env", "CartPole-v1", "--hp", "n_steps"], "is not NAME=VALUE"),
    (["--env", "CartPole-v1", "--total-timesteps", "0"], "total_timesteps must be an integer >= 1"),
    (["--policy", "ltc"], "pass --env ENV_ID"),
    (["--resume", "somewhere", "--env", "CartPole-v1"], "drop --env"),
])
def test_bad_input_is_one_clear_error_line_before_anything_is_created(argv, match, capsys, tmp_path):
    output = tmp_path / "run"
    _fails([*argv, "--output", str(output)] if "--resume" not in argv else argv, capsys, match)
    assert not output.exists()


def test_cuda_request_without_cuda_is_an_error(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    _fails(["--env", "CartPole-v1", "--device", "cuda", "--output", str(tmp_path / "r")], capsys, "no CUDA device")


def test_existing_output_folder_is_never_overwritten(capsys, tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    _fails(["--env", "CartPole-v1", "--output", str(tmp_path)], capsys, "already exists; pass --resume")
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_resume_needs_a_run_folder_with_a_checkpoint(capsys, tmp_path):
    _fails(["--resume", str(tmp_path)], capsys, "is not a run folder")


def test_error_exit_code_from_the_shell(tmp_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "train.py"), "--env", "NoSuchEnv-v0",
                             "--output", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown environment id 'NoSuchEnv-v0'")


def test_overrides_and_shipped_defaults_resolve_in_order():
    assert parse_overrides(["n_steps=256", "learning_rate=1e-3", "policy_kwargs.units=32", "target_kl=null",
                            "normalize=false", "learning_rate=lin_3e-4"]) == {
        "n_steps": 256, "learning_rate": "lin_3e-4", "policy_kwargs": {"units": 32}, "target_kl": None,
        "normalize": False}
    config = resolve_config("HalfCheetah-v4", "ncp", n_envs=2, seed=5, overrides={"policy_kwargs": {"units": 24}})
    assert config.n_envs == 2 and config.seed == 5 and config.total_timesteps == 1_000_000
    assert config.hyperparams["policy_kwargs"]["units"] == 24
    assert config.hyperparams["policy_kwargs"]["wiring"] == "ncp"
    assert config.hyperparams["gamma"] == 0.98  # from the HalfCheetah-v4 entry, not the default
    assert config.normalize is True
    with pytest.raises(ConfigError):
        resolve_config("HalfCheetah-v4", "ltc", overrides={"clip_range": -1})


def test_the_halfcheetah_ltc_cell_learns_at_its_own_rate_where_that_was_measured():
    import envs  # noqa: F401 - registers the NoVel ids

    rates = {(env_id, policy): resolve_config(env_id, policy).hyperparams["policy_kwargs"].get("cell_lr_scale", 1)
             for env_id in ("HalfCheetah-v4", "HalfCheetahNoVel-v4", "HalfCheetah-v5") for policy in ("ltc", "lstm")}
    assert rates == {("HalfCheetah-v4", "ltc"): 10, ("HalfCheetah-v4", "lstm"): 1, ("HalfCheetahNoVel-v4", "ltc"): 1,
                     ("HalfCheetahNoVel-v4", "lstm"): 1, ("HalfCheetah-v5", "ltc"): 1, ("HalfCheetah-v5", "lstm"): 1}
    shared = resolve_config("HalfCheetah-v4", "ltc").hyperparams
    assert shared["gamma"] == resolve_config("HalfCheetahNoVel-v4", "ltc").hyperparams["gamma"] == 0.98


def test_train_writes_a_complete_run_folder_and_resume_continues_it(tmp_path, capsys, monkeypatch):
    order = []  # the native kernel is ready before training starts (a first build announced before the bar)
    ensure_for, learn = native.ensure_for, RecurrentPPO.learn
    monkeypatch.setattr(native, "ensure_for", lambda module: order.append("kernel") or ensure_for(module))
    monkeypatch.setattr(RecurrentPPO, "learn", lambda self, *a, **k: order.append("learn") or learn(self, *a, **k))
    run = tmp_path / "run"
    argv = ["--env", "Pendulum-v1", "--policy", "ltc", "--total-timesteps", "256", "--n-envs", "2", "--seed", "7",
            "--output", str(run), *TINY]
    assert train_script.main(argv) == 0
    for name in ("model.zip", "vecnormalize.npz", "config.yaml", "evaluations.npz", "learning_curve.png",
                 "best/model.zip", "best/vecnormalize.npz", "monitor/0.monitor.csv", "monitor/1.monitor.csv",
                 "checkpoints/ckpt_0_steps.zip"):
        assert (run / name).is_file(), name
    assert list((run / "logs" / "session_1").glob("events.out.tfevents.*"))
    assert (run / "logs" / "session_1" / "progress.csv").is_file()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["seed"] == 7 and config["policy_class"] == "MlpLtcPolicy" and config["n_envs"] == 2
    assert config["hyperparams"]["n_steps"] == 32 and config["versions"]["torch"] == torch.__version__
    steps, model_path, stats_path = latest_checkpoint(run / "checkpoints")
    assert steps == 256 and stats_path is not None
    checkpoint = RecurrentPPO.load(model_path, device="cpu")
    assert checkpoint.num_timesteps == 256 and checkpoint.policy.optimizer.state_dict()["state"]
    assert not list(run.rglob(".*.tmp"))
    assert order[-1] == "learn" and order[:-1] and set(order[:-1]) == {"kernel"}

    order.clear()
    assert train_script.main(["--resume", str(run), "--total-timesteps", "384", "--no-progress"]) == 0
    assert order == ["kernel", "learn"]
    assert "done: 384 steps" in capsys.readouterr().out
    resumed = RecurrentPPO.load(run / "model.zip", device="cpu")
    assert resumed.num_timesteps == 384
    assert (run / "logs" / "session_2" / "progress.csv").is_file()
    history = np.load(run / "evaluations.npz")
    assert list(history["timesteps"]) == [128, 256, 384]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["total_timesteps"] == 384 and [s["kind"] for s in config["sessions"]] == ["train", "resume"]
    assert train_script.main(["--resume", str(run), "--no-progress"]) == 2  # already at its total


def test_mlp_policy_runs_through_the_same_pipeline(tmp_path):
    run = tmp_path / "mlp"
    argv = ["--env", "CartPole-v1", "--policy", "mlp", "--total-timesteps", "128", "--n-envs", "2", "--seed", "1",
            "--output", str(run), "--hp", "n_steps=32", "--hp", "batch_size=32", "--hp", "eval_freq=0",
            "--hp", "n_eval_episodes=1", "--no-progress"]
    assert train_script.main(argv) == 0
    from stable_baselines3 import PPO
    assert PPO.load(run / "model.zip").num_timesteps == 128
    assert len(np.load(run / "evaluations.npz")["timesteps"]) == 1  # the final evaluation


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "file.bin"
    atomic_write(target, lambda handle: handle.write(b"old"))

    def broken(handle):
        handle.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"


def test_any_registered_id_trains_with_the_default_entry_and_says_so(tmp_path, capsys):
    """A user's own env (registered by --gym-packages, made with --env-kwargs) trains and evaluates."""
    run = tmp_path / "toy"
    argv = ["--env", "ToyDrift-v0", "--gym-packages", "toy_gym_package", "--env-kwargs", "drift:0.2",
            "--policy", "lstm", "--total-timesteps", "128", "--n-envs", "2", "--seed", "0", "--output", str(run), *TINY]
    assert train_script.main(argv) == 0
    out = capsys.readouterr().out
    assert "note: recurrent_ppo.yml has no entry for ToyDrift-v0: training with its `default` hyperparameters" in out
    assert f"run folder: {run}" in out and "parameters" in out and "evaluation every 128 steps (2 episodes)" in out
    assert out.strip().splitlines()[-1] == f"next: python scripts/evaluate.py --model {run}   (add --video out.gif " \
                                          "or --plot-neurons neurons.png for pictures)"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["env_options"]["gym_packages"] == ["toy_gym_package"]
    assert config["env_options"]["env_kwargs"] == {"drift": 0.2}
    assert config["time_unit"] == 1.0  # the task has no dt: one step is one unit
    session = config["sessions"][0]
    assert session["device"] == "cpu" and "git_commit" in session  # the device used, not "auto"

    evaluate_script = importlib.import_module("ltc_rl.cli.evaluate")
    assert evaluate_script.main(["--model", str(run), "--episodes", "1"]) == 0
    assert "| ToyDrift-v0 | 0 | deterministic | 1 |" in capsys.readouterr().out


def test_trained_agent_starts_a_new_run_from_its_parameters(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    base = ["--env", "CartPole-v1", "--policy", "gru", "--total-timesteps", "64", "--n-envs", "2", "--seed", "1",
            *TINY, "--verbose", "0"]
    assert train_script.main([*base, "--output", str(first)]) == 0
    # a new configuration (learning rate ~0: the parameters stay where the trained agent left them)
    assert train_script.main([*base, "--output", str(second), "--trained-agent", str(first / "model.zip"),
                              "--hp", "learning_rate=1e-12"]) == 0
    trained = RecurrentPPO.load(first / "model.zip", device="cpu").policy.state_dict()
    started = RecurrentPPO.load(second / "model.zip", device="cpu").policy.state_dict()
    for name, value in trained.items():
        torch.testing.assert_close(started[name], value, atol=1e-6, rtol=0)
    capsys.readouterr()
    _fails([*base, "--output", str(tmp_path / "third"), "--trained-agent", str(first / "model.zip"),
            "--hp", "policy_kwargs.units=8"], capsys, "has another network shape")
    assert not (tmp_path / "third").exists()


def test_console_flags_reach_the_run(tmp_path, capsys):
    run = tmp_path / "flags"
    argv = ["--env", "CartPole-v1", "--policy", "gru", "--total-timesteps", "128", "--n-envs", "2", "--seed", "2",
            "--output", str(run), *TINY, "--eval-freq", "48", "--eval-episodes", "1", "--save-freq", "0",
            "--num-threads", "1", "--tensorboard-log", str(tmp_path / "tb"), "--log-interval", "2"]
    assert train_script.main(argv) == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["eval_freq"], config["n_eval_episodes"], config["checkpoint_freq"]) == (48, 1, 0)
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    history = np.load(run / "evaluations.npz")
    # none in the last rollout (at 96): the final evaluation follows 32 steps later
    assert list(history["timesteps"]) == [48, 128]
    out = capsys.readouterr().out
    assert "a checkpoint at the end only" in out and "evaluating the final model (1 episode) ..." in out


def test_evaluation_history_records_the_steps_upside_down_and_resumes_an_older_history(tmp_path):
    run = tmp_path / "cheetah"
    argv = ["--env", "HalfCheetah-v4", "--policy", "mlp", "--total-timesteps", "128", "--seed", "0", "--output",
            str(run), "--hp", "n_steps=32", "--hp", "batch_size=32", "--hp", "n_envs=1", "--hp", "eval_freq=64",
            "--hp", "n_eval_episodes=1", "--hp", "checkpoint_freq=64", "--no-progress"]
    assert train_script.main(argv) == 0
    history = dict(np.load(run / "evaluations.npz"))
    assert list(history["timesteps"]) == [64, 128] and history["upside_down"].shape == (2, 1)
    assert np.all((history["upside_down"] >= 0) & (history["upside_down"] <= 1))
    older = {name: history[name] for name in ("timesteps", "results", "ep_lengths")}  # as runs before this recorded
    np.savez(run / "evaluations.npz", **older)
    assert train_script.main(["--resume", str(run), "--total-timesteps", "192", "--no-progress"]) == 0
    resumed = np.load(run / "evaluations.npz")
    assert list(resumed["timesteps"]) == [64, 128, 192]
    assert np.isnan(resumed["upside_down"][:2]).all() and not np.isnan(resumed["upside_down"][2]).any()
