"""Training callbacks of the run-folder pipeline: atomic checkpoints and periodic evaluation.

Every file is written atomically (:mod:`ltc_rl.runs.files`), so a run killed at any moment leaves either
the previous or the new version, never a torn one. A checkpoint is ``ckpt_<steps>_steps.zip`` (written last: its presence marks
a complete checkpoint) plus its VecNormalize statistics (``.npz``) and its training state (random generators,
log sizes: :mod:`ltc_rl.runs.run_state`, as JSON), all in forms that load without unpickling
(:mod:`ltc_rl.rl.safe_files`); :func:`~ltc_rl.runs.run_files.latest_checkpoint` skips unreadable ones with a
warning. No model or statistics holding NaN or infinity is ever written
(:class:`~ltc_rl.errors.DivergenceError` instead).
"""

from __future__ import annotations

import math
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from tqdm.auto import tqdm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, sync_envs_normalization

from ltc_rl.errors import DivergenceError, LtcRlWarning, ModelFileError
from ltc_rl.rl.evaluation import evaluate
from ltc_rl.rl.guards import non_finite_state
from ltc_rl.reporting import counted
from ltc_rl.rl.safe_files import NormalizationStats, save_algorithm, write_state
from ltc_rl.runs.files import atomic_write
from ltc_rl.runs.layout import (EVALUATIONS_FILE, LEGACY_VECNORMALIZE_FILE, MODEL_FILE, VECNORMALIZE_FILE,
                                checkpoint_files, checkpoint_members, checkpoints)
from ltc_rl.runs.run_state import capture_training_state
from ltc_rl.runs.serialization import inspect_model_file

__all__ = ["save_model", "save_vecnormalize", "RunCheckpointCallback", "RunEvaluationCallback", "ProgressBar"]


def save_model(model: BaseAlgorithm, path: str | Path) -> Path:
    """The model (as ``model.save`` writes it, every field also in its safe form) to ``path`` atomically;
    :class:`DivergenceError` (and ``path`` untouched) if the model holds NaN or infinity."""
    problem = non_finite_state(model)
    if problem is not None:
        raise DivergenceError(f"refusing to write {path}: {problem} (training diverged); the previous file is kept.")
    return atomic_write(path, lambda handle: save_algorithm(model, handle))


def save_vecnormalize(venv: VecNormalize, path: str | Path) -> Path:
    """The normalisation statistics of ``venv`` as an ``.npz`` of plain arrays, atomically; :class:`DivergenceError`
    (and ``path`` untouched) if they hold NaN or infinity."""
    stats = NormalizationStats.from_vecnormalize(venv)
    problem = stats.non_finite()
    if problem is not None:
        raise DivergenceError(f"refusing to write {path}: the VecNormalize {problem}; the previous file is kept.")
    return atomic_write(path, stats.write)


class RunCheckpointCallback(BaseCallback):
    """Saves the model (policy, optimiser, timestep counter) and VecNormalize statistics every ``save_freq`` steps.

Unlike SB3's ``CheckpointCallback`` it writes a complete, resumable checkpoint of the run folder: statistics
and training state beside the zip, all atomically and without pickles, never a model holding NaN.

    ``save_freq`` counts environment steps over all copies (a fresh run also saves step 0); only the ``keep``
    newest checkpoints stay.
    The statistics and the training state (random generators; sizes of the Monitor CSVs in ``monitor_dir``)
    are written before the model zip, whose presence marks a complete checkpoint. A model holding NaN or
    infinity raises :class:`DivergenceError` before anything is written.
    """

    def __init__(self, save_freq: int, folder: str | Path, keep: int = 3,
                 monitor_dir: str | Path | None = None) -> None:
        super().__init__()
        self.save_freq, self.folder, self.keep = int(save_freq), Path(folder), int(keep)
        self.monitor_dir = monitor_dir
        self._last_saved = 0

    def _init_callback(self) -> None:
        self._last_saved = self.model.num_timesteps

    def _on_training_start(self) -> None:
        """A fresh run checkpoints step 0 at once, so that it can be resumed however early it is stopped."""
        if self.save_freq > 0 and self.model.num_timesteps == 0:
            self.save()

    def save(self) -> Path:
        """Write a checkpoint of the model now (named by its current ``num_timesteps``); returns the zip's path."""
        steps = self.model.num_timesteps
        problem = non_finite_state(self.model)
        if problem is not None:
            raise DivergenceError(f"refusing to write a checkpoint at timestep {steps}: {problem}; the previous "
                                  "checkpoints are kept.")
        model_path, stats_path, state_path = checkpoint_files(self.folder, steps)
        venv = self.model.get_vec_normalize_env()
        if venv is not None:
            save_vecnormalize(venv, stats_path)
        state = capture_training_state(self.model, self.monitor_dir)
        atomic_write(state_path, lambda handle: write_state(state, handle))
        save_model(self.model, model_path)
        self._last_saved = steps
        self._prune()
        return model_path

    def _prune(self) -> None:
        found = [model for _, model in checkpoints(self.folder)]
        for model in found[:-self.keep] if self.keep > 0 else []:
            for path in checkpoint_members(model):
                if not path.is_dir() or path.is_symlink():  # a stray folder of that name is not this run's to delete
                    path.unlink(missing_ok=True)

    def _on_step(self) -> bool:
        if self.save_freq > 0 and self.num_timesteps - self._last_saved >= self.save_freq:
            self.save()
        return True


class RunEvaluationCallback(BaseCallback):
    """Evaluates the deterministic policy every ``eval_freq`` steps; keeps the history and the best model.

    Unlike SB3's ``EvalCallback`` it carries the recurrent state and elapsed time through the episodes, continues
    the history of a resumed run, and writes every file of the run folder atomically.

    Uses :func:`ltc_rl.rl.evaluation.evaluate` (recurrent state and elapsed time carried), copies the
    training VecNormalize statistics to ``eval_env`` first, logs ``eval/mean_reward`` and friends, writes
    ``evaluations.npz`` (timesteps, per-episode returns and lengths, and where the env reports it each episode's
    share of steps spent upside down, ``upside_down``: NaN for evaluations that did not record it) and, on a
    new best mean return, the model and statistics to ``best_folder``. ``on_evaluation(history)`` runs after
    each evaluation; ``status(text)`` announces one (e.g. :meth:`ProgressBar.status`). No periodic evaluation
    runs in the last rollout: the final evaluation of the trained model follows right after it.
    """

    def __init__(self, eval_env: VecEnv, eval_freq: int, n_eval_episodes: int, folder: str | Path,
                 best_folder: str | Path, on_evaluation: Callable[[dict[str, np.ndarray]], None] | None = None,
                 verbose: int = 1, status: Callable[[str], None] | None = None) -> None:
        super().__init__(verbose)
        self.status = status
        self.eval_env, self.eval_freq, self.n_eval_episodes = eval_env, int(eval_freq), int(n_eval_episodes)
        self.path = Path(folder) / EVALUATIONS_FILE
        self.best_folder = Path(best_folder)
        self.on_evaluation = on_evaluation
        self.timesteps: list[int] = []
        self.returns: list[list[float]] = []
        self.lengths: list[list[int]] = []
        self.upside_down: list[list[float]] = []  # stays empty while the env reports no posture
        self.best_mean_reward = -np.inf
        self._last_eval = 0
        if self.path.exists():  # resumed run: continue the history
            try:
                with np.load(self.path) as saved:
                    names = ("timesteps", "results", "ep_lengths", *(["upside_down"] if "upside_down" in saved.files
                                                                      else []))
                    history = [saved[name].tolist() for name in names]
                if any(not isinstance(entries, list) or len(entries) != len(history[0]) for entries in history):
                    raise ValueError("its arrays disagree on the number of evaluations")
                self.timesteps, self.returns, self.lengths = history[:3]
                self.upside_down = history[3] if len(history) > 3 else []
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
                warnings.warn(f"evaluation history {self.path} is unreadable ({error}); starting a new one",
                              LtcRlWarning, stacklevel=2)

    def _init_callback(self) -> None:
        """Drop evaluations later than the model (a killed run evaluated after its last checkpoint), and a best
        model whose evaluation was dropped with them."""
        steps = self.model.num_timesteps
        keep = [i for i, at in enumerate(self.timesteps) if at <= steps]
        self.timesteps = [self.timesteps[i] for i in keep]
        self.returns = [self.returns[i] for i in keep]
        self.lengths = [self.lengths[i] for i in keep]
        self.upside_down = [self.upside_down[i] for i in keep] if self.upside_down else []
        self._last_eval = self.timesteps[-1] if self.timesteps else 0
        if self.returns:
            self.best_mean_reward = float(np.max(np.mean(self.returns, axis=1)))
        best = self.best_folder / MODEL_FILE
        try:
            best_steps = inspect_model_file(best).get("num_timesteps", 0) if best.is_file() else 0
        except ModelFileError:  # unreadable or an older version's: left as it is, replaced by the next new best
            best_steps = 0
        if best_steps > steps:
            for path in (best, self.best_folder / VECNORMALIZE_FILE, self.best_folder / LEGACY_VECNORMALIZE_FILE):
                path.unlink(missing_ok=True)
            self.best_mean_reward = -np.inf
            warnings.warn(f"removed {best}: it is the model of an evaluation after timestep {steps}, where training "
                          "continues; the next evaluation writes a new best model", LtcRlWarning, stacklevel=2)

    def _on_training_start(self) -> None:
        """Run the evaluation that was due at this timestep when the previous session stopped before it."""
        if self.eval_freq > 0 and self.num_timesteps > 0 and self.num_timesteps - self._last_eval >= self.eval_freq:
            self.evaluate()

    @property
    def history(self) -> dict[str, np.ndarray]:
        history = {"timesteps": np.asarray(self.timesteps), "results": np.asarray(self.returns),
                   "ep_lengths": np.asarray(self.lengths)}
        if self.upside_down:
            history["upside_down"] = np.asarray(self.upside_down, dtype=float)
        return history

    def evaluate(self) -> float:
        """Run one evaluation now; returns the mean episode return."""
        if self.status is not None:
            self.status(f"evaluating ({counted(self.n_eval_episodes, 'episode')}) ...")
        if self.model.get_vec_normalize_env() is not None:
            sync_envs_normalization(self.training_env, self.eval_env)
        returns, lengths, upside_down = evaluate(self.model, self.eval_env, self.n_eval_episodes, deterministic=True)
        returns, lengths = returns[: self.n_eval_episodes], lengths[: self.n_eval_episodes]
        self._last_eval = self.num_timesteps
        self.timesteps.append(self.num_timesteps)
        self.returns.append(returns)
        self.lengths.append(lengths)
        if upside_down is not None or self.upside_down:
            # evaluations before the env reported a posture (an older run resumed) count as not recorded
            self.upside_down = self.upside_down or [[math.nan] * len(row) for row in self.returns[:-1]]
            self.upside_down.append(upside_down[: self.n_eval_episodes] if upside_down is not None
                                    else [math.nan] * len(returns))
            if upside_down is not None:
                self.logger.record("eval/upside_down", float(np.mean(self.upside_down[-1])))
        history = self.history
        atomic_write(self.path, lambda handle: np.savez(handle, **history))
        mean, std = float(np.mean(returns)), float(np.std(returns))
        self.logger.record("eval/mean_reward", mean)
        self.logger.record("eval/std_reward", std)
        self.logger.record("eval/mean_ep_length", float(np.mean(lengths)))
        self.logger.dump(self.num_timesteps)
        best = mean > self.best_mean_reward
        if best:
            self.best_mean_reward = mean
            venv = self.model.get_vec_normalize_env()
            if venv is not None:
                save_vecnormalize(venv, self.best_folder / VECNORMALIZE_FILE)
            save_model(self.model, self.best_folder / MODEL_FILE)
        if self.verbose:
            print(f"eval at {self.num_timesteps} steps: return {mean:.1f} +/- {std:.1f}"
                  + (" (new best)" if best else ""), flush=True)
        if self.on_evaluation is not None:
            self.on_evaluation(history)
        return mean

    @property
    def evaluated_now(self) -> bool:
        """Whether the latest evaluation happened at the current timestep."""
        return bool(self.timesteps) and self.timesteps[-1] == self.num_timesteps

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.num_timesteps - self._last_eval >= self.eval_freq and not self._last_rollout:
            self.evaluate()
        return True

    @property
    def _last_rollout(self) -> bool:
        """Whether training ends with the current rollout (its final evaluation comes right after)."""
        rollout = getattr(self.model, "n_steps", 1) * self.model.n_envs
        return self.model._total_timesteps - self.num_timesteps < rollout


class ProgressBar(BaseCallback):
    """A progress bar over the training steps with the mean episode return of the latest episodes (SB3's
    ``ep_info_buffer``, up to 100) and what the run is doing when it is not stepping (updating, evaluating)."""

    def __init__(self) -> None:
        super().__init__()
        self.bar: Any = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.locals["total_timesteps"] - self.model.num_timesteps, unit="step",
                        dynamic_ncols=True, smoothing=0.05)

    def status(self, text: str) -> None:
        """Shows ``text`` beside the bar (until the next rollout)."""
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)

    def _on_rollout_start(self) -> None:
        episodes = self.model.ep_info_buffer
        self.status(f"return {np.mean([e['r'] for e in episodes]):.1f}" if episodes else "return -")

    def _on_rollout_end(self) -> None:
        returns = [e["r"] for e in self.model.ep_info_buffer]
        self.status((f"return {np.mean(returns):.1f}, " if returns else "") + "updating ...")

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()
