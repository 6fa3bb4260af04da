"""Training throughput with --vec-env dummy vs subproc (SB3's DummyVecEnv / SubprocVecEnv), per policy, one run.

    python scripts/bench_vecenv.py                          # HalfCheetah-v4, ltc and mlp, 8192 steps x best of 3
    python scripts/bench_vecenv.py --steps 4096 --repeats 2 --policies ltc
"""

from __future__ import annotations

import argparse

import torch

import envs
from ltc_rl.errors import cli_main
from ltc_rl.cli import add_num_threads, add_policies, check_num_threads, parse_list
from ltc_rl.bench.vecenv import VecEnvBenchSettings, format_vec_env_results, run_vec_env_benchmark


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v4", help="environment id (default HalfCheetah-v4)")
    add_policies(parser, "ltc,mlp", "comma-separated policies (default ltc,mlp)")
    parser.add_argument("--steps", type=int, default=8192, help="environment steps per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="round-robin repeats; the best run counts")
    parser.add_argument("--n-envs", type=int, help="environment copies (default: the shipped hyperparameters)")
    add_num_threads(parser, default=1)
    return parser.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(check_num_threads(args.num_threads))
    settings = VecEnvBenchSettings(env_id=args.env, policies=tuple(parse_list(args.policies)),
                                   steps=args.steps, repeats=args.repeats, n_envs=args.n_envs)
    print(format_vec_env_results(run_vec_env_benchmark(settings, envs.make_vec), settings))


if __name__ == "__main__":
    raise SystemExit(main())
