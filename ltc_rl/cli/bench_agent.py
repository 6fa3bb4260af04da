"""Control-step latency where users call it, at batch 1 on CPU: ours against ncps, the agent against its exports.

    python scripts/bench_agent.py               # FC 64 and AutoNCP(64,6), one torch thread
    python scripts/bench_agent.py --blocks 5    # shorter (fewer blocks of calls per path)
    python scripts/bench_agent.py --json out.json

Prints (1) one step through the sequence API, ``y, h = LTC(17, wiring)(x_t, h)``, ncps's against
ltc_rl's with the ratio; (2) ``LTCAgent.act`` on a HalfCheetah-sized policy (17 observations,
normalisation, 64 neurons, 6 actions) with its TorchScript exports (the reference graph and
``kernel="native"``) and its ONNX export. The paths being compared take turns block by block (see
ltc_rl/bench/cell.py and agents/benchmark.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from agents.benchmark import AGENT_WIRINGS, agent_step_latency, format_agent_latency
from ltc_rl.cli import add_num_threads, check_num_threads
from ltc_rl.errors import ConfigError, check_output_file, cli_main
from ltc_rl.kernels import native
from ltc_rl.bench.cell import format_step_latency, sequence_step_latency
from ltc_rl.runs.files import atomic_write


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_num_threads(parser, default=1)
    parser.add_argument("--blocks", type=int, default=15, help="blocks of calls per path; the best counts (default 15)")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements to this JSON file")
    args = parser.parse_args(argv)
    check_num_threads(args.num_threads)
    if args.blocks < 1:
        raise ConfigError(f"--blocks must be >= 1, got {args.blocks}.")
    if args.json is not None:
        check_output_file(args.json, "--json")
    return args


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    fused_path = native.describe()  # builds the native kernel here, not inside a timed block
    torch.set_num_threads(args.num_threads)
    steps = sequence_step_latency(args.num_threads, args.blocks)
    agents = {label: agent_step_latency(wiring, args.num_threads, args.blocks) for wiring, label in AGENT_WIRINGS}
    print(f"machine: {platform.processor() or platform.machine()}, {args.num_threads} torch thread(s); "
          f"ltc_rl fused solver on CPU: {fused_path}\n")
    print(format_step_latency(steps) + "\n")
    print(format_agent_latency(agents))
    if args.json is not None:
        text = json.dumps({"sequence_step": steps, "agent": agents}, indent=2)
        atomic_write(args.json, lambda handle: handle.write(text.encode()))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
