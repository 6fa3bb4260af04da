"""sb3-contrib's recurrent-PPO learning check (CartPole without velocities, 50k steps, return >= 450) on our
recurrent policies and on sb3-contrib's own RecurrentPPO, the same seeds for each.

    python scripts/bench_memory_task.py                         # ltc, lstm and sb3-contrib's LSTM, seeds 0-2
    python scripts/bench_memory_task.py --candidates ltc --seeds 1, --hp critic=detached
"""

from __future__ import annotations

import argparse
import sys

import gymnasium as gym
import torch

import envs  # noqa: F401 - registers CartPoleNoVel-v1
from ltc_rl.bench.memory_task import CANDIDATES, format_results, run_check
from ltc_rl.cli import add_num_threads, check_num_threads
from ltc_rl.errors import cli_main
from ltc_rl.parsing import parse_list, parse_seeds
from ltc_rl.runs.config import check_hyperparams, parse_overrides, policy_classes_from_names

ENV_ID = "CartPoleNoVel-v1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", default="ltc,lstm,sb3-contrib-lstm",
                        help=f"comma-separated, from {', '.join(CANDIDATES)} (default ltc,lstm,sb3-contrib-lstm)")
    parser.add_argument("--seeds", default="0,1,2", help="number of seeds (0..N-1) or a comma-separated list")
    parser.add_argument("--total-timesteps", type=int, default=50_000, help="steps per run (default 50000)")
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                        help="policy keyword for our policies only, e.g. critic=detached, "
                             "cell_kwargs.ode_unfolds=1 or features_extractor_class=linear (repeatable)")
    add_num_threads(parser, default=1)
    return parser.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(check_num_threads(args.num_threads))
    policy_kwargs = parse_overrides(args.hp)
    check_hyperparams({"policy_kwargs": policy_kwargs}, "RecurrentPPO", origin="--hp")
    results = run_check(lambda: gym.make(ENV_ID), parse_list(args.candidates), parse_seeds(args.seeds),
                        total_timesteps=args.total_timesteps, policy_kwargs=policy_classes_from_names(policy_kwargs))
    print(format_results(results))


if __name__ == "__main__":
    sys.exit(main())
