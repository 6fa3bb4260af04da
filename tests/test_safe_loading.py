"""Loading a run folder or model never runs code from it; checkpoints load directly; resume and divergence
keep the run usable.

Crafted pickles (whose ``__reduce__`` creates a marker file) are planted in every file a loader reads: the
VecNormalize statistics, the checkpoint state, the ``:serialized:`` fields of a model zip's ``data`` and the
tensor files inside the zip. Every loader (``LTCAgent.load``, ``evaluate.py``, ``RecurrentPPO.load``,
``inspect_model_file``, ``collect_traces.py --model``, ``train.py --resume``) must either load (the safe
forms are there) or refuse with one line, and the marker must never appear.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import pickle
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import stable_baselines3
import torch
import yaml

import envs
from agents import LTCAgent, RunFolderError
from ltc_rl.errors import DivergenceError, LtcRlError
from ltc_rl.rl import RecurrentPPO
from ltc_rl.rl.policies import RecurrentActorCriticPolicy
from ltc_rl.runs.layout import checkpoints
from ltc_rl.runs.run_files import CheckpointWarning, latest_checkpoint, resolve_model_files
from ltc_rl.runs.run_state import rewind_monitor_files
from ltc_rl.rl.safe_files import PickleWarning, SAFE, SERIALIZED, read_model_data, save_algorithm
from ltc_rl.runs.serialization import inspect_model_file, load_model, load_vecnormalize
from ltc_rl.runs.config import resolve_config
from ltc_rl.runs.training import resume, train

from conftest import TINY_RUN_HP


SCRIPTS = {name: importlib.import_module(f"ltc_rl.cli.{name}") for name in ("train", "evaluate", "collect_traces")}


def _train(folder: Path, policy: str = "lstm", total: int = 128, **hp) -> Path:
    overrides = {**TINY_RUN_HP, **hp}
    if policy == "mlp":  # stable-baselines3's PPO: no sequences, no recurrent units
        overrides = {k: v for k, v in overrides.items() if k not in ("sequence_length", "policy_kwargs")}
    config = resolve_config("Pendulum-v1", policy, total_timesteps=total, n_envs=1, seed=0, device="cpu",
                            overrides=overrides)
    train(config, folder, progress_bar=False, make_env=envs.make_vec)
    return folder


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory) -> Path:
    """A finished recurrent run (LSTM cell for speed) with normalisation, best/ and checkpoints 0, 64, 128; its
    learning rate decays geometrically (the schedule stable-baselines3 does not have)."""
    return _train(tmp_path_factory.mktemp("safe") / "run", learning_rate="exp_1e-3_1e-5")


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    """A finished stable-baselines3 PPO run (--policy mlp)."""
    return _train(tmp_path_factory.mktemp("safe_mlp") / "run", policy="mlp", total=64)


# ---------------------------------------------------------------------------------------------- payloads
class _Payload:
    """Unpickling this creates ``marker``: the stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _rewrite_zips(run: Path, change) -> None:
    """Rewrite every model zip of ``run``: ``change(name, bytes) -> bytes`` for each archive member."""
    for path in run.rglob("*.zip"):
        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        with zipfile.ZipFile(path, "w") as archive:
            for name, content in members.items():
                archive.writestr(name, change(name, content))


def _data_payload(marker: Path, keep_safe: bool):
    blob = base64.b64encode(pickle.dumps(_Payload(marker))).decode()

    def change(name: str, content: bytes) -> bytes:
        if name != "data":
            return content
        data = json.loads(content)
        for item in data.values():
            if isinstance(item, dict) and SERIALIZED in item:
                item[SERIALIZED] = blob
                if not keep_safe:
                    item.pop(SAFE, None)
        return json.dumps(data).encode()
    return change


def _tensor_payload(marker: Path, member: str):
    buffer = io.BytesIO()
    torch.save(_Payload(marker), buffer)
    return lambda name, content: buffer.getvalue() if name == member else content


def _replace(run: Path, pattern: str, new_suffix: str, content: bytes) -> None:
    for path in list(run.rglob(pattern)):
        path.unlink()
        path.with_name(path.name.removesuffix(Path(pattern).suffix) + new_suffix).write_bytes(content)


def _plant(run: Path, where: str, marker: Path) -> None:
    if where == "data :serialized: fields":
        _rewrite_zips(run, _data_payload(marker, keep_safe=True))
    elif where == "pickle-only data fields":
        _rewrite_zips(run, _data_payload(marker, keep_safe=False))
    elif where in ("policy.pth", "policy.optimizer.pth", "pytorch_variables.pth"):
        _rewrite_zips(run, _tensor_payload(marker, where))
    elif where == "pickled vecnormalize":
        _replace(run, "*vecnormalize.npz", ".pkl", pickle.dumps(_Payload(marker)))
    elif where == "vecnormalize.npz with an object array":
        buffer = io.BytesIO()
        np.savez(buffer, obs0_mean=np.array([_Payload(marker)], dtype=object))
        _replace(run, "*vecnormalize.npz", ".npz", buffer.getvalue())
    elif where == "pickled checkpoint state":
        _replace(run, "*_state.json", ".pkl", pickle.dumps(_Payload(marker)))


def _outcome(call) -> tuple[str, str]:
    """``("loaded", "")`` or ``("refused", the one-line message)``."""
    try:
        call()
    except LtcRlError as error:
        assert "\n" not in str(error)
        return "refused", str(error)
    return "loaded", ""


def _script_outcome(name: str, argv: list[str], capsys) -> tuple[str, str]:
    capsys.readouterr()
    code = SCRIPTS[name].main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 0:
        return "loaded", ""
    errors = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert code == 2 and len(errors) == 1 and errors[0].startswith("error: "), err
    return "refused", errors[0]


def _loaders(run: Path, tmp_path: Path, capsys) -> dict[str, tuple[str, str]]:
    newest = checkpoints(run / "checkpoints")[-1][1]
    return {
        "LTCAgent.load": _outcome(lambda: LTCAgent.load(run)),
        "LTCAgent.load(checkpoint)": _outcome(lambda: LTCAgent.load(newest)),
        "RecurrentPPO.load": _outcome(lambda: RecurrentPPO.load(run / "model.zip", device="cpu")),
        "load_model": _outcome(lambda: load_model(run / "model.zip")),
        "inspect_model_file": _outcome(lambda: inspect_model_file(run / "model.zip")),
        "evaluate.py": _script_outcome("evaluate", ["--model", str(run), "--episodes", "1"], capsys),
        "collect_traces.py": _script_outcome("collect_traces", [
            "--env", "Pendulum-v1", "--model", str(run), "--episodes", "1", "--steps", "5",
            "--out", str(tmp_path / "traces")], capsys),
        "train.py --resume": _script_outcome("train", ["--resume", str(run), "--total-timesteps", "160",
                                                       "--no-progress"], capsys),
    }


PLANTED = ["data :serialized: fields", "pickle-only data fields", "policy.pth", "policy.optimizer.pth",
           "pytorch_variables.pth", "pickled vecnormalize", "vecnormalize.npz with an object array",
           "pickled checkpoint state"]
#: What each loader does with each planted file (all else must refuse): the safe forms make them load.
LOADS = {"data :serialized: fields": "all", "pickled checkpoint state": "all but resume",
         "policy.pth": {"inspect_model_file"}, "policy.optimizer.pth": {"inspect_model_file"},
         "pytorch_variables.pth": {"inspect_model_file"}, "pickled vecnormalize": {"RecurrentPPO.load", "load_model",
                                                                                   "inspect_model_file"},
         "vecnormalize.npz with an object array": {"RecurrentPPO.load", "load_model", "inspect_model_file"},
         "pickle-only data fields": set()}


@pytest.mark.parametrize("where", PLANTED)
def test_no_loader_runs_a_planted_pickle(where, lstm_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(lstm_run, run)
    marker = tmp_path / "PWNED"
    _plant(run, where, marker)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        outcomes = _loaders(run, tmp_path, capsys)
    assert not marker.exists(), f"a loader unpickled the payload planted in {where}: {outcomes}"
    loads = LOADS[where]
    expected = set(outcomes) if loads == "all" else set(outcomes) - {"train.py --resume"} \
        if loads == "all but resume" else loads
    assert {name for name, (result, _) in outcomes.items() if result == "loaded"} == expected, outcomes
    if where.startswith("pickle"):  # the pickled files of older versions: the message names the flag
        assert all("--trust-pickle" in message for result, message in outcomes.values() if result == "refused")


def test_the_trust_flag_loads_an_older_version_s_pickles_with_a_warning(lstm_run, tmp_path, capsys):
    run = tmp_path / "old"
    shutil.copytree(lstm_run, run)
    model = RecurrentPPO.load(run / "model.zip", device="cpu")
    stable_baselines3.common.base_class.BaseAlgorithm.save(model, run / "model.zip")  # cloudpickle only
    vecnormalize = load_vecnormalize(run / "vecnormalize.npz", envs.make_vec("Pendulum-v1", n_envs=1))
    (run / "vecnormalize.npz").unlink()
    (run / "vecnormalize.pkl").write_bytes(pickle.dumps(vecnormalize))  # as older versions wrote it
    with pytest.raises(RunFolderError, match="only as a pickle .* pass --trust-pickle"):
        LTCAgent.load(run)
    with pytest.warns(PickleWarning, match="runs any code the file holds"):
        agent = LTCAgent.load(run, trust_pickle=True)
    assert agent.network.normalize is not None
    result, message = _script_outcome("evaluate", ["--model", str(run), "--episodes", "1"], capsys)
    assert result == "refused" and "--trust-pickle" in message
    assert _script_outcome("evaluate", ["--model", str(run), "--episodes", "1", "--trust-pickle"], capsys)[0] == \
        "loaded"


def test_files_this_project_writes_hold_safe_forms_and_stable_baselines3_still_loads_them(mlp_run, lstm_run):
    with zipfile.ZipFile(mlp_run / "model.zip") as archive:
        data = json.loads(archive.read("data"))
    pickled = [key for key, item in data.items() if isinstance(item, dict) and SERIALIZED in item]
    assert pickled and all(SAFE in data[key] for key in pickled)
    assert not list(mlp_run.rglob("*.pkl")) and not list(lstm_run.rglob("*.pkl"))
    sb3_model = stable_baselines3.PPO.load(mlp_run / "model.zip", device="cpu")  # stock loader, cloudpickle
    ours = load_model(mlp_run / "model.zip")
    assert type(ours) is stable_baselines3.PPO and ours.observation_space == sb3_model.observation_space
    assert ours.lr_schedule(0.5) == sb3_model.lr_schedule(0.5)
    assert LTCAgent.load(mlp_run).cell is None
    recurrent = read_model_data(lstm_run / "model.zip")
    assert issubclass(recurrent["policy_class"], RecurrentActorCriticPolicy)
    assert recurrent["_last_obs"].dtype == np.float32 and recurrent["ep_info_buffer"].maxlen == 100
    assert recurrent["lr_schedule"](0.5) == pytest.approx(1e-4) and recurrent["lr_schedule"](0.0) == pytest.approx(1e-5)


# ---------------------------------------------------------------------------------------------- checkpoints load
def test_a_checkpoint_zip_loads_with_its_own_statistics(lstm_run, capsys):
    newest = checkpoints(lstm_run / "checkpoints")[-1][1]
    files = resolve_model_files(newest)
    assert files.normalizer == newest.with_name(newest.stem + "_vecnormalize.npz")
    assert files.config == lstm_run / "config.yaml"
    agent = LTCAgent.load(newest)
    assert agent.files.model == newest and agent.env_id == "Pendulum-v1"
    assert _script_outcome("evaluate", ["--model", str(newest), "--episodes", "1"], capsys)[0] == "loaded"
    assert resolve_model_files(lstm_run, best=True).model == lstm_run / "best" / "model.zip"
    assert resolve_model_files(lstm_run, checkpoint=64).model.name == "ckpt_64_steps.zip"
    result, message = _script_outcome("evaluate", ["--model", str(lstm_run), "--load-checkpoint", "65"], capsys)
    assert result == "refused" and "no checkpoint at 65 steps (available: 0, 64, 128)" in message
    assert _script_outcome("evaluate", ["--model", str(lstm_run), "--load-checkpoint", "64", "--episodes", "1"],
                           capsys)[0] == "loaded"


def test_a_run_folder_without_model_zip_falls_back_to_its_newest_checkpoint(lstm_run, tmp_path, capsys):
    run = tmp_path / "stopped"
    shutil.copytree(lstm_run, run)
    (run / "model.zip").unlink()
    with pytest.warns(CheckpointWarning, match=r"has no model.zip \(the run did not finish\); using its newest "
                                               r"checkpoint ckpt_128_steps.zip \(128 steps\)"):
        agent = LTCAgent.load(run)
    assert agent.files.model.name == "ckpt_128_steps.zip"
    capsys.readouterr()
    assert SCRIPTS["evaluate"].main(["--model", str(run), "--episodes", "1"]) == 0
    assert "warning: " in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- resume
def test_a_run_checkpoints_step_zero_and_a_run_without_checkpoint_starts_again(tmp_path):
    run = _train(tmp_path / "run", total=64, checkpoint_freq=10_000, eval_freq=0)
    assert [steps for steps, _ in checkpoints(run / "checkpoints")] == [0, 64]
    for path in [run / "checkpoints", run / "model.zip", run / "vecnormalize.npz"]:  # killed before step 0
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.warns(UserWarning, match="has no checkpoint .*starting it again from step 0"):
        result = resume(run, progress_bar=False, make_env=envs.make_vec)
    assert result.timesteps == 64 and (run / "model.zip").is_file()
    assert [s["kind"] for s in yaml.safe_load((run / "config.yaml").read_text())["sessions"]] == ["train", "resume"]


def test_resume_runs_the_evaluation_a_kill_lost_and_drops_a_best_model_of_a_dropped_evaluation(lstm_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(lstm_run, run)
    with np.load(run / "evaluations.npz") as saved:  # evaluations at 64 and 128; the kill lost the one at 128
        history = {key: saved[key][:1] for key in saved.files}
    np.savez(run / "evaluations.npz", **history)
    for path in run.glob("checkpoints/ckpt_128_steps*"):
        path.unlink()  # ... and the checkpoint at 128 too, so training continues from 64
    shutil.copy(lstm_run / "checkpoints" / "ckpt_128_steps.zip", run / "best" / "model.zip")  # best from step 128
    with pytest.warns(UserWarning, match="removed .*best/model.zip: it is the model of an evaluation after timestep 64"):
        resume(run, total_timesteps=128, progress_bar=False, make_env=envs.make_vec)
    assert list(np.load(run / "evaluations.npz")["timesteps"]) == [64, 128]
    assert inspect_model_file(run / "best" / "model.zip")["num_timesteps"] == 128  # written by the new evaluation

    run2 = tmp_path / "run2"
    shutil.copytree(lstm_run, run2)
    np.savez(run2 / "evaluations.npz", **history)  # checkpoint at 128 written, evaluation at 128 lost
    resume(run2, total_timesteps=160, progress_bar=False, make_env=envs.make_vec)
    assert list(np.load(run2 / "evaluations.npz")["timesteps"])[:2] == [64, 128]


def test_a_checkpoint_with_nan_weights_is_not_the_last_good_one(lstm_run, tmp_path):
    folder = tmp_path / "checkpoints"
    shutil.copytree(lstm_run / "checkpoints", folder)
    model = RecurrentPPO.load(folder / "ckpt_128_steps.zip", device="cpu")
    with torch.no_grad():
        next(model.policy.parameters()).fill_(float("nan"))
    with open(folder / "ckpt_128_steps.zip", "wb") as handle:
        save_algorithm(model, handle)  # bypassing save_model's refusal, as a damaged file would
    with pytest.warns(CheckpointWarning, match="ckpt_128_steps.zip: .*holds NaN/inf"):
        assert latest_checkpoint(folder)[0] == 64


def test_rewinding_monitor_files_never_leaves_the_folder(tmp_path):
    outside = tmp_path / "precious.monitor.csv"
    outside.write_text("keep me whole\n")
    monitor = tmp_path / "run" / "monitor"
    monitor.mkdir(parents=True)
    (monitor / "0.monitor.csv").symlink_to(outside)
    (monitor / "1.monitor.csv").write_text("header\nrow\n")
    cut = rewind_monitor_files(monitor, {"0.monitor.csv": 3, "../../precious.monitor.csv": 3, "1.monitor.csv": 7})
    assert cut == [monitor / "1.monitor.csv"] and outside.read_text() == "keep me whole\n"


# ---------------------------------------------------------------------------------------------- divergence
def _nan_values_in_training(monkeypatch, policy_class) -> None:
    """The value head returns NaN inside the update only (rollouts stay finite), from the 2nd update on."""
    original = policy_class.evaluate_actions
    calls = []

    def poisoned(self, *args, **kwargs):
        values, log_prob, entropy = original(self, *args, **kwargs)
        calls.append(1)
        return (values * float("nan") if len(calls) > 1 else values), log_prob, entropy

    monkeypatch.setattr(policy_class, "evaluate_actions", poisoned)


@pytest.mark.parametrize("policy", ["lstm", "mlp"])
def test_divergence_inside_an_update_is_one_line_and_keeps_a_finite_model(policy, monkeypatch, tmp_path, capsys):
    from stable_baselines3.common.policies import ActorCriticPolicy

    _nan_values_in_training(monkeypatch, RecurrentActorCriticPolicy if policy == "lstm" else ActorCriticPolicy)
    run = tmp_path / "run"
    argv = ["--env", "Pendulum-v1", "--policy", policy, "--total-timesteps", "256", "--n-envs", "1", "--seed", "0",
            "--output", str(run), "--no-progress", "--hp", "n_steps=32", "--hp", "batch_size=16",
            "--hp", "n_epochs=2", "--hp", "eval_freq=0", "--hp", "checkpoint_freq=32",
            *(["--hp", "sequence_length=8", "--hp", "policy_kwargs.units=4"] if policy == "lstm" else [])]
    result, message = _script_outcome("train", argv, capsys)
    assert result == "refused" and message.startswith("error: training diverged in the update at timestep 32: a "
                                                      "minibatch gave parameter"), message
    assert "and was not applied" in message and "ckpt_32_steps.zip (32 steps) is kept" in message
    assert not (run / "model.zip").exists()
    for _, path in checkpoints(run / "checkpoints"):
        assert all(torch.isfinite(p).all() for p in load_model(path).policy.parameters())


def test_recurrent_ppo_stops_at_the_first_non_finite_minibatch_without_the_pipeline(monkeypatch):
    _nan_values_in_training(monkeypatch, RecurrentActorCriticPolicy)
    model = RecurrentPPO("MlpGruPolicy", "Pendulum-v1", n_steps=16, batch_size=16, sequence_length=8, n_epochs=1,
                         policy_kwargs={"units": 4}, seed=0, device="cpu")
    with pytest.raises(DivergenceError, match="a minibatch gave parameter .* NaN/inf gradient"):
        model.learn(64)
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    assert RecurrentPPO.load(buffer, device="cpu").num_timesteps == model.num_timesteps
