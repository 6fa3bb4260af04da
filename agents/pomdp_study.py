"""The POMDP robustness study (after the ncps examples): recurrent vs. feed-forward policies without velocities.

Every policy (LTC, NCP, CfC, LSTM, MLP) is trained for the same number of environment steps on a
partially observable task (default ``HalfCheetahNoVel-v4``: joint velocities removed, so a policy
must infer them from the observation history) with the shipped hyperparameters of
``ltc_rl/hyperparams``, then evaluated deterministically under Gaussian observation noise of
several levels (default 0, 0.1, 0.2, in observation units, on the same evaluation seeds for every
policy). Results: ``results.md`` (table), ``results.json`` and ``robustness.png`` in the output
folder, rewritten after every finished run; finished runs are reused when the study is rerun.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import envs
from agents.agent import LTCAgent
from agents.evaluation import EvaluationResult, robustness
from ltc_rl.reporting import headless_pyplot
from ltc_rl.runs.files import atomic_write, save_figure
from ltc_rl.runs.layout import MODEL_FILE
from ltc_rl.errors import ConfigError
from ltc_rl.runs.config import resolve_config
from ltc_rl.runs.training import train

__all__ = ["STUDY_POLICIES", "NOISE_LEVELS", "StudyRun", "run_pomdp_study", "results_table", "plot_robustness",
           "write_report"]

STUDY_POLICIES = ("ltc", "ncp", "cfc", "lstm", "mlp")
NOISE_LEVELS = (0.0, 0.1, 0.2)
#: Pipeline settings for study runs: the study evaluates on its own, so no periodic evaluation or checkpoints.
_RUN_SETTINGS = {"eval_freq": 0, "n_eval_episodes": 1, "checkpoint_freq": 0}
_RECORD = "study_run.json"


@dataclass
class StudyRun:
    """One trained policy of the study and its evaluations (one per noise level)."""

    policy: str
    seed: int
    run_dir: Path
    train_seconds: float
    timesteps: int  # environment steps trained (whole rollouts: at least the study's budget)
    parameters: int
    results: list[EvaluationResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "seed": self.seed, "run_dir": str(self.run_dir),
                "train_seconds": self.train_seconds, "timesteps": self.timesteps, "parameters": self.parameters,
                "results": [r.to_dict() for r in self.results]}


def _train_or_reuse(env_id: str, policy: str, seed: int, timesteps: int, run_dir: Path,
                    overrides: Mapping[str, Any], progress: bool) -> tuple[float, int]:
    """Train one study run (or reuse a finished one); returns its training wall time (s) and steps trained."""
    record = run_dir / _RECORD
    if (run_dir / MODEL_FILE).is_file() and record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("budget") == timesteps:
            return float(saved["train_seconds"]), int(saved["timesteps"])
    if run_dir.exists():
        raise ConfigError(f"{run_dir} holds an unfinished run or one of another budget; remove it (or choose "
                          f"another --out) to train it again.")
    config = resolve_config(env_id, policy, timesteps, seed=seed, device="auto",
                            overrides={**_RUN_SETTINGS, **overrides}, env_ids=envs.available_ids())
    start = time.perf_counter()
    result = train(config, run_dir, progress_bar=progress, argv=["agents.pomdp_study", policy, str(seed)],
                   make_env=envs.make_vec)
    seconds = time.perf_counter() - start
    record.write_text(json.dumps({"budget": timesteps, "timesteps": result.timesteps, "train_seconds": seconds}))
    return seconds, result.timesteps


def run_pomdp_study(out_dir: str | Path, env_id: str = "HalfCheetahNoVel-v4", policies: Sequence[str] = STUDY_POLICIES,
              timesteps: int = 24_576, seeds: Sequence[int] = (0,), noise_levels: Sequence[float] = NOISE_LEVELS,
              episodes: int = 5, overrides: Mapping[str, Any] | None = None, progress: bool = True,
              log: Callable[[str], None] = print) -> list[StudyRun]:
    """Train every policy for ``timesteps`` steps per seed, evaluate it at every noise level, write the report.

    ``overrides`` are hyperparameter overrides applied to every policy (``{"n_envs": 2}``, ...). Training
    runs whole rollouts, so a policy trains at least ``timesteps`` steps (exactly, when ``timesteps`` is a
    multiple of every policy's ``n_envs * n_steps``: 24576 for the shipped HalfCheetah settings).
    """
    if not policies or not noise_levels or not seeds:
        raise ConfigError("the study needs at least one policy, one seed and one noise level.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs: list[StudyRun] = []
    for policy in policies:
        for seed in seeds:
            run_dir = out / f"{policy}_seed{seed}"
            log(f"[{policy} seed {seed}] training {timesteps} steps on {env_id} ...")
            seconds, steps = _train_or_reuse(env_id, policy, seed, timesteps, run_dir, dict(overrides or {}),
                                             progress)
            agent = LTCAgent.load(run_dir)
            results = robustness(agent, list(noise_levels), episodes, deterministic=True, seed=10_000 + seed)
            parameters = sum(p.numel() for p in agent.network.parameters())
            runs.append(StudyRun(policy, seed, run_dir, seconds, steps, parameters, results))
            log(f"[{policy} seed {seed}] trained {steps} steps in {seconds:.0f} s; returns "
                + ", ".join(f"noise {r.obs_noise:g}: {r.mean_return:.1f}" for r in results))
            write_report(out, runs, env_id, timesteps, episodes)
    return runs


def _pooled(runs: list[StudyRun], policy: str, level_index: int) -> np.ndarray:
    return np.concatenate([r.results[level_index].returns for r in runs if r.policy == policy])


def results_table(runs: list[StudyRun]) -> str:
    """Markdown: per policy, the deterministic return (mean +- std over all episodes and seeds) per noise level."""
    policies = list(dict.fromkeys(r.policy for r in runs))
    levels = [r.obs_noise for r in runs[0].results]
    header = ["policy", "seeds", "env steps", "actor parameters", "train time (s)",
              *[f"return, noise {lv:g}" for lv in levels], f"change at noise {levels[-1]:g}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for policy in policies:
        mine = [r for r in runs if r.policy == policy]
        returns = [_pooled(runs, policy, i) for i in range(len(levels))]
        change = returns[-1].mean() - returns[0].mean()
        seconds = np.mean([r.train_seconds for r in mine])
        cells = [policy, str(len(mine)), str(mine[0].timesteps), str(mine[0].parameters), f"{seconds:.0f}",
                 *[f"{r.mean():.1f} +- {r.std():.1f}" for r in returns], f"{change:+.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_robustness(runs: list[StudyRun], path: str | Path, title: str = "") -> Path:
    """PNG: mean return (+- std) against the observation-noise level, one line per policy."""
    plt = headless_pyplot()

    levels = [r.obs_noise for r in runs[0].results]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for policy in dict.fromkeys(r.policy for r in runs):
        returns = [_pooled(runs, policy, i) for i in range(len(levels))]
        ax.errorbar(levels, [r.mean() for r in returns], yerr=[r.std() for r in returns], marker="o", capsize=3,
                    label=policy)
    ax.set_xlabel("observation noise sigma")
    ax.set_ylabel("episode return (deterministic)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_report(out: Path, runs: list[StudyRun], env_id: str, timesteps: int, episodes: int) -> None:
    """``results.md``, ``results.json`` and ``robustness.png`` for the runs so far."""
    seeds = sorted({r.seed for r in runs})
    title = f"{env_id}, {timesteps} steps per policy"
    text = (f"# POMDP robustness study: {title}\n\n"
            f"Trained without observation noise, seeds {seeds}; each entry pools {episodes} deterministic "
            f"evaluation episodes per seed at the given noise level (same evaluation seeds for every policy).\n\n"
            f"{results_table(runs)}\n")
    atomic_write(out / "results.md", lambda handle: handle.write(text.encode()))
    document = json.dumps({"env_id": env_id, "timesteps": timesteps, "episodes": episodes,
                           "runs": [r.to_dict() for r in runs]}, indent=2)
    atomic_write(out / "results.json", lambda handle: handle.write(document.encode()))
    plot_robustness(runs, out / "robustness.png", title)
