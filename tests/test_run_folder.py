"""RunFolder: the one reader of a run folder (configuration, model files, statistics, checkpoints, loading)."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

import envs
from ltc_rl.rl import RecurrentPPO
from ltc_rl.runs.config import RunConfig
from ltc_rl.runs.layout import BEST_FOLDER, CHECKPOINT_FOLDER, MODEL_FILE, checkpoint_files
from ltc_rl.runs.run_folder import RunFolder, RunFolderError
from ltc_rl.runs.training import validate


def test_config_is_the_typed_configuration_the_run_was_trained_with(tiny_run):
    run = RunFolder(tiny_run)
    config = run.config
    assert isinstance(config, RunConfig)
    assert (config.env_id, config.policy, config.total_timesteps, config.n_envs) == ("Pendulum-v1", "ltc", 128, 2)
    assert config.time_unit == pytest.approx(0.05)  # set by validate() before the run folder was written
    assert run.document["sessions"][0]["kind"] == "train"  # the raw document keeps the bookkeeping
    # the best/ and checkpoints/ folders and the zips in them belong to the same run and configuration
    for path in (tiny_run / BEST_FOLDER, tiny_run / CHECKPOINT_FOLDER, tiny_run / BEST_FOLDER / MODEL_FILE):
        assert RunFolder(path).root == tiny_run and RunFolder(path).config == config


def test_model_paths_and_checkpoints(tiny_run):
    run = RunFolder(tiny_run)
    assert run.model_path() == tiny_run / MODEL_FILE
    assert run.model_path(best=True) == tiny_run / BEST_FOLDER / MODEL_FILE
    assert [steps for steps, _ in run.checkpoints()] == [0, 64, 128]
    assert run.model_path(checkpoint=64) == checkpoint_files(tiny_run / CHECKPOINT_FOLDER, 64)[0]
    assert run.latest_checkpoint()[0] == 128
    with pytest.raises(RunFolderError, match="no checkpoint at 96 steps .*available: 0, 64, 128"):
        run.model_path(checkpoint=96)


def test_model_policy_and_statistics_agree(tiny_run):
    run = RunFolder(tiny_run)
    stats, normalization = run.observation_stats(), run.normalization()
    np.testing.assert_allclose(stats.mean, normalization.flat.mean)
    assert stats.clip == normalization.clip_obs
    venv = envs.make_vec("Pendulum-v1", n_envs=1, seed=0)
    try:
        model = run.load_model(venv, device="cpu")
    finally:
        venv.close()
    assert isinstance(model, RecurrentPPO) and model.num_timesteps == 128
    policy = run.load_policy()
    for name, value in model.policy.state_dict().items():
        assert torch.equal(value, policy.state_dict()[name]), name


def test_a_bare_model_zip_has_no_configuration(tiny_run, tmp_path):
    shutil.copy(tiny_run / MODEL_FILE, tmp_path / "model.zip")
    run = RunFolder(tmp_path / "model.zip")
    assert run.config is None and run.document == {} and run.observation_stats() is None
    assert run.load_policy().observation_space.shape == (3,)


def test_validate_returns_a_validated_copy_and_leaves_its_argument_alone(tiny_run):
    config = replace(RunFolder(tiny_run).config, time_unit=None)
    validated = validate(config, envs.make_vec)
    assert config.time_unit is None and validated.time_unit == pytest.approx(0.05)
    assert replace(validated, time_unit=None) == config
