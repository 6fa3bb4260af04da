"""Control-step latency of deployed policies: :class:`~agents.agent.LTCAgent` and its exports.

Used by ``scripts/bench_agent.py``. The policy is HalfCheetah-sized (17 observations, 64 LTC
neurons fully connected or AutoNCP(64, 6), 6 actions, observation normalisation), with untrained
weights: latency does not depend on their values. Each path runs one step at a time with its
state fed back, as a control loop calls it, at batch 1 on CPU.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents.agent import LTCAgent
from agents.export import export_onnx, export_torchscript, load_torchscript
from agents.network import network_from_policy
from ltc_rl.bench.cell import interleaved_latency
from ltc_rl.kernels import native
from ltc_rl.runs.run_folder import ObservationStats

__all__ = ["halfcheetah_sized_agent", "agent_step_latency", "format_agent_latency", "AGENT_WIRINGS",
           "EXPORT_PATHS"]

#: Wirings of the benchmarked policy: the policies' ``wiring`` option and a label.
AGENT_WIRINGS = (("fc", "FC 64"), ("ncp", "AutoNCP(64,6)"))


def halfcheetah_sized_agent(wiring: str = "fc", observations: int = 17, actions: int = 6, units: int = 64,
                            seed: int = 0) -> LTCAgent:
    """An agent with HalfCheetah's shapes and a random observation normalisation (untrained weights)."""
    from ltc_rl.rl.policies import MlpLtcPolicy

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    observation_space = spaces.Box(-np.inf, np.inf, (observations,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (actions,), np.float32)
    policy = MlpLtcPolicy(observation_space, action_space, lambda _: 3e-4, units=units, wiring=wiring,
                          log_std_init=-2.0)
    stats = ObservationStats(rng.normal(size=observations), rng.uniform(0.5, 2.0, observations), 10.0, 1e-8)
    return LTCAgent(network_from_policy(policy, stats), observation_space, action_space)


#: The timed paths besides the agent: result key and table heading.
EXPORT_PATHS = (("torchscript", "TorchScript"), ("torchscript_native", 'TorchScript, kernel="native"'),
                ("onnx", "ONNX Runtime"))


def agent_step_latency(wiring: str = "fc", threads: int = 1, blocks: int = 15) -> dict[str, float]:
    """Seconds per control step of ``LTCAgent.act``, the TorchScript exports (the reference graph and
    ``kernel="native"``; the latter left out where the native kernel is unavailable) and the ONNX export
    (``onnxruntime``; left out where it is not installed), taking turns block by block."""
    torch.set_num_threads(threads)
    agent = halfcheetah_sized_agent(wiring)
    rng = np.random.default_rng(1)
    obs = rng.normal(size=agent.network.observation_shape).astype(np.float32)
    calls: dict[str, Any] = {"agent": lambda: agent.act(obs)}
    kernels = ["reference"] + (["native"] if native.ensure_for(agent.network) else [])
    with tempfile.TemporaryDirectory() as folder:
        obs_t, dt_t = torch.as_tensor(obs[None]), torch.ones(1)
        for kernel in kernels:
            scripted, _ = load_torchscript(export_torchscript(agent, Path(folder) / f"{kernel}.pt", kernel=kernel))
            calls["torchscript" if kernel == "reference" else "torchscript_native"] = _scripted_step(
                scripted, obs_t, torch.zeros(1, agent.state_size), dt_t)
        try:
            import onnxruntime
        except ImportError:
            onnxruntime = None
        if onnxruntime is not None:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = threads
            session = onnxruntime.InferenceSession(str(export_onnx(agent, Path(folder) / "policy.onnx")), options,
                                                   providers=["CPUExecutionProvider"])
            names = {i.name for i in session.get_inputs()}
            feed = {k: v for k, v in {"obs": obs[None], "state": np.zeros((1, agent.state_size), np.float32),
                                      "dt": np.ones(1, np.float32)}.items() if k in names}

            def onnx_step() -> None:
                _, feed["state"] = session.run(None, feed)

            calls["onnx"] = onnx_step
        with torch.inference_mode():
            return interleaved_latency(calls, blocks=blocks)


def _scripted_step(module: torch.jit.ScriptModule, obs: torch.Tensor, state: torch.Tensor,
                   dt: torch.Tensor) -> Callable[[], None]:
    """One control step of a loaded TorchScript export, its state fed back."""
    held = {"state": state}

    def step() -> None:
        _, held["state"] = module(obs, held["state"], dt)

    return step


def format_agent_latency(results: dict[str, dict[str, float]]) -> str:
    """A markdown table: per wiring, the agent's step and each export's step with its ratio to the agent."""
    heading = " | ".join(f"{label} us (x agent)" for _, label in EXPORT_PATHS)
    lines = ["Control step of a HalfCheetah-sized policy (17 obs, 64 neurons, 6 actions, normalisation; batch 1, "
             "us, median of a block, best block, the paths taking turns):", "",
             f"| policy | LTCAgent.act us | {heading} |", "|---|---|" + "---|" * len(EXPORT_PATHS)]
    for label, seconds in results.items():
        agent = seconds["agent"]
        cells = [f"{seconds[name] * 1e6:.1f} ({seconds[name] / agent:.2f}x)" if name in seconds else "-"
                 for name, _ in EXPORT_PATHS]
        lines.append(f"| {label} | {agent * 1e6:.1f} | {' | '.join(cells)} |")
    return "\n".join(lines)
