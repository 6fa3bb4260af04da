"""Record observation traces (trace_XXXX.npy, steps x obs_dim) in the LTC paper's format.

    python scripts/collect_traces.py --env HalfCheetah-v4 --episodes 31 --out traces/             # random policy
    python scripts/collect_traces.py --env HalfCheetah-v4 --model RUN_DIR --episodes 31 --out traces/
    python scripts/seqpred.py --data traces/ --policies ltc,lstm
"""

from __future__ import annotations

import argparse
import sys

import envs
from agents.evaluation import load_trace_policy
from ltc_rl.errors import cli_main
from ltc_rl.seqpred import collect_traces


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v4", help="environment id (default HalfCheetah-v4)")
    parser.add_argument("--model", default=None,
                        help="trained RecurrentPPO run folder (best/model.zip, else model.zip, else the newest "
                             "checkpoint, with its statistics) or .zip file; default: uniformly random actions")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="also load pickled files of older versions (this runs any code they hold: only for "
                             "files from a source you trust)")
    parser.add_argument("--stochastic", action="store_true", help="sample the trained policy's actions instead of "
                        "taking the mode")
    parser.add_argument("--episodes", type=int, default=31, help="trace files to write (default 31, as the paper)")
    parser.add_argument("--steps", type=int, default=1000, help="observations per trace at most (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="episode k is reset with seed + k (default 0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace .npy files already in --out")
    return parser.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    policy = None if args.model is None else load_trace_policy(args.model, deterministic=not args.stochastic,
                                                                      trust_pickle=args.trust_pickle)
    files = collect_traces(lambda: envs.make(args.env), policy, episodes=args.episodes, out_dir=args.out,
                           max_steps=args.steps, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {len(files)} traces to {args.out} ({'random policy' if policy is None else args.model})")


if __name__ == "__main__":
    sys.exit(main())
