"""Bad values and foreign files at the command line: one ``error: ...`` line (exit code 2) before anything is
created, never a traceback or a silently wrong run. Each case here ended in a traceback, a folder left behind
or a run that trained on nonsense before it was checked."""

from __future__ import annotations

import contextlib
import importlib
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import envs
from ltc_rl.runs.curves import plot_learning_curve, training_episodes
from ltc_rl.runs.config import HYPERPARAM_FILES, POLICIES, load_hyperparams, resolve_config
from ltc_rl.runs.training import validate

from conftest import REPO_ROOT, tiny_flags

TINY = ["--total-timesteps", "64", "--n-envs", "2", *tiny_flags(eval_freq=0, checkpoint_freq=0)]


def _main(name: str):
    return importlib.import_module(f"ltc_rl.cli.{name}").main


def _one_error_line(name: str, argv: list[str], match: str) -> str:
    """Runs ``scripts/<name>.py`` in-process; asserts exit code 2 and exactly one line, ``error: ...`` with ``match``."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = _main(name)(argv)
    lines = [line for line in err.getvalue().splitlines() if line.strip() and not line.startswith("warning: ")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], (code, err.getvalue())
    return lines[0]


def _copy(run: Path, tmp_path: Path, name: str = "run") -> Path:
    return Path(shutil.copytree(run, tmp_path / name))


# ------------------------------------------------------------------------------------------ hyperparameters
@pytest.mark.parametrize("hp, match", [
    ("normalize.clip_obs=-1", "normalize.clip_obs=-1 is invalid: expected a number > 0"),
    ("normalize.clip_obs=abc", "normalize.clip_obs='abc' is invalid"),
    ("normalize.epsilon=-1e30", "normalize.epsilon=-1e+30 is invalid"),
    ("normalize.gamma=1.5", "normalize.gamma=1.5 is invalid: expected a number in (0, 1]"),
    ("normalize.norm_obs=maybe", "normalize.norm_obs='maybe' is invalid: expected true or false"),
    ("policy_kwargs.net_arch=[-1]", "policy_kwargs.net_arch=[-1] is invalid: expected a list of layer sizes >= 1"),
    ("policy_kwargs.net_arch={pi: [0]}", "policy_kwargs.net_arch={'pi': [0]} is invalid"),
    ("policy_kwargs.log_std_init=.nan", "policy_kwargs.log_std_init=nan is invalid: expected a finite number"),
    ("policy_kwargs.units=0", "policy_kwargs.units=0 is invalid: expected an integer >= 1"),
    ("policy_kwargs.sparsity_level=1", "policy_kwargs.sparsity_level=1 is invalid: expected a number in [0, 1)"),
    ("policy_kwargs.time_unit=-0.1", "policy_kwargs.time_unit=-0.1 is invalid"),
    ("learning_rate=lin_inf", "learning_rate='lin_inf' is invalid"),
    ("sde_sample_freq=-2", "sde_sample_freq=-2 is invalid: expected an integer >= -1"),
    ("max_grad_norm=inf", "max_grad_norm=inf is invalid: expected a number > 0"),
])
def test_out_of_range_hyperparameters_are_refused_before_the_run_folder_exists(tmp_path, hp, match):
    out = tmp_path / "run"
    _one_error_line("train", ["--env", "Pendulum-v1", "--output", str(out), "--hp", hp, *TINY], match)
    assert not out.exists()


def test_an_empty_output_name_is_refused_instead_of_writing_the_default_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_error_line("train", ["--env", "Pendulum-v1", "--output", "", *TINY], "--output is an empty name")
    _one_error_line("sweep", ["--env", "CartPole-v1", "--output", " "], "--output is an empty name")
    _one_error_line("seqpred", ["--data", str(tmp_path), "--out", ""], "--out is an empty name")
    _one_error_line("collect_traces", ["--env", "Pendulum-v1", "--out", ""], "--out is an empty name")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_shipped_configuration_passes_the_checks_and_builds(policy):
    """Every entry resolves for every policy, and each distinct resolved configuration builds its model (the
    dry construction catches values one policy cannot take, such as an actor head on an NCP controller)."""
    algorithm = POLICIES[policy].algorithm
    table = yaml.safe_load((REPO_ROOT / "ltc_rl" / "hyperparams" / HYPERPARAM_FILES[algorithm]).read_text())
    built = set()
    for env_id in (name for name in table if name != "default"):
        assert load_hyperparams(algorithm, env_id, policy)
        config = resolve_config(env_id, policy, n_envs=1, seed=0, device="cpu", env_ids=envs.available_ids())
        key = (env_id.split("-")[0].replace("NoVel", ""), yaml.safe_dump(config.hyperparams))
        if key not in built:
            built.add(key)
            validate(config, envs.make_vec)


def test_a_policy_section_of_an_entry_applies_to_that_policy_only():
    ncp = load_hyperparams("RecurrentPPO", "HalfCheetah-v4", "ncp")["policy_kwargs"]["net_arch"]
    ltc = load_hyperparams("RecurrentPPO", "HalfCheetah-v4", "ltc")["policy_kwargs"]["net_arch"]
    assert ncp["pi"] == [] and ltc["pi"] == [256, 256] and ncp["vf"] == ltc["vf"] == [256, 256]
    assert "ncp" not in load_hyperparams("RecurrentPPO", "HalfCheetah-v4", "ncp")


# ------------------------------------------------------------------------------------------ evaluate.py
def _foreign_model(kind: str, path: Path) -> Path:
    if kind == "sb3-contrib RecurrentPPO":
        from sb3_contrib import RecurrentPPO

        RecurrentPPO("MlpLstmPolicy", "Pendulum-v1", n_steps=16, batch_size=16,
                     policy_kwargs={"lstm_hidden_size": 4}).save(path)
    else:
        from stable_baselines3 import DQN

        DQN("MlpPolicy", "CartPole-v1", buffer_size=10).save(path)
    return path


@pytest.mark.parametrize("kind, env_id", [("sb3-contrib RecurrentPPO", "Pendulum-v1"), ("DQN", "CartPole-v1")])
def test_a_model_of_another_library_or_algorithm_is_named_as_such(tmp_path, kind, env_id):
    """Its metadata is pickled, so it needs --trust-pickle; trusted, it is refused for what it is, not for the
    shapes or keyword arguments it does not fit."""
    model = _foreign_model(kind, tmp_path / "foreign.zip")
    argv = ["--model", str(model), "--env", env_id, "--episodes", "1"]
    _one_error_line("evaluate", argv, "pass --trust-pickle")
    _one_error_line("evaluate", [*argv, "--trust-pickle"], "policy: not a model this project wrote")


@pytest.mark.parametrize("argv, match", [
    (["--obs-noise", "nan"], "observation noise levels must be finite numbers >= 0, got [nan]"),
    (["--obs-noise", "0", "-1"], "got [-1.0]"),
    (["--obs-noise", "inf"], "got [inf]"),
    (["--device", "tpu"], "unknown device 'tpu'; use cpu or cuda"),
    (["--device", "meta"], "unsupported device 'meta'"),
    (["--json", "{folder}"], "is a folder; pass a file name"),
    (["--json", "{file}/out.json"], "is a file, not a folder"),
    (["--plot-neurons", "{tmp}/x.txt"], "--plot-neurons '{tmp}/x.txt' must end in .png"),
    (["--video", "{tmp}/v.avi"], "must end in .mp4 or .gif"),
])
def test_bad_evaluate_options_fail_before_anything_is_evaluated_or_written(tiny_run, tmp_path, argv, match):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    fill = {"folder": tmp_path / "folder", "file": tmp_path / "file", "tmp": tmp_path}
    before = sorted(tmp_path.rglob("*"))
    _one_error_line("evaluate", ["--model", str(tiny_run), "--episodes", "1", *(a.format(**fill) for a in argv)],
                    match.format(**fill))
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_cuda_device_is_one_line(tiny_run):
    _one_error_line("evaluate", ["--model", str(tiny_run), "--device", "cuda"], "no CUDA device is available")


def _rewrite_policy(model: Path, change) -> None:
    with zipfile.ZipFile(model) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights = torch.load(io.BytesIO(members["policy.pth"]), weights_only=True)
    change(weights)
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    members["policy.pth"] = buffer.getvalue()
    with zipfile.ZipFile(model, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_a_model_with_nan_weights_is_named_not_blamed_on_the_environment(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path)
    _rewrite_policy(run / "model.zip", lambda weights: weights["log_std"].fill_(float("nan")))
    _one_error_line("evaluate", ["--model", str(run), "--episodes", "1"],
                    f"the parameters of {run / 'model.zip'} hold NaN or infinity (log_std)")


def test_nan_normalisation_statistics_are_named_not_blamed_on_the_environment(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path)
    with np.load(run / "vecnormalize.npz") as saved:
        arrays = {name: saved[name] for name in saved.files}
    arrays["obs0_var"][0] = np.inf
    np.savez(run / "vecnormalize.npz", **arrays)
    _one_error_line("evaluate", ["--model", str(run), "--episodes", "1"],
                    f"VecNormalize statistics {run / 'vecnormalize.npz'}: obs_rms holds NaN or infinity")


# ------------------------------------------------------------------------------------------ summaries and logs
@pytest.mark.parametrize("damage", ["config", "evaluations"])
def test_summary_lists_a_corrupt_run_folder_as_excluded(tiny_run, tmp_path, capsys, damage):
    good, bad = _copy(tiny_run, tmp_path / "sweep", "good"), _copy(tiny_run, tmp_path / "sweep", "bad")
    if damage == "config":
        (bad / "config.yaml").write_text("{{{ not yaml")
    else:
        (bad / "evaluations.npz").write_bytes((bad / "evaluations.npz").read_bytes()[:40])
    assert _main("sweep")(["--summarize", str(tmp_path / "sweep")]) == 0
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    assert f"- {bad}: unreadable, " in summary and "(1 finished runs)" in summary and str(good) not in summary
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("content", ["", "garbage\n", '#{"t_start": 0}\n'])
def test_an_emptied_monitor_csv_leaves_the_training_curve_out_with_a_warning(tmp_path, content):
    monitor = tmp_path / "monitor"
    monitor.mkdir()
    (monitor / "0.monitor.csv").write_text(content)
    with pytest.warns(UserWarning, match="Monitor CSVs in .* are unreadable"):
        steps, returns = training_episodes(monitor)
    assert steps.size == returns.size == 0
    history = {"timesteps": np.array([64]), "results": np.array([[-1.0, -2.0]])}
    with pytest.warns(UserWarning):
        assert plot_learning_curve(tmp_path / "curve.png", history, monitor).is_file()


# ------------------------------------------------------------------------------------------ traces
def _traces(folder: Path, make) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(25):
        np.save(folder / f"trace_{index:04d}.npy", make(rng))
    return folder


@pytest.mark.parametrize("make, match", [
    (lambda rng: np.zeros((60, 0)), "has shape (60, 0): no observation columns"),
    (lambda rng: rng.normal(size=(60, 3)) + 1j * rng.normal(size=(60, 3)), "holds complex values"),
])
def test_seqpred_refuses_traces_without_columns_or_with_complex_values(tmp_path, make, match):
    data = _traces(tmp_path / "data", make)
    out = tmp_path / "out"
    _one_error_line("seqpred", ["--data", str(data), "--models", "ltc", "--seeds", "1", "--epochs", "1",
                                "--units", "4", "--out", str(out)], match)
    assert not out.exists()


def test_seqpred_refuses_an_output_that_is_a_file(tmp_path):
    data = _traces(tmp_path / "data", lambda rng: rng.normal(size=(60, 3)))
    (tmp_path / "out").write_text("keep")
    _one_error_line("seqpred", ["--data", str(data), "--out", str(tmp_path / "out")], "is a file; pass a folder")
    assert (tmp_path / "out").read_text() == "keep"


def test_collect_traces_refuses_a_negative_seed_before_creating_the_output(tmp_path):
    out = tmp_path / "traces"
    _one_error_line("collect_traces", ["--env", "Pendulum-v1", "--episodes", "1", "--steps", "3", "--seed", "-5",
                                       "--out", str(out)], "seed must be >= 0")
    assert not out.exists()


# ------------------------------------------------------------------------------------------ found by the fuzz
@pytest.mark.parametrize("script, argv, match", [
    ("bench_vecenv", ["--threads", "0"], "--num-threads must be >= 1, got 0"),
    ("bench_cell", ["--threads", "0"], "--num-threads must be >= 1, got 0"),
    ("bench_cell", ["--device", "tpu"], "unknown device 'tpu'"),
    ("bench_cell", ["--json", "{tmp}"], "is a folder; pass a file name"),
])
def test_benchmark_options_are_checked_before_measuring(tmp_path, script, argv, match):
    _one_error_line(script, [arg.format(tmp=tmp_path) for arg in argv], match)


def test_an_evaluation_history_whose_arrays_disagree_is_restarted_with_a_warning(tmp_path):
    from ltc_rl.runs.callbacks import RunEvaluationCallback

    np.savez(tmp_path / "evaluations.npz", timesteps=np.array([64, 128]), results=np.zeros((1, 2)),
             ep_lengths=np.zeros((2, 2)))
    with pytest.warns(UserWarning, match="disagree on the number of evaluations"):
        callback = RunEvaluationCallback(None, 64, 1, tmp_path, tmp_path / "best")
    assert callback.timesteps == callback.returns == callback.lengths == []
