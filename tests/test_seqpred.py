"""The offline sequence-prediction study: data protocol, error cases, training, quick mode, trace collection."""

from __future__ import annotations

import csv
import importlib
import math

import numpy as np
import pytest
import torch
from conftest import CHEETAH_DATA, requires_cheetah_data

from ltc_rl import wirings
from ltc_rl.seqpred import (SEQPRED_MODELS, build_predictor, collect_traces, cut_windows, learning_rate_for,
                            list_traces, load_splits, prediction_errors, train_predictor)
from ltc_rl.seqpred.training import TrainConfig


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small sequential models: one thread avoids oversubscribing the shared cores (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _script(name: str):
    return importlib.import_module(f"ltc_rl.cli.{name.removesuffix('.py')}").main


def _write_traces(folder, count, steps=60, obs_dim=3, order=None):
    """Trace k holds value 1000 * k + t in every column, so windows reveal their file and start."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in (order if order is not None else range(count)):
        trace = np.repeat((1000.0 * k + np.arange(steps))[:, None], obs_dim, axis=1)
        np.save(folder / f"trace_{k:04d}.npy", trace)
    return folder


def test_split_follows_the_papers_protocol(tmp_path):
    # written in shuffled order: the split must come from the sorted names
    order = np.random.default_rng(0).permutation(27)
    folder = _write_traces(tmp_path / "traces", 27, order=order)
    splits = load_splits(folder)
    assert [p.name for p in splits.valid.files] == [f"trace_{k:04d}.npy" for k in range(5)]
    assert [p.name for p in splits.test.files] == [f"trace_{k:04d}.npy" for k in range(5, 15)]
    assert [p.name for p in splits.train.files] == [f"trace_{k:04d}.npy" for k in range(15, 25)]
    # 60 steps: window starts range(0, 60 - 32 - 1, 10) = 0, 10, 20
    assert splits.valid.x.shape == (5 * 3, 32, 3) and splits.test.x.shape == (10 * 3, 32, 3)
    assert splits.train.x.shape == (10 * 3, 32, 3) and splits.obs_dim == 3 and splits.train.x.dtype == torch.float32
    first = splits.train.x[0, :, 0]
    torch.testing.assert_close(first, torch.arange(32, dtype=torch.float32) + 15000.0)
    starts = splits.train.x[:3, 0, 0] - 15000.0
    assert starts.tolist() == [0.0, 10.0, 20.0]
    torch.testing.assert_close(splits.train.y, splits.train.x + 1.0)  # the next observation at every step


def test_cut_windows_matches_the_papers_count():
    trace = np.arange(1000 * 2, dtype=np.float64).reshape(1000, 2)
    x, y = cut_windows(trace, seq_len=32, stride=10)
    assert x.shape == (97, 32, 2) and y.shape == (97, 32, 2)
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    np.testing.assert_array_equal(x[-1, 0], trace[960])


def test_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_splits(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .npy files"):
        list_traces(tmp_path / "empty")


def test_too_few_files_is_a_clear_error(tmp_path):
    folder = _write_traces(tmp_path / "few", 7)
    with pytest.raises(ValueError, match=r"holds 7 .npy files but the split needs 25"):
        load_splits(folder)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((60, 3, 2)), "2-D"),
    (np.zeros((20, 3)), "at least 34 are needed"),
    (np.full((60, 3), np.nan), "non-finite"),
    (np.zeros((60, 4)), "disagree on the observation size"),
])
def test_wrong_trace_shapes_are_clear_errors(tmp_path, bad, message):
    folder = _write_traces(tmp_path / "traces", 25)
    np.save(folder / "trace_0017.npy", bad)  # a training file
    with pytest.raises(ValueError, match=message):
        load_splits(folder)


@pytest.mark.parametrize("kind", SEQPRED_MODELS)
def test_every_model_predicts_every_step(kind):
    model = build_predictor(kind, obs_dim=5, units=8, seed=0)
    assert model(torch.randn(3, 7, 5)).shape == (3, 7, 5)
    assert learning_rate_for(kind) == (0.01 if kind == "ltc" else 0.001)


def test_sparsity_uses_a_random_wiring_for_ltc_and_masks_for_the_others():
    ltc = build_predictor("ltc", obs_dim=5, units=16, sparsity=0.5, seed=1)
    assert isinstance(ltc.cell.wiring, wirings.Random)
    assert ltc.cell.wiring.synapse_count == 128 and ltc.cell.output_size == 16
    lstm = build_predictor("lstm", obs_dim=5, units=16, sparsity=0.5, seed=1)
    weight = lstm.cell.cell.weight_hh
    zeros = weight == 0
    assert 0.4 < zeros.float().mean() < 0.6
    optimizer = torch.optim.Adam(lstm.parameters(), lr=0.1)
    lstm(torch.randn(2, 4, 5)).square().mean().backward()
    optimizer.step()
    lstm.apply_weight_constraints()
    assert torch.equal(weight == 0, zeros)  # the pruned weights stay pruned


def test_training_keeps_the_best_validation_checkpoint(tmp_path):
    # 25 noisy sine traces: learnable, so validation error must fall
    rng = np.random.default_rng(0)
    folder = tmp_path / "sines"
    folder.mkdir()
    for k in range(25):
        t = np.arange(80)[:, None] * 0.3 + rng.uniform(0, 6, size=(1, 2))
        np.save(folder / f"trace_{k:04d}.npy", np.sin(t) + 0.01 * rng.standard_normal((80, 2)))
    splits = load_splits(folder, seq_len=16, stride=4)
    model = build_predictor("lstm", splits.obs_dim, units=16, seed=0)
    seen = []
    result, best_state = train_predictor(model, splits, TrainConfig(learning_rate=0.01, epochs=6, batch_size=8),
                                         name="lstm", on_epoch=seen.append)
    assert [r["epoch"] for r in seen] == list(range(1, 7)) and len(result.history) == 7
    valid = [h["valid_mse"] for h in result.history]
    assert result.best_epoch == int(np.argmin(valid)) and result.valid_mse == min(valid)
    assert valid[result.best_epoch] < valid[0]
    # the returned errors are the best checkpoint's, and the model holds that checkpoint
    model.load_state_dict(best_state)
    test_mse, test_mae = prediction_errors(model, splits.test)
    assert math.isclose(result.test_mse, test_mse, rel_tol=1e-6) and math.isclose(result.test_mae, test_mae,
                                                                                   rel_tol=1e-6)
    assert result.params == sum(p.numel() for p in model.parameters()) and not result.diverged


@requires_cheetah_data
def test_quick_mode_on_the_papers_data(tmp_path):
    out = tmp_path / "study"
    _script("seqpred.py")(["--data", str(CHEETAH_DATA), "--models", "ltc,lstm", "--seeds", "1", "--epochs", "2",
                           "--units", "8", "--out", str(out)])
    table = (out / "results.md").read_text()
    assert "| LTC |" in table and "| LSTM |" in table and "2.308 +- 0.015" in table and "epoch" in table
    assert "not comparable to the paper (2 epochs; the paper trains 200)" in table and "reproduced" not in table
    with (out / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["ltc", "lstm"]
    assert all(math.isfinite(float(r["test_mse_mean"])) and float(r["test_mse_mean"]) > 0 for r in rows)
    with (out / "history.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2 * 3  # epochs 0..2 for two runs
    assert (out / "valid_curves.png").read_bytes()[:4] == b"\x89PNG"
    state = torch.load(out / "checkpoints" / "ltc_seed0.pt")
    build_predictor("ltc", 17, units=8).load_state_dict(state)


def test_existing_out_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    (out / "results.md").write_text("precious")
    assert _script("seqpred.py")(["--data", str(tmp_path), "--policies", "ltc", "--out", str(out)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (out / "results.md").read_text() == "precious"


def test_missing_data_says_where_to_get_the_papers_traces(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LTC_RL_CHEETAH_DATA", str(tmp_path / "nowhere"))
    assert _script("seqpred.py")(["--models", "ltc", "--out", str(tmp_path / "o")]) == 2  # the data's default
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere' does not exist" in err[0], err
    assert "raminmh/liquid_time_constant_networks" in err[0] and "LTC_RL_CHEETAH_DATA" in err[0]


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    assert _script("seqpred.py")(["--data", str(tmp_path), "--models", "ltc,transformer", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: unknown or missing models")


def test_collected_traces_feed_the_loader(tmp_path):
    import gymnasium as gym

    class CountingPolicy:
        def __init__(self, space):
            self.space, self.resets = space, 0

        def reset(self):
            self.resets += 1

        def __call__(self, obs):
            return np.zeros(self.space.shape, dtype=np.float32)

    env_factory = lambda: gym.make("Pendulum-v1")  # noqa: E731
    policy = CountingPolicy(env_factory().action_space)
    files = collect_traces(env_factory, policy, episodes=3, out_dir=tmp_path / "pendulum", max_steps=40,
                           progress=False)
    assert policy.resets == 3 and [f.name for f in files] == ["trace_0000.npy", "trace_0001.npy", "trace_0002.npy"]
    trace = np.load(files[0])
    assert trace.shape == (40, 3) and trace.dtype == np.float64
    splits = load_splits(tmp_path / "pendulum", seq_len=8, stride=5, n_valid=1, n_test=1, n_train=1)
    assert splits.obs_dim == 3 and len(splits.train) == 7  # starts range(0, 40 - 8 - 1, 5)
    with pytest.raises(FileExistsError, match="overwrite"):
        collect_traces(env_factory, None, episodes=1, out_dir=tmp_path / "pendulum", max_steps=5, progress=False)


def test_collect_traces_script_random_policy_on_half_cheetah(tmp_path):
    _script("collect_traces.py")(["--env", "HalfCheetah-v4", "--episodes", "2", "--steps", "50", "--out",
                                  str(tmp_path / "cheetah")])
    files = list_traces(tmp_path / "cheetah")
    assert len(files) == 2
    traces = [np.load(f) for f in files]
    assert all(t.shape == (50, 17) for t in traces) and not np.allclose(traces[0], traces[1])


def test_trained_run_folder_drives_the_collection(tmp_path):
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from ltc_rl.errors import ModelFileError
    from ltc_rl.rl import RecurrentPPO
    from ltc_rl.runs.callbacks import save_vecnormalize
    from agents.evaluation import load_trace_policy

    run = tmp_path / "run"
    model = RecurrentPPO("MlpLstmPolicy", "Pendulum-v1", n_steps=16, batch_size=16, sequence_length=8,
                         policy_kwargs={"units": 8}, device="cpu", seed=0)
    model.save(run / "model.zip")
    normalizer = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]))
    normalizer.obs_rms.mean[:] = 5.0  # visible shift: the policy must see normalised observations
    save_vecnormalize(normalizer, run / "vecnormalize.npz")
    policy = load_trace_policy(run)
    assert policy.agent.network.normalized and float(policy.agent.network.obs_mean[0]) == 5.0
    files = collect_traces(lambda: gym.make("Pendulum-v1"), policy, episodes=2, out_dir=tmp_path / "traces",
                           max_steps=20, progress=False)
    trace = np.load(files[0])
    assert trace.shape == (20, 3) and np.all(np.abs(trace[:, :2]) <= 1.0)  # raw cos / sin, not normalised
    assert policy.agent.state is not None and policy.agent.state.shape[0] == 1
    with pytest.raises(ModelFileError, match="does not exist"):
        load_trace_policy(tmp_path / "missing")
    (tmp_path / "two").mkdir()
    for name in ("a.zip", "b.zip"):
        (tmp_path / "two" / name).write_bytes(b"")
    with pytest.raises(ModelFileError, match="has no model.zip and no checkpoint"):
        load_trace_policy(tmp_path / "two")


@pytest.mark.slow
@requires_cheetah_data
def test_quick_mode_with_every_model_and_sparsity(tmp_path):
    out = tmp_path / "study"
    _script("seqpred.py")(["--data", str(CHEETAH_DATA), "--models", ",".join(SEQPRED_MODELS), "--seeds", "2",
                           "--epochs", "2", "--sparsity", "0.5", "--workers", "2", "--out", str(out)])
    with (out / "runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    assert sorted({r["model"] for r in runs}) == sorted(SEQPRED_MODELS) and len(runs) == 12
    assert all(math.isfinite(float(r["test_mse"])) for r in runs)
    table = (out / "results.md").read_text()
    assert "Ordering LTC < LSTM < CT-RNN" in table and "Partial" not in table
    assert len(list((out / "checkpoints").glob("*.pt"))) == 12
