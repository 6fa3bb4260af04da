"""Evaluating a trained agent: returns under observation noise, neuron activity over an episode, video.

Everything here runs an :class:`~agents.agent.LTCAgent` (saved normalisation applied, recurrent state
and elapsed time carried) in environments from :func:`envs.make` built with the options the run was
trained with (``config.yaml``), optionally on another task id or another observation-noise level.
``scripts/evaluate.py`` is the command-line front end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecEnv
from tqdm.auto import tqdm

import envs
from agents.agent import LTCAgent
from ltc_rl.devices import check_device
from ltc_rl.errors import ConfigError, LtcRlError, ModelFileError, SpaceMismatchError
from ltc_rl.reporting import headless_pyplot
from ltc_rl.runs.files import save_figure, write_text
from ltc_rl.runs.layout import BEST_FOLDER, MODEL_FILE
from ltc_rl.runs.run_folder import RunFolder
from ltc_rl.rl.policies import RecurrentActorCriticPolicy
from ltc_rl.runs.serialization import inspect_model_file
from ltc_rl.rl.elapsed_time import ELAPSED_TIME_KEY
from ltc_rl.rl.evaluation import evaluate

__all__ = ["EnvMismatchError", "VideoUnavailableError", "EvaluationResult", "EpisodeTrace", "TracePolicy",
           "load_trace_policy", "check_model_file",
           "load_agent", "check_noise_levels", "env_options_for", "check_env", "evaluate_agent", "robustness",
           "evaluate_run_noise", "format_table", "write_json", "record_episode", "plot_neuron_activity",
           "opengl_backend", "action_mode", "check_video", "record_video", "resolve_env_id"]


class EnvMismatchError(SpaceMismatchError):
    """The environment's observations or actions differ from those the policy was trained on."""


class VideoUnavailableError(LtcRlError, RuntimeError):
    """No video could be rendered or written here (no OpenGL, no renderer, no mp4 encoder); exit code 1."""

    exit_code = 1


@dataclass
class EvaluationResult:
    """Returns and lengths of the episodes of one evaluation setting, and each episode's share of steps spent
    upside down where the environment reports it (:data:`ltc_rl.env_api.UPSIDE_DOWN_KEY`; else None)."""

    env_id: str
    obs_noise: float
    deterministic: bool
    returns: list[float]
    lengths: list[int]
    upside_down: list[float] | None = None

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    @property
    def mean_upside_down(self) -> float | None:
        """The share of all steps spent upside down (episodes weighted by length), or None if not reported."""
        if self.upside_down is None:
            return None
        return float(np.average(self.upside_down, weights=self.lengths))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean_return": self.mean_return, "std_return": self.std_return,
                "mean_length": float(np.mean(self.lengths)), "std_length": float(np.std(self.lengths)),
                "mean_upside_down": self.mean_upside_down}


# ---------------------------------------------------------------------------------------------- traces
class TracePolicy:
    """An :class:`LTCAgent` as a trace policy of :func:`ltc_rl.seqpred.collect_traces`: one observation in, one
    action out, the recurrent state reset at every episode start and the elapsed time the environment reports
    (``info[ELAPSED_TIME_KEY]``) passed as ``dt``; the agent applies the run's observation normalisation (the
    trace keeps the raw observations)."""

    def __init__(self, agent: LTCAgent, deterministic: bool = True, name: str = "agent") -> None:
        self.agent, self.deterministic, self.name = agent, deterministic, name
        self.observation_space, self.action_space = agent.observation_space, agent.action_space
        self.dt: float | None = None

    def __str__(self) -> str:
        return self.name

    def reset(self) -> None:
        self.agent.reset()
        self.dt = None

    def observe_info(self, info: dict[str, Any]) -> None:
        self.dt = info.get(ELAPSED_TIME_KEY) if info else None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        dt = None if self.dt is None else float(self.dt)
        return self.agent.act(np.asarray(obs, dtype=np.float32), dt=dt, deterministic=self.deterministic)


def load_trace_policy(run: str | Path, deterministic: bool = True, device: str = "cpu",
                      trust_pickle: bool = False) -> TracePolicy:
    """The trained policy of ``run`` (a run folder, a model ``.zip`` or a checkpoint zip) as a trace policy: in a
    run folder the best model (``best/model.zip``) where there is one, else the model :class:`RunFolder` stands
    for (``model.zip``, or the newest checkpoint), with the statistics that belong to it."""
    best = (Path(run) / BEST_FOLDER / MODEL_FILE).is_file()
    agent = LTCAgent.load(run, device=device, trust_pickle=trust_pickle, best=best)
    return TracePolicy(agent, deterministic, name=str(agent.files.model if agent.files else run))


# ---------------------------------------------------------------------------------------------- inputs
def _written_by_this_project(policy_class: Any) -> bool:
    """The recurrent policies of :mod:`ltc_rl.rl.policies`, or stable-baselines3's own PPO policies (``--policy
    mlp``); sb3-contrib's look-alike RecurrentPPO policy and other algorithms' policies (DQN, SAC, ...) are not."""
    if not isinstance(policy_class, type):
        return False
    if issubclass(policy_class, RecurrentActorCriticPolicy):
        return True
    return issubclass(policy_class, ActorCriticPolicy) and policy_class.__module__.startswith("stable_baselines3.")


def check_model_file(path: str | Path, trust_pickle: bool = False, best: bool = False,
                     checkpoint: int | None = None) -> None:
    """Raises :class:`ModelFileError` unless the model behind ``path`` (run folder or ``.zip``; ``best`` and
    ``checkpoint`` as in :meth:`LTCAgent.load`) declares a policy this project trains: checked on the file's
    metadata, before stable-baselines3 builds anything from it."""
    model = RunFolder(path).model_path(best, checkpoint)
    policy_class = inspect_model_file(model, trust_pickle)["policy_class"]
    if not _written_by_this_project(policy_class):
        name = f"{getattr(policy_class, '__module__', '?')}.{getattr(policy_class, '__qualname__', policy_class)}"
        raise ModelFileError(f"{model} holds a {name} policy: not a model this project wrote (it trains RecurrentPPO "
                             "with the policies of ltc_rl.rl.policies, and PPO MlpPolicy); evaluate it with the library "
                             "that wrote it, or pass a run folder of scripts/train.py.")


def load_agent(path: str | Path, device: str = "cpu", trust_pickle: bool = False, best: bool = False,
               checkpoint: int | None = None) -> LTCAgent:
    """:meth:`LTCAgent.load` behind the checks a command line needs: the device exists here, the file is a model of
    this project (:func:`check_model_file`), and its weights are finite (the loader checks the statistics)."""
    check_device(device)
    check_model_file(path, trust_pickle, best, checkpoint)
    agent = LTCAgent.load(path, device=device, trust_pickle=trust_pickle, best=best, checkpoint=checkpoint)
    broken = [name for name, tensor in agent.network.named_parameters() if not bool(torch.isfinite(tensor).all())]
    if broken:
        source = path if agent.files is None else agent.files.model
        raise ModelFileError(f"the parameters of {source} hold NaN or infinity ({', '.join(broken[:3])}); the run "
                             "diverged or the file was damaged: use another checkpoint (best/, checkpoints/) or retrain.")
    return agent


def check_noise_levels(levels: list[float | None]) -> None:
    """Raises :class:`ConfigError` unless every observation-noise level is None or a finite number >= 0."""
    bad = [level for level in levels if level is not None and not (np.isfinite(level) and level >= 0)]
    if bad:
        raise ConfigError(f"observation noise levels must be finite numbers >= 0, got {bad}; pass e.g. "
                          "--obs-noise 0 0.1 0.2.")


def env_options_for(agent: LTCAgent, obs_noise: float | None = None) -> dict[str, Any]:
    """The run's env options (``envs.make`` keywords), with ``obs_noise`` replaced when given."""
    options = agent.env_options
    if obs_noise is not None:
        options["obs_noise"] = float(obs_noise)
    if options.get("irregular") is not None:
        options["irregular"] = tuple(options["irregular"])
    return options


def _describe(agent: LTCAgent) -> str:
    if agent.env_id is None:
        return "its training environment"
    options = {k: v for k, v in agent.env_options.items() if v not in (None, False, 0, 0.0)}
    return agent.env_id + (f" with {options}" if options else "")


def check_env(agent: LTCAgent, env_id: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """Raises :class:`EnvMismatchError` when ``env_id``'s spaces do not fit the policy (noise-free bounds aside)."""
    trained = agent.observation_space
    if getattr(observation_space, "shape", None) != trained.shape:
        raise EnvMismatchError(
            f"the model was trained on observations of shape {trained.shape} ({_describe(agent)}), but {env_id} "
            f"gives observations of shape {getattr(observation_space, 'shape', observation_space)}; evaluate it on "
            f"an environment with the same observation space (e.g. --env {agent.env_id}).")
    if type(action_space) is not type(agent.action_space) or getattr(action_space, "shape", None) != \
            agent.action_space.shape or getattr(action_space, "n", None) != getattr(agent.action_space, "n", None):
        raise EnvMismatchError(f"the model acts in {agent.action_space} ({_describe(agent)}), but {env_id} "
                               f"expects actions in {action_space}.")


def resolve_env_id(agent: LTCAgent, env_id: str | None) -> str:
    """``env_id``, else the task the agent was trained on; its gym packages imported, the id checked."""
    env_id = env_id or agent.env_id
    if env_id is None:
        raise ConfigError("the model comes without a config.yaml naming its environment; pass the env id (--env).")
    envs.import_gym_packages(agent.env_options.get("gym_packages") or ())
    envs.check_env_id(env_id)
    return env_id


def _make_vec(agent: LTCAgent, env_id: str | None, obs_noise: float | None, n_envs: int, seed: int) -> VecEnv:
    env_id = resolve_env_id(agent, env_id)
    venv = envs.make_vec(env_id, n_envs=n_envs, seed=seed, **env_options_for(agent, obs_noise))
    try:
        check_env(agent, env_id, venv.observation_space, venv.action_space)
    except EnvMismatchError:
        venv.close()
        raise
    return venv


def _make_single(agent: LTCAgent, env_id: str | None, obs_noise: float | None, seed: int,
                 render_mode: str | None = None) -> gym.Env:
    env_id = resolve_env_id(agent, env_id)
    env = envs.make(env_id, seed=seed, render_mode=render_mode, **env_options_for(agent, obs_noise))
    check_env(agent, env_id, env.observation_space, env.action_space)
    return env


def evaluate_agent(agent: LTCAgent, episodes: int = 10, env_id: str | None = None, obs_noise: float | None = None,
                   deterministic: bool = True, seed: int = 0, n_envs: int | None = None) -> EvaluationResult:
    """Returns and lengths of ``episodes`` episodes (``n_envs`` copies in parallel, default up to 4).

    ``env_id`` / ``obs_noise`` default to the run's; the other env options are the run's.
    """
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}.")
    env_id = resolve_env_id(agent, env_id)
    venv = _make_vec(agent, env_id, obs_noise, n_envs or min(episodes, 4), seed)
    try:
        episodes_run = evaluate(agent, venv, episodes, deterministic=deterministic)  # type: ignore[arg-type]
    finally:
        venv.close()
    noise = env_options_for(agent, obs_noise).get("obs_noise", 0.0)
    return EvaluationResult(env_id, float(noise), deterministic, *episodes_run)


def robustness(agent: LTCAgent, noise_levels: list[float], episodes: int = 10, env_id: str | None = None,
               deterministic: bool = True, seed: int = 0) -> list[EvaluationResult]:
    """One evaluation per observation-noise level, all on the same seeds (common random numbers)."""
    check_noise_levels(noise_levels)
    return [evaluate_agent(agent, episodes, env_id, level, deterministic, seed) for level in noise_levels]


def evaluate_run_noise(run_dir: str | Path, noise_levels: Sequence[float], episodes: int = 10,
                       seed: int = 0) -> list[dict[str, Any]]:
    """Deterministic returns of a run folder's final model at each observation-noise level, as JSON-ready dicts.

    What ``scripts/evaluate.py --model RUN_DIR --deterministic --obs-noise ...`` computes; a plain function of
    picklable arguments, so benchmark worker processes (:mod:`ltc_rl.studies.rl_benchmark`) can call it.
    """
    agent = LTCAgent.load(run_dir)
    return [result.to_dict() for result in robustness(agent, list(noise_levels), episodes, deterministic=True,
                                                      seed=seed)]


def action_mode(deterministic: bool) -> str:
    """How actions are chosen, as the tables and plot titles say it."""
    return "deterministic" if deterministic else "stochastic"


def format_table(results: list[EvaluationResult]) -> str:
    """A markdown table: mean +- std return and length per setting, the return relative to the first row and,
    where the environment reports it, the share of steps spent upside down."""
    posture = any(result.upside_down is not None for result in results)
    header = ["env", "obs noise", "actions", "episodes", "return (mean +- std)", "length (mean +- std)",
              "return vs. first row", *(["steps upside down"] if posture else [])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base = results[0].mean_return if results else 0.0
    for result in results:
        share = result.mean_upside_down
        cells = [result.env_id, f"{result.obs_noise:g}", action_mode(result.deterministic), str(len(result.returns)),
                 f"{result.mean_return:.1f} +- {result.std_return:.1f}",
                 f"{np.mean(result.lengths):.1f} +- {np.std(result.lengths):.1f}",
                 f"{100 * result.mean_return / base:.0f} %" if base > 0 else "-"]
        if posture:
            cells.append(f"{100 * share:.0f} %" if share is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: str | Path, agent: LTCAgent, results: list[EvaluationResult], **extra: Any) -> Path:
    """The results (and where they came from) as JSON, written atomically."""
    document = {"model": str(agent.files.model) if agent.files else None, "trained_env_id": agent.env_id,
                "trained_env_options": agent.env_options, "time_unit": agent.time_unit, **extra,
                "results": [r.to_dict() for r in results]}
    text = json.dumps(document, indent=2)
    return write_text(path, text)


# ---------------------------------------------------------------------------------------------- neurons
@dataclass
class EpisodeTrace:
    """One episode step by step: the observation the agent read at each step, its state after the step, actions,
    rewards and elapsed times."""

    env_id: str
    observations: np.ndarray | dict[str, np.ndarray]  # (T, *observation_shape) as the environment returned them
    states: np.ndarray  # (T, state_size)
    actions: np.ndarray  # (T, ...)
    rewards: np.ndarray  # (T,)
    dts: np.ndarray  # (T,) elapsed time of each observation, in the environment's unit
    deterministic: bool = True  # the mean action (True) or sampled actions

    @property
    def episode_return(self) -> float:
        return float(self.rewards.sum())


def record_episode(agent: LTCAgent, env_id: str | None = None, obs_noise: float | None = None, seed: int = 0,
                   deterministic: bool = True, max_steps: int | None = None, memoryless: bool = False) -> EpisodeTrace:
    """Run one episode and record the agent's recurrent state (the neuron potentials, for LTC) at every step.

    ``memoryless`` resets the state before every step (an ablation: what the policy achieves without carrying
    anything from one step to the next)."""
    if agent.state_size == 0:
        raise ConfigError("a feed-forward policy has no recurrent state (no neurons) to trace.")
    env = _make_single(agent, env_id, obs_noise, seed)
    observations: list[Any] = []
    states, actions, rewards, dts = [], [], [], []
    try:
        obs, info = env.reset(seed=seed)
        agent.reset()
        while max_steps is None or len(rewards) < max_steps:
            dt = info.get(ELAPSED_TIME_KEY)
            observations.append(obs)
            if memoryless:
                agent.reset()
            action = agent.act(obs, dt=dt, deterministic=deterministic)
            assert agent.state is not None
            states.append(agent.state[0].cpu().numpy().copy())
            actions.append(np.asarray(action))
            dts.append((agent.time_unit or 1.0) if dt is None else float(dt))
            obs, reward, terminated, truncated, info = env.step(action)
            rewards.append(float(reward))
            if terminated or truncated:
                break
    finally:
        env.close()
    stacked = ({key: np.stack([o[key] for o in observations]) for key in observations[0]}
               if isinstance(observations[0], dict) else np.stack(observations))
    return EpisodeTrace(env.spec.id if env.spec else str(env_id), stacked, np.stack(states), np.stack(actions),
                        np.asarray(rewards), np.asarray(dts), deterministic)


def _neuron_order(agent: LTCAgent, state_size: int) -> tuple[list[int], list[tuple[str, int, int]]]:
    """Neuron indices grouped by the wiring's layers (sensory side first), and the (name, start, end) bands.

    A wiring of one layer (fully connected, whose outputs all feed the action head) has no bands: its
    neurons are not motor neurons in the NCP sense.
    """
    wiring = agent.wiring
    layers = [(name, ids) for name, ids in wiring.layers() if ids] if wiring is not None else []
    if len(layers) < 2:
        return list(range(state_size)), []
    order, bands = [], []
    for name, ids in layers:
        bands.append((name, len(order), len(order) + len(ids)))
        order.extend(ids)
    return order, bands


def plot_neuron_activity(agent: LTCAgent, trace: EpisodeTrace, path: str | Path, title: str = "",
                         wiring_path: str | Path | None = None) -> list[Path]:
    """PNG of the neuron states over the episode (heatmap by wiring layer, motor traces, actions).

    With an LTC wiring, also draws the wiring diagram to ``wiring_path`` (default ``<path stem>_wiring.png``).
    Returns the files written.
    """
    plt = headless_pyplot()

    path = Path(path)
    states = trace.states
    steps = np.arange(len(states))
    order, bands = _neuron_order(agent, states.shape[1])
    motor = next(((start, end) for name, start, end in bands if name == "motor"), None)
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True, layout="constrained",
                             gridspec_kw={"height_ratios": [3, 1.5, 1.5]})
    image = axes[0].imshow(states[:, order].T, aspect="auto", interpolation="nearest", cmap="coolwarm",
                           extent=(-0.5, len(states) - 0.5, len(order) - 0.5, -0.5))
    # one colour bar beside all three panels, so that they share the time axis's width
    fig.colorbar(image, ax=axes, label="state (potential)", shrink=0.5, anchor=(0.0, 1.0))
    for name, start, end in bands:
        axes[0].axhline(start - 0.5, color="k", lw=0.6)
        axes[0].annotate(name, (0.005, (start + end - 1) / 2), xycoords=("axes fraction", "data"), va="center",
                         fontsize=8, bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8, "lw": 0})
    axes[0].set_ylabel("neuron (by layer)" if bands else "neuron")
    if motor:
        shown = [order[i] for i in range(*motor)][:8]
    else:  # no motor layer: the neurons that move most
        shown = sorted(np.argsort(states.std(axis=0))[::-1][: min(8, states.shape[1])].tolist())
    for index in shown:
        axes[1].plot(steps, states[:, index], lw=0.9, label=f"n{index}")
    axes[1].set_ylabel("motor neurons" if motor else "most active neurons")
    axes[1].legend(fontsize=7, ncol=8, loc="upper right")
    actions = trace.actions.reshape(len(steps), -1)
    for column in range(actions.shape[1]):
        axes[2].plot(steps, actions[:, column], lw=0.9, label=f"a{column}")
    if actions.shape[1] <= 12:
        axes[2].legend(fontsize=7, ncol=min(actions.shape[1], 6), loc="upper right", title="action dimension",
                       title_fontsize=7)
    axes[2].set_ylabel("actions")
    axes[2].set_xlabel("control step")
    cell = type(agent.cell).__name__ if agent.cell is not None else "policy"
    fig.suptitle(title or f"{cell} activity on {trace.env_id} (return {trace.episode_return:.1f}, "
                          f"{len(steps)} steps, {action_mode(trace.deterministic)} actions)")
    for ax in axes:
        ax.grid(alpha=0.2)
    written = [save_figure(fig, path, bbox_inches=None)]
    if agent.wiring is not None:
        wiring_path = Path(wiring_path) if wiring_path else path.with_name(f"{path.stem}_wiring{path.suffix}")
        written.append(agent.wiring.draw(wiring_path, title=f"wiring: {agent.wiring!r}"))
    return written


# ---------------------------------------------------------------------------------------------- video
_GL_BACKENDS = ("egl", "osmesa")
_GL_PROBE = ("import os, mujoco\n"
             "os.environ.setdefault('PYOPENGL_PLATFORM', os.environ['MUJOCO_GL'])\n"
             "from gymnasium.envs.mujoco.mujoco_rendering import _ALL_RENDERERS\n"
             "context = _ALL_RENDERERS[os.environ['MUJOCO_GL']](64, 64)\n"
             "context.make_current()\n")


def opengl_backend() -> str:
    """The MuJoCo OpenGL backend to render with: ``$MUJOCO_GL`` if set, else the first of EGL, OSMesa that works.

    Each candidate is tried in a subprocess (a failed OpenGL start cannot be undone in-process).
    Raises :class:`VideoUnavailableError` saying what was tried and what to install.
    """
    chosen = os.environ.get("MUJOCO_GL")
    candidates = (chosen,) if chosen else _GL_BACKENDS
    failures = []
    for backend in candidates:
        environment = {**os.environ, "MUJOCO_GL": backend}
        probe = subprocess.run([sys.executable, "-c", _GL_PROBE], env=environment, capture_output=True, text=True,
                               timeout=120)
        if probe.returncode == 0:
            return backend
        lines = (probe.stderr.strip() or "failed").splitlines()
        failures.append(f"MUJOCO_GL={backend}: {lines[-1][:200]}")
    raise VideoUnavailableError(
        "no video: MuJoCo's offscreen renderer found no working OpenGL here (" + "; ".join(failures) + "). "
        "Install EGL (e.g. apt-get install libegl1) or OSMesa (libosmesa6) and set MUJOCO_GL=egl or "
        "MUJOCO_GL=osmesa; the evaluation itself does not need OpenGL.")


VIDEO_SUFFIXES = (".gif", ".mp4")


def check_video(path: str | Path, env_id: str) -> None:
    """Raises :class:`VideoUnavailableError` (before any episode runs) when ``path`` cannot be written here:
    an unknown suffix, ``.mp4`` without imageio-ffmpeg, a classic-control task without pygame (its renderer),
    a MuJoCo task without a working OpenGL (:func:`opengl_backend`, which also selects the backend)."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ConfigError(f"--video {path}: the file must end in {' or '.join(VIDEO_SUFFIXES)}.")
    if suffix == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise VideoUnavailableError(f"writing {path} needs imageio-ffmpeg: pip install -e \".[video]\" (in a "
                                    "checkout) or pip install imageio-ffmpeg; or ask for a .gif.")
    entry_point = str(gym.spec(env_id).entry_point)
    if entry_point.startswith("gymnasium.envs.classic_control") and importlib.util.find_spec("pygame") is None:
        raise VideoUnavailableError(f"rendering {env_id} needs pygame (gymnasium draws classic-control tasks with "
                                    "it): pip install -e \".[video]\" or pip install pygame.")
    if entry_point.startswith("gymnasium.envs.mujoco"):
        backend = opengl_backend()
        os.environ["MUJOCO_GL"] = backend
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)


def _writer(path: Path, fps: float) -> Any:
    import imageio

    if path.suffix.lower() == ".gif":
        return imageio.get_writer(path, mode="I", duration=1000.0 / fps, loop=0)
    return imageio.get_writer(path, fps=fps, macro_block_size=1)


def record_video(agent: LTCAgent, path: str | Path, env_id: str | None = None, obs_noise: float | None = None,
                 seed: int = 0, deterministic: bool = True, max_frames: int = 1000,
                 progress: bool = False) -> tuple[Path, int]:
    """Render one episode (at most ``max_frames`` frames: the reset and ``max_frames - 1`` steps) to ``path``
    (.mp4 or .gif); returns the path and the number of frames. ``progress`` shows a bar over the frames.

    Raises :class:`VideoUnavailableError` with what is missing where no video can be made (see
    :func:`check_video`, which callers may run before anything else).
    """
    env_id = resolve_env_id(agent, env_id)
    check_video(path, env_id)
    if max_frames < 1:
        raise ConfigError(f"a video needs at least 1 frame, got {max_frames}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    env = _make_single(agent, env_id, obs_noise, seed, render_mode="rgb_array")
    frames = 0
    try:
        obs, info = env.reset(seed=seed)
        try:
            first = env.render()
        except Exception as exc:  # noqa: BLE001 - any renderer failure means: no video here
            raise VideoUnavailableError(f"no video: {env_id} cannot render here ({type(exc).__name__}: {exc}).") \
                from exc
        fps = float(env.metadata.get("render_fps") or 30)
        agent.reset()
        with _writer(path, fps) as writer, tqdm(total=max_frames, unit="frame", desc=f"video {path.name}",
                                                 disable=not progress, leave=False) as bar:
            writer.append_data(first)
            frames = 1
            bar.update()
            while frames < max_frames:
                action = agent.act(obs, dt=info.get(ELAPSED_TIME_KEY), deterministic=deterministic)
                obs, _, terminated, truncated, info = env.step(action)
                writer.append_data(env.render())
                frames += 1
                bar.update()
                if terminated or truncated:
                    break
    finally:
        env.close()
    return path, frames
