"""The multi-seed RL benchmark (ltc_rl.studies, scripts/benchmark_rl.py): study files, settings, run planning,
the rliable report from synthetic run folders; end to end (slow): a tiny benchmark, interrupted and resumed."""

from __future__ import annotations

import csv
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from ltc_rl.errors import ConfigError
from ltc_rl.runs.summary import is_finished
from ltc_rl.studies.rl_benchmark import (NOISE_FILE, SETTINGS_FILE, BenchmarkSettings, PlannedRun, PolicySpec,
                                         TaskSpec, build_settings, load_study, merge_settings, plan_runs, prepare_output,
                                         read_settings, run_benchmark, run_folder)
from ltc_rl.studies.rl_report import interval_estimate, iqm, load_results, write_report

from conftest import REPO_ROOT

pytest.importorskip("rliable", reason="rliable is not installed (pip install ltc_rl[bench])")

benchmark_script = importlib.import_module("ltc_rl.cli.benchmark_rl")

STUDY = resources.files("ltc_rl") / "studies" / "halfcheetah.yml"


def _write_study(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


# ---------------------------------------------------------------------------------------------- study files
def test_shipped_study_describes_the_halfcheetah_study():
    settings = build_settings(load_study(str(STUDY)))
    plain = ["ltc", "ncp", "lstm", "mlp"]
    assert settings.cells == (*(("HalfCheetah-v4", p) for p in (*plain, "ltc-rate1", "ltc-linear", "ltc-256", "ltc-exp")),
                              *(("HalfCheetahNoVel-v4", p) for p in (*plain, "ltc-cellrate", "ncp-novel-search",
                                                                     "ltc-novel-search")),
                              *(("HalfCheetahNoVel-v4-irregular", p) for p in ("ltc", "ltc-nodt", "lstm-dtobs", "ltc-memory",
                                                                                    "ltc-memory-nodt")))
    assert settings.policies["ltc-cellrate"] == PolicySpec("ltc", ("policy_kwargs.cell_lr_scale=10",))
    assert settings.policies["ltc-rate1"] == PolicySpec("ltc", ("policy_kwargs.cell_lr_scale=1",))
    assert settings.policies["ltc-256"] == PolicySpec("ltc", ("policy_kwargs.units=256",))
    assert settings.policies["ltc-exp"] == PolicySpec("ltc", ("learning_rate=exp_1e-3_1e-5",))
    assert settings.sweep_settings("HalfCheetah-v4", "ltc-linear").resolve("ltc", 0).hyperparams["policy_kwargs"][
        "features_extractor_class"] == "linear"
    assert settings.tasks["HalfCheetahNoVel-v4-irregular"] == TaskSpec("HalfCheetahNoVel-v4", {"irregular": [1, 9]})
    assert settings.policies["ltc-nodt"] == PolicySpec("ltc", ("policy_kwargs.use_elapsed_time=false",))
    assert settings.policies["lstm-dtobs"] == PolicySpec("lstm", (), {"dt_in_obs": True})
    memory = settings.sweep_settings("HalfCheetahNoVel-v4-irregular", "ltc-memory-nodt").resolve("ltc", 0)
    assert memory.hyperparams["policy_kwargs"]["cell_kwargs"]["init_ranges"] == {"cm": [2, 3], "w": [0.0001, 0.1]}
    assert memory.hyperparams["policy_kwargs"]["use_elapsed_time"] is False
    assert settings.seeds == (0, 1, 2, 3, 4) and settings.total_timesteps == 1_000_000
    assert settings.noise_levels == (0.0, 0.1, 0.2)
    # a cell's run: the variant's base policy, its overrides after the shared ones, the merged env options
    sweep = settings.sweep_settings("HalfCheetahNoVel-v4-irregular", "lstm-dtobs")
    assert sweep.env_id == "HalfCheetahNoVel-v4" and sweep.policies == ("lstm",)
    assert sweep.env_options == {"obs_noise": 0.0, "irregular": [1, 9], "dt_in_obs": True}
    assert settings.sweep_settings("HalfCheetah-v4", "ltc").env_options == {"obs_noise": 0.0, "irregular": None,
                                                                            "dt_in_obs": False}


def test_flags_select_from_the_study_and_add_plain_names(tmp_path):
    study = load_study(str(STUDY))
    settings = build_settings(study, policies="ltc,lstm-dtobs", seeds="3", total_timesteps=5000, hp=["n_steps=64"])
    assert settings.cells == (("HalfCheetah-v4", "ltc"), ("HalfCheetahNoVel-v4", "ltc"),
                              ("HalfCheetahNoVel-v4-irregular", "ltc"), ("HalfCheetahNoVel-v4-irregular", "lstm-dtobs"))
    assert settings.seeds == (0, 1, 2) and settings.total_timesteps == 5000 and settings.hp == ("n_steps=64",)
    plain = build_settings(None, tasks="CartPole-v1,Pendulum-v1", policies="ltc,mlp", seeds="0,4", noise="0,0.3")
    assert plain.cells == (("CartPole-v1", "ltc"), ("CartPole-v1", "mlp"), ("Pendulum-v1", "ltc"), ("Pendulum-v1", "mlp"))
    assert plain.tasks["Pendulum-v1"] == TaskSpec("Pendulum-v1") and plain.seeds == (0, 4)
    assert plain.noise_levels == (0.0, 0.3) and plain.policies["mlp"] == PolicySpec("mlp")


@pytest.mark.parametrize("document, message", [
    ({"tasks": {"A": {"irregular": [5, 2]}}}, "irregular must be [MIN, MAX]"),
    ({"tasks": {"A": {"envv": "CartPole-v1"}}}, "unknown key(s) envv"),
    ({"policies": {"x": {"policy": "transformer"}}}, "'transformer' is not a train.py policy"),
    ({"policies": {"x": {"policy": "ltc", "hp": "n_steps=64"}}}, "hp must be a list of NAME=VALUE"),
    ({"policies": {"x": {"policy": "ltc", "hp": ["n_steps"]}}}, "is not NAME=VALUE"),
    ({"seed": [0]}, "unknown key(s) seed"),
    ({"tasks": {"A": {"obs_noise": -1}}}, "obs_noise must be a number >= 0"),
])
def test_bad_study_files_are_refused_with_one_line(tmp_path, document, message):
    with pytest.raises(ConfigError) as error:
        load_study(_write_study(tmp_path / "study.yml", document))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_selections_are_refused(tmp_path):
    study = load_study(_write_study(tmp_path / "study.yml", {
        "tasks": {"T": {"env": "CartPole-v1", "dt_in_obs": False}}, "policies": {"p": {"policy": "lstm",
                                                                                          "dt_in_obs": True}}}))
    with pytest.raises(ConfigError, match="task T and policy p set dt_in_obs differently"):
        build_settings(study)
    with pytest.raises(ConfigError, match="unknown policy 'gpt'"):
        build_settings(None, tasks="CartPole-v1", policies="gpt")
    with pytest.raises(ConfigError, match="name the tasks to run"):
        build_settings(None, policies="ltc")
    with pytest.raises(ConfigError, match="seeds must be distinct"):
        build_settings(None, tasks="CartPole-v1", seeds="1,1")
    with pytest.raises(ConfigError, match="noise takes numbers"):
        build_settings(None, tasks="CartPole-v1", noise="low")


# ---------------------------------------------------------------------------------------------- settings file
def _tiny(**changes) -> BenchmarkSettings:
    defaults = dict(tasks="CartPole-v1", policies="ltc,mlp", seeds="0,1", total_timesteps=512, hp=["n_steps=64"],
                    noise="0,0.1")
    return build_settings(None, **{**defaults, **changes})


def test_benchmark_yaml_round_trips_and_reruns_may_add_seeds_policies_and_noise_levels(tmp_path):
    first = prepare_output(tmp_path, _tiny())
    assert read_settings(tmp_path) == first and (tmp_path / SETTINGS_FILE).is_file()
    merged = prepare_output(tmp_path, _tiny(policies="lstm", seeds="0,2", noise="0.2"))
    assert merged.cells == (("CartPole-v1", "ltc"), ("CartPole-v1", "mlp"), ("CartPole-v1", "lstm"))
    assert merged.seeds == (0, 1, 2) and merged.noise_levels == (0.0, 0.1, 0.2)
    assert read_settings(tmp_path) == merged
    assert prepare_output(tmp_path, _tiny(seeds="1,")).seeds == (0, 1, 2)  # running a subset keeps the rest


@pytest.mark.parametrize("changes, differs", [
    ({"total_timesteps": 1024}, "total_timesteps"),
    ({"hp": ["n_steps=128"]}, "hp"),
    ({"noise_episodes": 5}, "noise_episodes"),
])
def test_a_rerun_that_would_change_existing_runs_is_refused(tmp_path, changes, differs):
    prepare_output(tmp_path, _tiny())
    with pytest.raises(ConfigError) as error:
        prepare_output(tmp_path, _tiny(**changes))
    assert f"differs in {differs})" in str(error.value) and "\n" not in str(error.value)


def test_a_changed_policy_definition_is_refused(tmp_path):
    study = {"tasks": {"CartPole-v1": None}, "policies": {"ltc-small": {"policy": "ltc", "hp": ["policy_kwargs.units=8"]}}}
    saved = build_settings(load_study(_write_study(tmp_path / "a.yml", study)))
    study["policies"]["ltc-small"]["hp"] = ["policy_kwargs.units=4"]
    with pytest.raises(ConfigError, match="differs in policy ltc-small"):
        merge_settings(saved, build_settings(load_study(_write_study(tmp_path / "b.yml", study))))


def test_script_reports_bad_settings_in_one_line(tmp_path, capsys):
    prepare_output(tmp_path / "bench", _tiny())
    code = benchmark_script.main(["--out", str(tmp_path / "bench"), "--tasks", "CartPole-v1", "--policies", "ltc,mlp",
                                  "--seeds", "0,1", "--total-timesteps", "999", "--hp", "n_steps=64", "--obs-noise", "0", "0.1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "differs in total_timesteps" in err and "\n" not in err
    assert benchmark_script.main(["--out", str(tmp_path / "none"), "--report-only"]) == 2
    assert "is not a benchmark folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- synthetic runs
def _fake_run(run_dir: Path, env_id: str, policy: str, seed: int, returns: list[float], total: int,
              noise: dict[float, float] | None = None, episodes: int = 2, checkpoint: bool = False) -> Path:
    """A run folder as ltc_rl.runs.training leaves it, as far as planning and the report read it."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"env_id": env_id, "policy": policy, "seed": seed,
                                                         "total_timesteps": total, "hyperparams": {}}))
    steps = np.arange(1, len(returns) + 1) * 100
    results = np.array([[value - 1.0, value + 1.0] for value in returns])  # two episodes around each mean
    upside_down = np.where(results < 0.0, 1.0, 0.0)  # a negative episode return: mostly upside down
    np.savez(run_dir / "evaluations.npz", timesteps=steps, results=results, ep_lengths=np.ones_like(results),
             upside_down=upside_down)
    if noise is not None:
        (run_dir / NOISE_FILE).write_text(json.dumps({"episodes": episodes, "results": [
            {"obs_noise": level, "mean_return": value, "upside_down": [value / 1000] * episodes,
             "mean_upside_down": value / 1000} for level, value in noise.items()]}))
    if checkpoint:
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "ckpt_100_steps.zip").write_bytes(b"")
    return run_dir


def test_plan_says_what_is_left_for_each_run(tmp_path):
    settings = _tiny(noise_episodes=2)
    folder = lambda policy, seed: run_folder(tmp_path, settings, "CartPole-v1", policy, seed)  # noqa: E731
    assert folder("ltc", 1) == tmp_path / "runs" / "CartPole-v1" / "ltc" / "CartPole-v1_ltc_seed1"
    _fake_run(folder("ltc", 0), "CartPole-v1", "ltc", 0, [1, 2, 3, 4, 5], 500, {0.0: 1.0, 0.1: 1.0})
    _fake_run(folder("ltc", 1), "CartPole-v1", "ltc", 1, [1, 2, 3, 4, 5], 500, {0.0: 1.0})  # a level missing
    _fake_run(folder("mlp", 0), "CartPole-v1", "mlp", 0, [1, 2], 500, checkpoint=True)
    _fake_run(folder("mlp", 1), "CartPole-v1", "mlp", 1, [1, 2], 500)  # killed before its first checkpoint
    states = {(run.policy, run.seed): run.state for run in plan_runs(settings, tmp_path)}
    assert states == {("ltc", 0): "done", ("ltc", 1): "evaluate", ("mlp", 0): "resume", ("mlp", 1): "new"}
    other_episodes = {(r.policy, r.seed): r.state for r in plan_runs(_tiny(noise_episodes=5), tmp_path)}
    assert other_episodes[("ltc", 0)] == "evaluate"  # evaluations with another episode count do not count
    noise_file = folder("ltc", 0) / NOISE_FILE  # written before the upside-down share was recorded
    document = json.loads(noise_file.read_text())
    for result in document["results"]:
        del result["upside_down"]
    noise_file.write_text(json.dumps(document))
    assert {(r.policy, r.seed): r.state for r in plan_runs(settings, tmp_path)}[("ltc", 0)] == "evaluate"


def test_progress_names_the_steps_and_last_evaluation_of_a_running_run(tmp_path):
    settings = _tiny()
    run = lambda seed: PlannedRun("CartPole-v1", "ltc", seed, run_folder(tmp_path, settings, "CartPole-v1", "ltc", seed),  # noqa: E731
                                  "new")
    _fake_run(run(0).run_dir, "CartPole-v1", "ltc", 0, [10.0, 42.5], 1000)
    assert run(0).progress() == "CartPole-v1 / ltc / seed 0 at 200 of 1,000 steps (last evaluation 42.5)"
    assert run(1).progress() == "CartPole-v1 / ltc / seed 1"  # no folder yet
    (_fake_run(run(2).run_dir, "CartPole-v1", "ltc", 2, [1.0], 1000) / "evaluations.npz").write_bytes(b"half-written")
    assert run(2).progress() == "CartPole-v1 / ltc / seed 2"


def test_a_benchmark_with_nothing_left_runs_nothing(tmp_path):
    settings = _tiny(noise=None)
    for policy in ("ltc", "mlp"):
        for seed in (0, 1):
            _fake_run(run_folder(tmp_path, settings, "CartPole-v1", policy, seed), "CartPole-v1", policy, seed,
                      [1.0, 2.0], 200)
    lines = []
    result = run_benchmark(settings, tmp_path, workers=2, log=lines.append)
    assert result.done == 4 and result.outcomes == [] and "4 runs, 4 already done, 0 to run" in lines[0]


def fake_noise_evaluation(run_dir: Path, levels: list[float], episodes: int) -> list[dict]:
    """A noise evaluator for worker processes: the run's seed as the return; seed 1 fails."""
    seed = int(run_dir.name.rsplit("seed", 1)[1])
    if seed == 1:
        raise RuntimeError("simulated failure")
    return [{"obs_noise": level, "mean_return": float(seed), "returns": [float(seed)] * episodes, "upside_down": None}
            for level in levels]


def test_a_failing_run_is_one_line_and_the_others_go_on(tmp_path):
    settings = _tiny(noise="0,0.1", noise_episodes=2)
    for policy in ("ltc", "mlp"):
        for seed in (0, 1):
            _fake_run(run_folder(tmp_path, settings, "CartPole-v1", policy, seed), "CartPole-v1", policy, seed,
                      [1.0, 2.0], 200, {0.0: 5.0}, episodes=2)  # trained; sigma 0.1 still to evaluate
    lines = []
    result = run_benchmark(settings, tmp_path, workers=1, evaluate_noise=fake_noise_evaluation, log=lines.append)
    failed = [line for line in lines if line.startswith("FAILED")]
    assert len(failed) == 2 and all("RuntimeError: simulated failure (traceback in " in line for line in failed)
    assert result.done == 2 and len(result.failed) == 2 and not result.interrupted
    saved = json.loads((run_folder(tmp_path, settings, "CartPole-v1", "mlp", 0) / NOISE_FILE).read_text())
    assert [(r["obs_noise"], r["mean_return"]) for r in saved["results"]] == [(0.0, 5.0), (0.1, 0.0)]
    assert "simulated failure" in (tmp_path / "logs" / "CartPole-v1__ltc__seed1.log").read_text()
    assert [run.seed for run in plan_runs(settings, tmp_path) if run.state != "done"] == [1, 1]


def _report_fixture(tmp_path: Path) -> tuple[BenchmarkSettings, dict[str, list[float]]]:
    study = {"tasks": {"CartPole-v1": None}, "policies": {"ltc": None, "mlp": None}, "seeds": [0, 1, 2, 3, 4],
             "total_timesteps": 500, "noise": [0.0, 0.2], "thresholds": [30]}
    settings = prepare_output(tmp_path, build_settings(load_study(_write_study(tmp_path / "s.yml", study)),
                                                       command="python scripts/benchmark_rl.py --study s.yml"))
    finals = {"ltc": [10.0, 50.0, 20.0, 40.0, 300.0], "mlp": [5.0, 15.0, 25.0]}  # mlp: seeds 3, 4 not run yet
    for policy, values in finals.items():
        for seed, final in enumerate(values):
            _fake_run(run_folder(tmp_path, settings, "CartPole-v1", policy, seed), "CartPole-v1", policy, seed,
                      [0.0, final / 2, final, 0.0, final], 500, {0.0: final, 0.2: final / 2})
    _fake_run(run_folder(tmp_path, settings, "CartPole-v1", "mlp", 3), "CartPole-v1", "mlp", 3, [7.0], 500)
    return settings, finals


def _cell(markdown: str, row_start: str) -> list[str]:
    row = next(line for line in markdown.splitlines() if line.startswith(row_start))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_report_tables_match_a_direct_computation(tmp_path):
    settings, finals = _report_fixture(tmp_path)
    paths = write_report(tmp_path, reps=200)
    markdown = (tmp_path / "results.md").read_text()
    ltc, mlp = np.array(finals["ltc"]), np.array(finals["mlp"])
    row = _cell(markdown, "| ltc |")
    assert row[1] == "5" and row[2].startswith(f"{stats.trim_mean(ltc, 0.25):.1f} [")  # IQM drops the 300 outlier
    assert row[2].startswith("36.7 [") and row[3].startswith(f"{ltc.mean():.1f} [")
    for text in row[2:]:  # every value comes with its interval, which holds it
        value, low, high = map(float, re.match(r"(\S+) \[(\S+), (\S+)\]", text).groups())
        assert low <= value <= high and low < high
    assert _cell(markdown, "| mlp |")[1] == "3" and "mlp (3 of 5 seeds finished)" in markdown
    wins = np.mean([x > y for x in ltc for y in mlp])  # probability of improvement, by counting pairs
    assert _cell(markdown, "| ltc vs mlp |")[2].startswith(f"{wins:.2f} [")
    noise_row = [line for line in markdown.splitlines() if line.startswith("| ltc | 5 |")][-1]
    assert f"{stats.trim_mean(ltc / 2, 0.25):.1f} [" in noise_row and "sigma 0.2" in markdown
    upside_down = next(line for line in markdown.splitlines() if line.startswith("| ltc |") and " % (" in line)  # return / 1000
    percent = ltc / 10
    assert upside_down == (f"| ltc | {percent.mean():.0f} % ({', '.join(f'{x:.0f}' for x in percent)}) | "
                           f"{percent.mean() / 2:.0f} % ({', '.join(f'{x / 2:.0f}' for x in percent)}) |")
    # evaluations (0, final / 2, final, 0, final) at steps 100..500 against the threshold 30; each run's two
    # evaluations of mean 0 hold an episode upside down
    assert _cell(markdown, "| ltc | 0, 1, 2, 3, 4 |") == ["ltc", "0, 1, 2, 3, 4", "never, 300, never, 300, 200",
                                                          "2, 2, 2, 2, 2"]
    assert "python scripts/benchmark_rl.py --study s.yml" in markdown and "8 of 10 runs finished" in markdown
    for name in ("learning_curves_CartPole-v1.png", "performance_profile_CartPole-v1.png", "noise_CartPole-v1.png"):
        assert name in paths and (tmp_path / name).stat().st_size > 10_000

    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 10 and [r["finished"] for r in rows].count("True") == 8
    first = rows[0]  # ltc seed 0: evaluations 0, 5, 10, 0, 10 at steps 100..500
    assert (first["final_return"], first["best_return"], first["best_step"], first["steps_to_30"]) == ("10", "10", "300",
                                                                                                      "")
    assert (first["final_episode_std"], first["final_episode_min"], first["noise_0.2"]) == ("1", "9", "5")
    assert (first["upside_down_0"], first["upside_down_0.2"]) == ("0.01", "0.005")
    assert first["flipped_evaluations"] == "2"  # its two evaluations of mean 0 each hold an episode at -1
    assert rows[1]["steps_to_30"] == "300" and rows[8]["finished"] == "False" and rows[9]["timesteps"] == "0"


def test_learning_curve_band_is_the_bootstrap_of_the_iqm_at_each_step(tmp_path):
    settings, _ = _report_fixture(tmp_path)
    runs = [r for r in load_results(settings, tmp_path) if r.policy == "ltc"]
    table = np.stack([run.returns for run in runs])
    point, low, high = interval_estimate(iqm, table, reps=300)
    assert point.shape == (5,) and np.allclose(point, [stats.trim_mean(column, 0.25) for column in table.T])
    assert np.all(low <= point) and np.all(point <= high) and low[0] == high[0] == 0.0  # all runs start at 0
    again = interval_estimate(iqm, table, reps=300)
    assert np.array_equal(again[1], low)  # seeded: the same report twice


def test_report_only_with_no_finished_run_says_so(tmp_path):
    prepare_output(tmp_path, _tiny())
    write_report(tmp_path, reps=10)
    markdown = (tmp_path / "results.md").read_text()
    assert "0 of 4 runs finished" in markdown and "No finished run yet." in markdown
    assert not list(tmp_path.glob("*.png"))


# ---------------------------------------------------------------------------------------------- end to end
TINY_FLAGS = ["--tasks", "CartPole-v1", "--policies", "ltc,mlp", "--seeds", "0,1", "--hp", "n_envs=2",
              "--hp", "n_steps=64", "--hp", "batch_size=64", "--hp", "eval_freq=128", "--hp", "n_eval_episodes=2",
              "--hp", "checkpoint_freq=128", "--obs-noise", "0", "0.1",
              "--noise-episodes", "2", "--thresholds", "20", "--workers", "2", "--num-threads", "1", "--reps", "200",
              "--progress-every", "2"]


def _command(output: Path, steps: int) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "scripts" / "benchmark_rl.py"), "--out", str(output),
            "--total-timesteps", str(steps), *TINY_FLAGS]


def _environment() -> dict[str, str]:
    return {**os.environ, "LTC_RL_COMPILE": "0", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


@pytest.mark.slow
def test_tiny_benchmark_writes_every_output(tmp_path):
    output = tmp_path / "bench"
    done = subprocess.run(_command(output, 384), env=_environment(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("finished CartPole-v1 / ") == 4 and "4 of 4 runs done, 0 failed" in done.stdout
    assert "runs done, running: " in done.stdout  # the periodic progress line
    for name in ("benchmark.yaml", "results.md", "results.csv", "learning_curves_CartPole-v1.png",
                 "performance_profile_CartPole-v1.png", "noise_CartPole-v1.png"):
        assert (output / name).is_file(), name
    for run in (output / "runs" / "CartPole-v1").glob("*/*"):
        assert is_finished(run) and [r["obs_noise"] for r in json.loads((run / NOISE_FILE).read_text())["results"]] \
            == [0.0, 0.1]
        assert "scripts/train.py --env CartPole-v1" in yaml.safe_load((run / "config.yaml").read_text())[
            "sessions"][0]["command"]
    rows = list(csv.DictReader((output / "results.csv").open()))
    assert sorted((r["policy"], r["seed"], r["finished"]) for r in rows) == [
        ("ltc", "0", "True"), ("ltc", "1", "True"), ("mlp", "0", "True"), ("mlp", "1", "True")]
    again = subprocess.run(_command(output, 384), env=_environment(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "4 runs, 4 already done, 0 to run" in again.stdout


@pytest.mark.slow
def test_interrupted_benchmark_resumes_without_retraining_finished_runs(tmp_path):
    output = tmp_path / "bench"
    command = _command(output, 2048)
    first = subprocess.Popen(command, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runs = output / "runs" / "CartPole-v1"
    deadline = time.monotonic() + 600
    # wait until a run is complete and another has a checkpoint but is not done: then Ctrl-C
    while not (runs.is_dir() and any((run / "model.zip").is_file() for run in runs.glob("*/*"))
               and any((run / "checkpoints").is_dir() and not is_finished(run) for run in runs.glob("*/*"))):
        assert first.poll() is None and time.monotonic() < deadline, "no run finished"
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    log = first.communicate(timeout=300)[0]
    assert first.returncode == 130, log[-3000:]
    assert "interrupted: stopping" in log and "rerun the same command" in log
    finished = [run for run in runs.glob("*/*") if is_finished(run)]
    partial = [run for run in runs.glob("*/*") if not is_finished(run)]
    assert finished and partial, log[-3000:]
    stamps = {run: (run / "model.zip").stat().st_mtime_ns for run in finished}

    second = subprocess.run(command, env=_environment(), capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"{len(finished)} already done" in second.stdout or "evaluating" in second.stdout
    assert sorted(is_finished(run) for run in runs.glob("*/*")) == [True] * 4
    for run, stamp in stamps.items():  # finished runs were not trained again
        assert (run / "model.zip").stat().st_mtime_ns == stamp
        assert len(yaml.safe_load((run / "config.yaml").read_text())["sessions"]) == 1
    resumed = [run for run in partial if (run / "checkpoints").is_dir()
               and [s["kind"] for s in yaml.safe_load((run / "config.yaml").read_text())["sessions"]] == ["train", "resume"]]
    assert resumed, second.stdout[-3000:]  # an interrupted run continued from its checkpoint
    assert "4 of 4 runs done, 0 failed" in second.stdout
