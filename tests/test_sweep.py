"""Sweeps (ltc_rl.runs.sweep, scripts/sweep.py) and the summary across seeds (ltc_rl.runs.summary).

Most default tests need no Ray: the summary from synthetic run folders, a trial run, interrupted and
resumed through ``run_trial`` (the function every Tune trial calls), settings validation and the error
without Ray. One short sweep goes through Ray Tune in the default suite (CI installs the ``distributed``
extra for it); the longer Ray tests are slow-marked. All of them skip when Ray is not installed.
"""

from __future__ import annotations

import csv
import importlib
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from ltc_rl.errors import ConfigError, TrainingInterrupted
from ltc_rl.kernels import native
from ltc_rl.runs.summary import confidence_interval, find_runs, is_finished, read_run_record, summarize, write_summary
from ltc_rl.runs.sweep import (SweepSettings, check_sweep, load_search_space, run_sweep, run_trial, searched_names,
                              trial_name)

from conftest import REPO_ROOT, TINY_HP, hp_overrides

sweep_script = importlib.import_module("ltc_rl.cli.sweep")

T_975_DF2 = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom (statistical tables)
TINY_OVERRIDES = hp_overrides({**TINY_HP, "eval_freq": 128, "n_eval_episodes": 2, "checkpoint_freq": 128,
                               "policy_kwargs.units": 4, "n_envs": 2})


def _fake_run(root: Path, policy: str, seed: int, curve: list[float], total: int = 1000,
              learning_rate: float = 3e-4, name: str | None = None) -> Path:
    """A run folder as ltc_rl.runs.training writes it (config.yaml + evaluations.npz), evaluations every 250 steps."""
    run = root / (name or f"CartPole-v1_{policy}_seed{seed}_{learning_rate}")
    run.mkdir(parents=True)
    config = {"env_id": "CartPole-v1", "policy": policy, "algorithm": "RecurrentPPO", "policy_class": "MlpLtcPolicy",
              "total_timesteps": total, "n_envs": 2, "seed": seed, "device": "cpu",
              "hyperparams": {"learning_rate": learning_rate, "policy_kwargs": {"units": 4}},
              "normalize": False, "eval_freq": 250, "n_eval_episodes": 2, "checkpoint_freq": 250,
              "versions": {"ltc_rl": "0.1.0"}, "sessions": [{"kind": "train", "command": "x"}]}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    steps = 250 * np.arange(1, len(curve) + 1)
    results = np.array([[value - 1.0, value + 1.0] for value in curve])  # episode returns, mean = value
    np.savez(run / "evaluations.npz", timesteps=steps, results=results, ep_lengths=np.full(results.shape, 100))
    return run


# ---------------------------------------------------------------------------------------------- summary
def test_summary_mean_std_and_t_interval_per_policy(tmp_path):
    for seed, final in enumerate([100.0, 110.0, 130.0]):
        _fake_run(tmp_path, "ltc", seed, [10.0, 50.0, 80.0, final])
    for seed, final in enumerate([60.0, 70.0]):
        _fake_run(tmp_path, "lstm", seed, [5.0, 20.0, 40.0, final])
    _fake_run(tmp_path, "lstm", 7, [5.0, 20.0], name="interrupted")  # reached 500 of 1000 steps

    groups, excluded = summarize(find_runs(tmp_path))
    assert [g.policy for g in groups] == ["lstm", "ltc"]
    assert [r.run_dir.name for r in excluded] == ["interrupted"]
    ltc = groups[1]
    finals = np.array([100.0, 110.0, 130.0])
    assert ltc.mean == pytest.approx(finals.mean())
    assert ltc.std == pytest.approx(finals.std(ddof=1))
    half = T_975_DF2 * finals.std(ddof=1) / math.sqrt(3)
    assert ltc.ci == pytest.approx((finals.mean() - half, finals.mean() + half))
    steps, mean, low, high = ltc.curve()
    assert steps.tolist() == [250, 500, 750, 1000] and mean.tolist() == pytest.approx([10, 50, 80, 113.3333333])
    assert np.all(low[-1:] < mean[-1:]) and np.all(high[-1:] > mean[-1:])

    paths = write_summary(find_runs(tmp_path), tmp_path / "out")
    markdown = paths["markdown"].read_text()
    assert f"| CartPole-v1 | ltc |  | 3 | 1000 | 113.3 +- 15.3 | [{finals.mean() - half:.1f}, " \
           f"{finals.mean() + half:.1f}] |" in markdown
    assert "| CartPole-v1 | lstm |  | 2 | 1000 | 65.0 +- 7.1 |" in markdown
    assert "interrupted: reached 500 of 1000 steps" in markdown
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [(r["policy"], int(r["n_seeds"]), r["seeds"]) for r in rows] == [("lstm", 2, "0 1"), ("ltc", 3, "0 1 2")]
    assert float(rows[1]["ci_low"]) == pytest.approx(finals.mean() - half)
    assert paths["curves"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_separates_configurations_and_names_what_differs(tmp_path):
    for seed in range(2):
        _fake_run(tmp_path, "ltc", seed, [1.0, 2.0, 3.0, 4.0 + seed], learning_rate=1e-3)
        _fake_run(tmp_path, "ltc", seed, [1.0, 2.0, 3.0, 8.0 + seed], learning_rate=3e-4)
    groups, _ = summarize(find_runs(tmp_path))
    assert len(groups) == 2 and all(len(g.runs) == 2 for g in groups)
    assert sorted(g.varying["learning_rate"] for g in groups) == [3e-4, 1e-3]
    assert sorted(g.mean for g in groups) == [4.5, 8.5]
    markdown = write_summary(find_runs(tmp_path), tmp_path)["markdown"].read_text()
    assert "learning_rate=0.001 |" in markdown and "learning_rate=0.0003 |" in markdown


def test_confidence_interval_needs_two_values():
    assert all(math.isnan(v) for v in confidence_interval([3.0]))
    assert confidence_interval([2.0, 2.0]) == (2.0, 2.0)


def test_summarize_script_works_without_ray_and_fails_clearly_on_no_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    for seed in range(2):
        _fake_run(tmp_path / "runs", "ltc", seed, [1.0, 2.0, 3.0, 4.0 + seed])
    assert sweep_script.main(["--summarize", str(tmp_path / "runs"), "--summary-out", str(tmp_path / "s")]) == 0
    assert "| CartPole-v1 | ltc |  | 2 | 1000 | 4.5 +- 0.7 |" in capsys.readouterr().out
    assert (tmp_path / "s" / "summary.csv").is_file() and (tmp_path / "s" / "learning_curves.png").is_file()
    (tmp_path / "empty").mkdir()
    assert sweep_script.main(["--summarize", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no run folders")


def test_search_table_ranks_trials_by_steps_reached_then_return_with_their_values(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    _fake_run(sweep / "runs", "ltc", 0, [1.0, 5.0, 9.0, 20.0], learning_rate=1e-3, name="finished_low")
    _fake_run(sweep / "runs", "ltc", 0, [1.0, 5.0, 9.0, 30.0], learning_rate=3e-4, name="finished_high")
    _fake_run(sweep / "runs", "ltc", 0, [1.0, 50.0], learning_rate=1e-4, name="stopped_at_500")
    (sweep / "sweep.yaml").write_text(yaml.safe_dump({"search_space": {"learning_rate": [1e-4, 3e-4, 1e-3]}}))

    assert sweep_script.main(["--summarize", str(sweep), "--summary-out", str(tmp_path / "s")]) == 0
    assert "# Search trials (3, 2 trained to the end)" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "s" / "search.csv").open()))
    assert [(row["run"], row["learning_rate"], row["steps"], row["last return"], row["status"]) for row in rows] == [
        ("finished_high", "0.0003", "1000", "30.0", "finished"), ("finished_low", "0.001", "1000", "20.0", "finished"),
        ("stopped_at_500", "0.0001", "500", "50.0", "not to the end")]
    assert rows[1]["best return"] == "20.0" and [row["rank"] for row in rows] == ["1", "2", "3"]
    assert (tmp_path / "s" / "search_curves.png").stat().st_size > 0


def test_search_table_only_for_searches(tmp_path):
    _fake_run(tmp_path / "runs", "ltc", 0, [1.0, 2.0, 3.0, 4.0])
    assert searched_names(tmp_path) == []  # no sweep.yaml: a folder of train.py runs
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"search_space": {}, "seeds": [0, 1]}))
    assert searched_names(tmp_path) == []  # a seed sweep
    assert sweep_script.main(["--summarize", str(tmp_path)]) == 0
    assert not (tmp_path / "search.md").exists()
    (tmp_path / "sweep.yaml").write_text("search_space: [unclosed")
    with pytest.raises(ConfigError, match="not a readable sweep settings file"):
        searched_names(tmp_path)


# ---------------------------------------------------------------------------------------------- settings
def test_missing_ray_is_one_clear_error_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.tune", None)
    with pytest.raises(ConfigError, match=r"pip install ltc_rl\[distributed\]"):
        run_sweep(SweepSettings("CartPole-v1"), tmp_path / "sweep")
    code = sweep_script.main(["--env", "CartPole-v1", "--seeds", "2", "--output", str(tmp_path / "sweep")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install ltc_rl[distributed]" in err[0], err
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("argv, match", [
    (["--seeds", "2"], "pass --env ENV_ID"),
    (["--env", "CartPole-v1", "--seeds", "0"], "--seeds COUNT must be >= 1"),
    (["--env", "CartPole-v1", "--seeds", "1,x"], "a count (e.g. 3 for seeds 0,1,2) or a list of seeds"),
    (["--env", "CartPole-v1", "--search", "no_such_space.yaml"], "does not exist"),
    (["--env", "CartPole-v1", "--policies", "ltc,rnn"], "unknown policy 'rnn'"),
])
def test_bad_command_lines_are_one_error_line(argv, match, capsys):
    assert sweep_script.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err


def test_a_different_sweep_in_the_same_folder_is_refused_before_ray_starts(tmp_path):
    pytest.importorskip("ray.tune", reason="Ray Tune is not installed (pip install ltc_rl[distributed])")
    import ray

    output = tmp_path / "sweep"
    output.mkdir()
    earlier = SweepSettings("CartPole-v1", policies=("ltc",), seeds=(0, 1, 2), overrides=("n_steps=32",))
    (output / "sweep.yaml").write_text(yaml.safe_dump({**earlier.to_dict(),
                                                       "make_env": "ltc_rl.runs.training.sb3_make_vec"}))
    with pytest.raises(ConfigError, match="holds a different sweep \\(differs in seeds\\)"):
        run_sweep(SweepSettings("CartPole-v1", policies=("ltc",), seeds=(0, 1), overrides=("n_steps=32",)), output)
    assert not ray.is_initialized() and not (output / "runs").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"policies": ("ltc", "transformer")}, "unknown policy 'transformer'"),
    ({"seeds": ()}, "at least one"),
    ({"seeds": (1, 1)}, "distinct"),
    ({"samples": 3}, "needs a search space"),
    ({"search_space": {"learning_rate": {"uniform": [1e-3, 1e-4]}}}, "low < high"),
    ({"search_space": {"learning_rate": {"loguniform": [0, 1e-3]}}}, "low > 0"),
    ({"search_space": {"n_steps": []}}, "empty list"),
    ({"search_space": {"n_steps": 64}}, "neither a list"),
    ({"search_space": {"learning_rate": {"uniform": [1e-4, 1e-3]}}, "search_alg": "grid"}, "grid search takes lists"),
    ({"search_alg": "bayes"}, "unknown search algorithm"),
])
def test_bad_sweep_settings_are_clear_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SweepSettings("CartPole-v1", **kwargs)


@pytest.mark.parametrize("space, match", [
    ({"n_step": [64, 128]}, r"unknown search space entry 'n_step' \(did you mean 'n_steps'\?\)"),
    ({"gamma": [0.9, 1.5]}, r"gamma=1.5 is invalid"),
    ({"sequence_length": [8, 16]}, r"unknown search space entry 'sequence_length'.*\(policy mlp\)"),
])
def test_search_space_is_checked_for_every_policy_before_the_sweep(space, match):
    settings = SweepSettings("CartPole-v1", policies=("ltc", "mlp"), overrides=("n_steps=32", "batch_size=32"),
                             search_space=space)
    with pytest.raises(ConfigError, match=match):
        check_sweep(settings)


@pytest.mark.parametrize("policies, builds", [(("ltc", "lstm"), 1), (("lstm", "gru"), 0)])
def test_the_driver_builds_the_native_kernel_once_before_trials_when_a_policy_uses_it(policies, builds, monkeypatch):
    calls = []
    monkeypatch.setattr(native, "_enabled", True)
    monkeypatch.setattr(native, "native_kernel", lambda: calls.append(1) or object())
    check_sweep(SweepSettings("CartPole-v1", policies=policies, overrides=TINY_OVERRIDES))
    assert len(calls) == builds


def test_search_space_file_flattens_nested_names(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("learning_rate: {loguniform: [1.0e-4, 1.0e-3]}\npolicy_kwargs:\n  units: [8, 16]\n"
                    "  log_std_init: {uniform: [-2.0, 0.0]}\nn_epochs: {randint: [2, 6]}\n")
    assert load_search_space(path) == {"learning_rate": {"loguniform": [1e-4, 1e-3]}, "policy_kwargs.units": [8, 16],
                                       "policy_kwargs.log_std_init": {"uniform": [-2.0, 0.0]},
                                       "n_epochs": {"randint": [2, 6]}}
    settings = SweepSettings("CartPole-v1", search_space=load_search_space(path))
    assert settings.resolved_search_alg() == "random" and settings.resolved_scheduler() == "asha"
    assert SweepSettings("CartPole-v1").resolved_scheduler() == "fifo"  # seeds only: never stop a seed
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must map hyperparameter names"):
        load_search_space(path)


@pytest.mark.parametrize("space", sorted((REPO_ROOT / "ltc_rl" / "studies").glob("*search.yml")), ids=lambda p: p.stem)
def test_shipped_search_spaces_resolve_to_valid_trials(space):
    # every value a shipped search may draw (the bounds of its distributions) passes the configuration checks
    # of a run (names and values of the algorithm's hyperparameters, schedules) for the policy it searches
    policy = "ncp" if "ncp" in space.stem else "ltc"
    env_id = "HalfCheetahNoVel-v4" if "novel" in space.stem else "HalfCheetah-v4"
    search = load_search_space(space)
    settings = SweepSettings(env_id, policies=(policy,), search_space=search, search_alg="optuna", samples=8)
    for name, spec in search.items():
        for value in spec if isinstance(spec, list) else next(iter(spec.values())):
            config = settings.resolve(policy, 0, {name: value})
            assert config.policy == policy and config.env_id == env_id


def test_trial_folder_names_are_stable_per_policy_seed_and_configuration():
    assert trial_name("HalfCheetah-v4", "ltc", 3) == "HalfCheetah-v4_ltc_seed3"
    a = trial_name("CartPole-v1", "ltc", 0, {"learning_rate": 1e-3, "policy_kwargs.units": 8})
    assert a == trial_name("CartPole-v1", "ltc", 0, {"policy_kwargs.units": 8, "learning_rate": 1e-3})
    assert a != trial_name("CartPole-v1", "ltc", 0, {"learning_rate": 1e-3, "policy_kwargs.units": 16})


# ---------------------------------------------------------------------------------------------- one trial
def test_trial_reports_evaluations_resumes_after_interruption_and_skips_when_finished(tmp_path):
    settings = SweepSettings("CartPole-v1", policies=("ltc",), seeds=(0,), total_timesteps=512,
                             overrides=TINY_OVERRIDES,
                             device="cpu")
    trial = {"policy": "ltc", "seed": 0, "hyperparams": {"learning_rate": 1e-3}}
    reports: list[dict] = []

    def interrupting(metrics: dict) -> None:  # Ctrl+C during the second evaluation
        reports.append(metrics)
        if len(reports) == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):  # the pipeline saves a checkpoint and reports the interruption
        run_trial(trial, settings, tmp_path, interrupting)
    run_dir = tmp_path / trial_name("CartPole-v1", "ltc", 0, trial["hyperparams"])
    assert [r["timesteps"] for r in reports] == [128, 256] and not is_finished(run_dir)
    assert reports[0]["run_dir"] == str(run_dir) and not reports[0]["finished"]

    reports.clear()
    assert run_trial(trial, settings, tmp_path, reports.append) == run_dir
    assert [r["timesteps"] for r in reports] == [384, 512] and [r["finished"] for r in reports] == [False, True]
    record = read_run_record(run_dir)
    assert record.finished and reports[-1]["eval_return"] == pytest.approx(record.final_return)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert [s["kind"] for s in config["sessions"]] == ["train", "resume"]
    assert config["hyperparams"]["learning_rate"] == 1e-3 and config["hyperparams"]["policy_kwargs"]["units"] == 4
    assert "scripts/train.py --env CartPole-v1 --policy ltc --seed 0" in config["sessions"][0]["command"]
    assert "--hp learning_rate=0.001" in config["sessions"][0]["command"]

    stamp = (run_dir / "model.zip").stat().st_mtime_ns
    reports.clear()
    run_trial(trial, settings, tmp_path, reports.append)  # finished: reported again, not trained again
    assert (run_dir / "model.zip").stat().st_mtime_ns == stamp
    assert [(r["timesteps"], r["finished"]) for r in reports] == [(512, True)]
    assert len(yaml.safe_load((run_dir / "config.yaml").read_text())["sessions"]) == 2


# ---------------------------------------------------------------------------------------------- with Ray
def _tiny_args(output: Path) -> list[str]:
    args = ["--env", "CartPole-v1", "--policies", "ltc", "--seeds", "2", "--total-timesteps", "512",
            "--device", "cpu", "--num-cpus", "2", "--output", str(output)]
    for item in TINY_OVERRIDES:
        args += ["--hp", item]
    return args


def test_one_trial_sweep_through_ray_tune(tmp_path, monkeypatch):
    """The multi-machine path in the default suite: a Tune trial in a Ray worker writes a complete run folder,
    reports its evaluations and the sweep summarises it (a feed-forward policy: no kernel build in the worker)."""
    pytest.importorskip("ray.tune", reason="Ray Tune is not installed (pip install ltc_rl[distributed])")
    overrides = ("n_steps=32", "batch_size=32", "n_epochs=1", "eval_freq=64", "n_eval_episodes=1",
                 "checkpoint_freq=64", "n_envs=2")
    settings = SweepSettings("CartPole-v1", policies=("mlp",), seeds=(0,), total_timesteps=128, overrides=overrides,
                             device="cpu")
    result = run_sweep(settings, tmp_path / "sweep", num_cpus=1)
    assert (result.trials, result.finished, result.interrupted, result.errors) == (1, 1, 0, [])
    run = tmp_path / "sweep" / "runs" / "CartPole-v1_mlp_seed0"
    record = read_run_record(run)
    assert record.finished and record.timesteps.tolist() == [64, 128] and (run / "model.zip").is_file()
    rows = list(csv.DictReader(result.summary["csv"].open()))
    assert [row["seeds"] for row in rows] == ["0"] and float(rows[0]["mean"]) == pytest.approx(record.final_return)


@pytest.mark.slow
def test_tiny_sweep_on_local_ray_and_its_summary(tmp_path, monkeypatch):
    pytest.importorskip("ray.tune", reason="Ray Tune is not installed (pip install ltc_rl[distributed])")
    monkeypatch.setenv("LTC_RL_COMPILE", "0")  # the Ray workers inherit it
    settings = SweepSettings("CartPole-v1", policies=("ltc",), seeds=(0, 1), total_timesteps=512,
                             overrides=TINY_OVERRIDES,
                             device="cpu")
    result = run_sweep(settings, tmp_path / "sweep", num_cpus=2)
    assert (result.trials, result.finished, result.interrupted, result.errors) == (2, 2, 0, [])
    runs = sorted((tmp_path / "sweep" / "runs").iterdir())
    assert [r.name for r in runs] == ["CartPole-v1_ltc_seed0", "CartPole-v1_ltc_seed1"]
    for run in runs:  # the run-folder layout of scripts/train.py
        for name in ("config.yaml", "evaluations.npz", "model.zip", "learning_curve.png", "best", "checkpoints",
                     "monitor"):
            assert (run / name).exists(), (run, name)
    finals = [read_run_record(run).final_return for run in runs]
    rows = list(csv.DictReader(result.summary["csv"].open()))
    assert len(rows) == 1 and rows[0]["seeds"] == "0 1" and float(rows[0]["mean"]) == pytest.approx(np.mean(finals))
    assert result.summary["curves"].is_file()
    from ray import tune  # every periodic evaluation reached Tune (what ASHA decides on), then the final one

    frames = tune.ExperimentAnalysis(str(tmp_path / "sweep" / "tune" / "sweep")).trial_dataframes.values()
    for frame in frames:
        assert frame["timesteps"].tolist() == [128, 256, 384, 512]
        assert frame["finished"].tolist() == [False, False, False, True]
        assert frame["eval_return"].iloc[-1] == pytest.approx(read_run_record(frame["run_dir"].iloc[-1]).final_return)
    assert len(frames) == 2


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_redoing_finished_trials(tmp_path):
    pytest.importorskip("ray.tune", reason="Ray Tune is not installed (pip install ltc_rl[distributed])")
    output = tmp_path / "sweep"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "sweep.py"), *_tiny_args(output), "--max-concurrent", "1"]
    env = {**os.environ, "LTC_RL_COMPILE": "0"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runs = output / "runs"
    deadline = time.monotonic() + 300
    while not (runs.is_dir() and any(is_finished(run) for run in runs.iterdir())):
        assert first.poll() is None and time.monotonic() < deadline, "no trial finished"
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)  # Ctrl+C: Tune saves the experiment state and stops
    log = first.communicate(timeout=120)[0]
    done = [run for run in runs.iterdir() if is_finished(run)]
    assert len(done) == 1, log  # the second trial was cut off
    assert first.returncode == 1 and "2 trials: 1 finished, 0 stopped early by the scheduler, 1 interrupted" in log
    stamp = (done[0] / "model.zip").stat().st_mtime_ns

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "2 trials: 2 finished" in second.stdout
    assert (done[0] / "model.zip").stat().st_mtime_ns == stamp  # the finished trial was not trained again
    assert len(yaml.safe_load((done[0] / "config.yaml").read_text())["sessions"]) == 1
    assert sorted(is_finished(run) for run in runs.iterdir()) == [True, True]
    assert "| CartPole-v1 | ltc |  | 2 | 512 |" in (output / "summary.md").read_text()


@pytest.mark.slow
def test_optuna_search_with_asha_through_ray_tune(tmp_path, monkeypatch):
    pytest.importorskip("ray.tune", reason="Ray Tune is not installed (pip install ltc_rl[distributed])")
    pytest.importorskip("optuna", reason="optuna is not installed")
    monkeypatch.setenv("LTC_RL_COMPILE", "0")
    settings = SweepSettings("CartPole-v1", policies=("ltc",), seeds=(0,), total_timesteps=512,
                             overrides=TINY_OVERRIDES,
                             device="cpu", search_space={"learning_rate": {"loguniform": [1e-4, 1e-2]}},
                             search_alg="optuna", samples=2)
    result = run_sweep(settings, tmp_path / "sweep", num_cpus=2)
    assert result.trials == 2 and result.errors == [] and result.interrupted == 0
    runs = sorted((tmp_path / "sweep" / "runs").iterdir())
    rates = {yaml.safe_load((run / "config.yaml").read_text())["hyperparams"]["learning_rate"] for run in runs}
    assert len(runs) == 2 and len(rates) == 2 and all(1e-4 <= rate <= 1e-2 for rate in rates)
    assert (tmp_path / "sweep" / "tune" / "optuna_ltc").is_dir()
    ranked = list(csv.DictReader((tmp_path / "sweep" / "search.csv").open()))
    assert sorted(float(row["learning_rate"]) for row in ranked) == pytest.approx(sorted(rates), rel=1e-3)
