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

__all__ = ["Policy", "random_policy", "collect_traces", "RecurrentModelPolicy", "load_run_policy"]

#: A policy maps one observation to one action. A policy with a ``reset()`` method (e.g. a
#: recurrent one that keeps its hidden state) has it called at the start of every episode, and
#: one with an ``observe_info(info)`` method receives the ``info`` of every reset and step
#: (e.g. to read the elapsed time) before it is asked for the next action.
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
    model = getattr(policy, "model", None)
    if model is not None:
        from ltc_rl.runs.serialization import check_spaces

        try:
            check_spaces(type(model).__name__, model.observation_space, model.action_space, env)
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



class RecurrentModelPolicy:
    """A trained SB3-style model (``predict(obs, state, episode_start, deterministic, dt)``) as a trace policy.

    Keeps the recurrent state across steps, resets it at episode starts, normalises observations
    with VecNormalize statistics if given (anything with ``normalize_obs``, e.g.
    :class:`~ltc_rl.rl.safe_files.NormalizationStats`) (the trace keeps the raw ones), and passes the
    elapsed time an environment reports under ``ltc_rl.rl.ELAPSED_TIME_KEY`` as ``dt``.
    """

    def __init__(self, model: Any, normalizer: Any | None = None, deterministic: bool = True) -> None:
        self.model, self.normalizer, self.deterministic = model, normalizer, deterministic
        self.reset()

    def reset(self) -> None:
        self.state, self.episode_start, self.dt = None, True, None

    def observe_info(self, info: dict[str, Any]) -> None:
        from ltc_rl.rl.elapsed_time import ELAPSED_TIME_KEY

        self.dt = info.get(ELAPSED_TIME_KEY) if info else None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)[None]
        if self.normalizer is not None:
            obs = self.normalizer.normalize_obs(obs)
        kwargs = {} if self.dt is None else {"dt": float(self.dt)}
        action, self.state = self.model.predict(obs, state=self.state, episode_start=np.array([self.episode_start]),
                                                deterministic=self.deterministic, **kwargs)
        self.episode_start = False
        return action[0]


def load_run_policy(run: str | Path, deterministic: bool = True, device: str = "cpu",
                    trust_pickle: bool = False) -> RecurrentModelPolicy:
    """Load a trained :class:`~ltc_rl.rl.RecurrentPPO` (a run folder, a model ``.zip`` or a checkpoint zip) as a
    trace policy.

    In a run folder the best model (``best/model.zip``) is taken where there is one, else the files
    :func:`~ltc_rl.runs.run_files.resolve_model_files` names (``model.zip``, or the newest checkpoint); the
    VecNormalize statistics that belong to the model supply observation normalisation. Nothing is unpickled
    unless ``trust_pickle`` (files of older versions).
    """
    from ltc_rl.rl import RecurrentPPO
    from ltc_rl.runs.layout import BEST_FOLDER, MODEL_FILE
    from ltc_rl.runs.run_files import resolve_model_files
    from ltc_rl.runs.serialization import load_model, read_normalization

    run = Path(run)
    files = resolve_model_files(run, best=(run / BEST_FOLDER / MODEL_FILE).is_file())
    model = load_model(files.model, device=device, algorithm=RecurrentPPO, trust_pickle=trust_pickle)
    normalizer = None if files.normalizer is None else read_normalization(files.normalizer, trust_pickle)
    return RecurrentModelPolicy(model, normalizer, deterministic)
