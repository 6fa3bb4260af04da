"""Compare LTC, NCP, CfC, LSTM and MLP policies on a partially observable task under observation noise.

    python scripts/pomdp_study.py --total-timesteps 24576 --out runs/pomdp_study          # this machine's budget
    python scripts/pomdp_study.py --total-timesteps 1000000 --seeds 3 --episodes 10       # the full study
    python scripts/pomdp_study.py --policies ltc,mlp --env CartPoleNoVel-v1 --total-timesteps 20000

Writes results.md, results.json and robustness.png to --out (rewritten after every run; finished
runs are reused on a rerun). The mechanism is agents.pomdp_study.
"""

from __future__ import annotations

import argparse
import sys

from agents.pomdp_study import NOISE_LEVELS, STUDY_POLICIES, run_pomdp_study
from ltc_rl.cli import add_obs_noise, add_policies, add_seeds, add_total_timesteps, parse_list, seeds_of
from ltc_rl.errors import cli_main
from ltc_rl.runs.config import parse_overrides


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetahNoVel-v4", help="task id (default HalfCheetahNoVel-v4)")
    add_policies(parser, ",".join(STUDY_POLICIES), f"comma-separated policies (default {','.join(STUDY_POLICIES)})")
    add_total_timesteps(parser, default=24_576, help="training steps per policy and seed (whole rollouts: 24576 = "
                        "12 x 2048 and 48 x 512; default 24576)")
    add_seeds(parser, default=1)
    add_obs_noise(parser, levels=True, default=list(NOISE_LEVELS),
                  help="evaluation observation-noise levels (default 0 0.1 0.2)")
    parser.add_argument("--episodes", type=int, default=5, help="evaluation episodes per level and seed (default 5)")
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                        help="hyperparameter override for every policy, e.g. --hp n_envs=2")
    parser.add_argument("--out", default="runs/pomdp_study", help="output folder (default runs/pomdp_study)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_pomdp_study(args.out, args.env, parse_list(args.policies), args.total_timesteps, seeds_of(args), args.obs_noise,
              args.episodes, parse_overrides(args.hp), not args.no_progress)
    print(f"wrote {args.out}/results.md, results.json, robustness.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
