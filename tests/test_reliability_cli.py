"""Bad input to the command-line entry points: one readable ``error: ...`` line, exit code 2, run
folders untouched (the property-based fuzz of every script is in test_fuzz.py)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ltc_rl.runs.run_state import monitor_sizes, rewind_monitor_files

from conftest import REPO_ROOT, tiny_flags

SCRIPTS = REPO_ROOT / "scripts"
TINY = tiny_flags(n_eval_episodes=1, eval_freq=0, checkpoint_freq=128, policy_kwargs__units=4)


def _run(main, argv: list[str]) -> tuple[int, str]:
    """``main(argv)``'s exit code and stderr; argparse's own exit counts as its code."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    return (0 if code is None else code), err.getvalue()


def _error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip() and not line.startswith("warning: ")]
    assert lines and "Traceback" not in err, err
    return lines[-1]


def _fails_cleanly(main, argv: list[str], match: str) -> str:
    code, err = _run(main, argv)
    line = _error_line(err)
    assert code == 2 and line.startswith("error: ") and match in line, (code, err)
    assert [text for text in err.strip().splitlines() if not text.startswith("warning: ")] == [line], err
    return line


def _fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def scripts():
    return {name: importlib.import_module(f"ltc_rl.cli.{name}") for name in ("train", "seqpred", "collect_traces")}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, scripts):
    """A short finished CartPole run (checkpoints at 128 and 256 steps)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    code, err = _run(scripts["train"].main, ["--env", "CartPole-v1", "--total-timesteps", "256", "--n-envs", "2",
                                             "--seed", "0", "--output", str(run), *TINY])
    assert code == 0, err
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def _break(run: Path, how: str) -> None:
    config = run / "config.yaml"
    if how == "unparsable config":
        config.write_text("{{{ not: yaml")
    elif how == "config is a list":
        config.write_text("- env_id: CartPole-v1\n")
    elif how == "config of another task":
        config.write_text(config.read_text().replace("env_id: CartPole-v1", "env_id: Pendulum-v1"))
    elif how == "every checkpoint corrupt":
        for path in (run / "checkpoints").glob("ckpt_*_steps.zip"):
            path.write_bytes(path.read_bytes()[:100])
    elif how == "foreign checkpoints":
        for path in (run / "checkpoints").glob("ckpt_*_steps.zip"):
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("weights.bin", b"\x00" * 10)
    elif how == "pickled checkpoint state":  # an older version's state file: not unpickled unless trusted
        for path in (run / "checkpoints").glob("ckpt_*_steps_state.json"):
            path.with_name(path.name.replace(".json", ".pkl")).write_bytes(pickle.dumps({"random": {}}))
            path.unlink()


@pytest.mark.parametrize("how, extra, match", [
    ("unparsable config", ["--total-timesteps", "512"], "config.yaml is unreadable (ParserError)"),
    ("config is a list", ["--total-timesteps", "512"], "config.yaml is not a run configuration"),
    ("config of another task", ["--total-timesteps", "512"], "was trained with observation space"),
    ("every checkpoint corrupt", ["--total-timesteps", "512"], "no readable checkpoint in"),
    ("foreign checkpoints", ["--total-timesteps", "512"], "no readable checkpoint in"),
    ("pickled checkpoint state", ["--total-timesteps", "512"], "pass --trust-pickle"),
    ("finished", [], "already reached 256 of 256 steps; pass a larger --total-timesteps"),
    ("finished", ["--total-timesteps", "0"], "total_timesteps must be an integer >= 1"),
    ("finished", ["--total-timesteps", "512", "--device", "tpu"], "unknown device 'tpu'"),
    ("finished", ["--total-timesteps", "512", "--hp", "n_steps=64"], "drop --hp"),
])
def test_bad_resume_is_one_line_and_leaves_the_run_folder_untouched(finished_run, tmp_path, scripts, how, extra, match):
    run = _copy(finished_run, tmp_path)
    _break(run, how)
    before = _fingerprint(run)
    _fails_cleanly(scripts["train"].main, ["--resume", str(run), "--no-progress", *extra], match)
    assert _fingerprint(run) == before


def test_output_folder_that_exists_or_cannot_be_created(finished_run, tmp_path, scripts):
    before = _fingerprint(finished_run)
    _fails_cleanly(scripts["train"].main, ["--env", "CartPole-v1", "--output", str(finished_run), *TINY],
                   "already exists; pass --resume")
    assert _fingerprint(finished_run) == before
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    _fails_cleanly(scripts["train"].main, ["--env", "CartPole-v1", "--output", str(blocker / "run"), *TINY],
                   "cannot create the output folder")
    assert blocker.read_text() == "x"


def test_monitor_files_are_cut_back_to_the_checkpoint(tmp_path):
    monitor = tmp_path / "monitor"
    monitor.mkdir()
    (monitor / "0.monitor.csv").write_text('#{"t_start": 0}\nr,l,t\n1.0,10,0.1\n')
    sizes = monitor_sizes(monitor)
    with (monitor / "0.monitor.csv").open("a") as handle:
        handle.write("2.0,20,0.2\n")
    assert rewind_monitor_files(monitor, sizes) == [monitor / "0.monitor.csv"]
    assert (monitor / "0.monitor.csv").read_text().endswith("1.0,10,0.1\n")


# ------------------------------------------------------------------------------------------ seqpred data
def _trace_folder(tmp_path: Path, how: str) -> Path:
    folder = tmp_path / how.replace(" ", "_")
    if how == "missing":
        return folder
    folder.mkdir()
    if how == "empty":
        return folder
    count = 7 if how == "too few files" else 25
    rng = np.random.default_rng(0)
    for index in range(count):
        np.save(folder / f"trace_{index:04d}.npy", rng.normal(size=(60, 3)))
    bad = folder / "trace_0003.npy"
    if how == "truncated file":
        bad.write_bytes(bad.read_bytes()[:90])
    elif how == "not an array":
        bad.write_text("steps,x\n1,2\n")
    elif how == "1-D trace":
        np.save(bad, np.zeros(60))
    elif how == "NaN values":
        np.save(bad, np.full((60, 3), np.nan))
    elif how == "mixed widths":
        np.save(bad, np.zeros((60, 4)))
    elif how == "pickled objects":
        np.save(bad, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return folder


@pytest.mark.parametrize("how, match", [
    ("missing", "does not exist"), ("empty", "holds no .npy files"), ("too few files", "holds 7 .npy files"),
    ("truncated file", "trace_0003.npy' is unreadable"), ("not an array", "trace_0003.npy' is unreadable"),
    ("1-D trace", "has shape (60,)"), ("NaN values", "non-finite"), ("mixed widths", "disagree on the observation"),
    ("pickled objects", "is unreadable"),
])
def test_missing_or_malformed_seqpred_data_is_one_line(tmp_path, scripts, how, match):
    folder = _trace_folder(tmp_path, how)
    out = tmp_path / "out"
    _fails_cleanly(scripts["seqpred"].main, ["--data", str(folder), "--models", "ltc", "--seeds", "1",
                                             "--epochs", "1", "--units", "4", "--out", str(out)], match)
    assert not out.exists()


@pytest.mark.parametrize("argv, match", [
    (["--models", "ltc,gpt"], "unknown or missing models ['gpt']"),
    (["--seeds", "0"], "must be >= 1"), (["--epochs", "-2"], "must be >= 1"),
    (["--sparsity", "1.5"], "sparsity must lie in [0, 1)"), (["--sparsity", "nan"], "sparsity must lie in [0, 1)"),
    (["--device", "tpu"], "unknown device 'tpu'"), (["--device", "meta"], "unsupported device 'meta'"),
])
def test_bad_seqpred_options_are_one_line(tmp_path, scripts, argv, match):
    _fails_cleanly(scripts["seqpred"].main, ["--data", str(tmp_path), *argv, "--out", str(tmp_path / "o")], match)


# ------------------------------------------------------------------------------------------ collect_traces
def test_bad_collect_traces_input_is_one_line_and_keeps_old_traces(finished_run, tmp_path, scripts):
    main = scripts["collect_traces"].main
    out = tmp_path / "traces"
    out.mkdir()
    np.save(out / "trace_0000.npy", np.zeros((5, 3)))
    before = _fingerprint(out)
    _fails_cleanly(main, ["--env", "Pendulum-v9", "--out", str(out), "--overwrite"], "unknown environment id")
    _fails_cleanly(main, ["--env", "Pendulum-v1", "--out", str(out)], "already holds 1 .npy files")
    _fails_cleanly(main, ["--env", "Pendulum-v1", "--episodes", "0", "--out", str(out)], "must be >= 1")
    _fails_cleanly(main, ["--env", "Pendulum-v1", "--model", str(finished_run / "model.zip"), "--out", str(out),
                          "--overwrite"], "was trained with observation space")
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes((finished_run / "model.zip").read_bytes()[:500])
    _fails_cleanly(main, ["--model", str(corrupt), "--out", str(out)], "not a readable model file")
    _fails_cleanly(main, ["--model", str(tmp_path / "nothing"), "--out", str(out)], "does not exist")
    assert _fingerprint(out) == before
