"""PPO training throughput on HalfCheetah-v4: our LTC and LSTM policies vs sb3-contrib's LSTM and SB3's MLP.

    python scripts/bench_ppo.py              # 2 PPO iterations x best of 2 per candidate (a few minutes)
    python scripts/bench_ppo.py --quick      # 1 iteration, 1 repeat
"""

from __future__ import annotations

import argparse
import sys

import torch

from ltc_rl.cli import add_num_threads, check_num_threads
from ltc_rl.errors import cli_main
from ltc_rl.bench.ppo import CANDIDATES, BenchSettings, format_results, run_benchmark


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 PPO iteration, 1 repeat")
    parser.add_argument("--iterations", type=int, default=2, help="PPO iterations (n_steps x n_envs steps each)")
    parser.add_argument("--repeats", type=int, default=2, help="round-robin repeats; the best run counts")
    parser.add_argument("--sequence-length", type=int, default=32, help="our truncated-BPTT length")
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated subset of "
                        + ",".join(CANDIDATES))
    add_num_threads(parser, default=1)
    parser.add_argument("--device", default="cpu", help="torch device for every candidate (default cpu)")
    return parser.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(check_num_threads(args.num_threads))
    settings = BenchSettings(iterations=1 if args.quick else args.iterations, repeats=1 if args.quick else args.repeats,
                             sequence_length=args.sequence_length, device=args.device,
                             candidates=tuple(c.strip() for c in args.candidates.split(",") if c.strip()))
    results = run_benchmark(settings)
    print(format_results(results, settings))


if __name__ == "__main__":
    sys.exit(main())
