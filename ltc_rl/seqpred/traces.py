"""Record trace files in the paper's format from any environment and policy.

Each episode becomes ``trace_XXXX.npy``: a float64 ``(steps, obs_dim)`` array of the
observations the policy saw, in order (the paper's Half-Cheetah traces are 1000 x 17, which
is what ``HalfCheetah-v4`` gives with ``max_steps=1000``). Episodes that terminate earlier
give shorter traces; the loader accepts any length of at least ``seq_len + 2``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from ltc_rl.errors import ConfigError, OutputExistsError, SpaceMismatchError, check_output_name
from ltc_rl.seqpred.data import TRACE_PATTERN

__all__ = ["Policy", "random_policy", "collect_traces"]

#: A policy maps one observation to one action. A policy with a ``reset()`` method (e.g. a
#: recurrent one that keeps its hidden state) has it called at the start of every episode, and
#: one with an ``observe_info(info)`` method receives the ``info`` of every reset and step
#: (e.g. to read the elapsed time) before it is asked for the next action. A policy with
#: ``observation_space`` / ``action_space`` attributes (a trained model: ``agents.evaluation.TracePolicy``) is
#: checked against the environment first.
Policy = Callable[[np.ndarray], Any]


def random_policy(action_space: gym.Space, seed: int = 0) -> Policy:
    """Uniformly random actions from ``action_space``, reproducible through ``seed``."""
    action_space.seed(seed)
    return lambda obs: action_space.sample()


def collect_traces(env_factory: Callable[[], gym.Env], policy: Policy | None, episodes: int, out_dir: str | Path,
                   max_steps: int = 1000, seed: int = 0, overwrite: bool = False, progress: bool = True) -> list[Path]:
    """Run ``episodes`` episodes of ``policy`` and write ``out_dir/trace_0000.npy`` ... (one per episode).

    Args:
        env_factory: builds the environment (called once).
        policy: ``obs -> action``; None for uniformly random actions (seeded with ``seed``).
        episodes: number of trace files to write.
        max_steps: observations per trace at most (the paper's traces have 1000).
        seed: episode ``k`` is reset with ``seed + k``.
        overwrite: replace trace files already in ``out_dir`` instead of refusing.
    """
    if episodes < 1 or max_steps < 1:
        raise ConfigError(f"episodes and max_steps must be >= 1, got {episodes} and {max_steps}.")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0 (episode k is reset with seed + k), got {seed}.")
    check_output_name(out_dir, "--out")
    out = Path(out_dir)
    existing = sorted(out.glob(TRACE_PATTERN)) if out.is_dir() else []
    if existing and not overwrite:
        raise OutputExistsError(f"{str(out)!r} already holds {len(existing)} .npy files; choose an empty folder or "
                                "pass overwrite=True (--overwrite) to replace them.")
    env = env_factory()  # before touching the folder: a bad env id must not cost the old traces
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        env.close()
        raise ConfigError(f"traces need a flat Box observation space, got {space}; flatten the observations "
                          "(gymnasium.wrappers.FlattenObservation) first.")
    if hasattr(policy, "observation_space") and hasattr(policy, "action_space"):
        from ltc_rl.runs.serialization import check_spaces

        try:
            check_spaces(str(policy), policy.observation_space, policy.action_space, env)
        except SpaceMismatchError:
            env.close()
            raise
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        env.close()
        raise ConfigError(f"cannot create the output folder {str(out)!r} ({exc.strerror or exc}); choose another "
                          "--out.") from exc
    for path in existing:
        path.unlink()
    act = random_policy(env.action_space, seed) if policy is None else policy
    written = []
    try:
        for episode in tqdm(range(episodes), desc="traces", unit="episode", disable=not progress):
            if hasattr(act, "reset"):
                act.reset()
            obs, info = env.reset(seed=seed + episode)
            rows = []
            for _ in range(max_steps):
                if hasattr(act, "observe_info"):
                    act.observe_info(info)
                rows.append(np.asarray(obs, dtype=np.float64))
                obs, _, terminated, truncated, info = env.step(act(obs))
                if terminated or truncated:
                    break
            path = out / f"trace_{episode:04d}.npy"
            np.save(path, np.stack(rows))
            written.append(path)
    finally:
        env.close()
    return written
