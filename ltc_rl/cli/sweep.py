"""Seeds and hyperparameter sweeps on Ray Tune (each trial a scripts/train.py run), and summaries across seeds.

    python scripts/sweep.py --env HalfCheetah-v4 --policies ltc,lstm --seeds 5            # local Ray, all cores
    python scripts/sweep.py --env HalfCheetah-v4 --policies ltc --seeds 3 --search space.yaml --samples 8
    python scripts/sweep.py --env HalfCheetah-v4 --policies ltc,lstm --seeds 5 --address auto   # on a Ray cluster
    python scripts/sweep.py --summarize runs/sweep_HalfCheetah-v4 [more run folders ...]

Rerunning the same command resumes an interrupted sweep (finished trials are not trained again).
Needs the distributed extra: pip install ltc_rl[distributed]. Search-space YAML (dotted names for nested
hyperparameters): `n_steps: [256, 512]`, `learning_rate: {loguniform: [1.0e-4, 1.0e-3]}`,
`policy_kwargs.units: {randint: [16, 64]}` (see ltc_rl/runs/sweep.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import envs
from ltc_rl.cli import add_obs_noise, add_policies, add_seeds, add_total_timesteps, parse_list, seeds_of
from ltc_rl.errors import cli_main, ConfigError
from ltc_rl.runs.summary import find_runs, write_summary
from ltc_rl.runs.sweep import (SCHEDULERS, SEARCH_ALGORITHMS, SweepSettings, load_search_space, run_sweep,
                               search_table, searched_names)
from ltc_rl.runs.config import POLICIES, parse_frame_range


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", help=f"any registered gymnasium id (shipped: {', '.join(envs.available_ids())})")
    add_policies(parser, "ltc", f"comma-separated, from {', '.join(POLICIES)} (default ltc)")
    add_seeds(parser, default=5)
    parser.add_argument("--search", metavar="SPACE_YAML", help="hyperparameter search space (YAML)")
    parser.add_argument("--search-alg", choices=SEARCH_ALGORITHMS, default="auto",
                        help="auto (grid when every entry is a list, else random), grid, random or optuna")
    parser.add_argument("--samples", type=int, default=1, help="configurations drawn by random / optuna search")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default="auto",
                        help="asha (stop bad trials early), fifo (never) or auto (asha when searching)")
    parser.add_argument("--grace-period", type=int, help="steps before ASHA may stop a trial (default: 1/4 of the run)")
    parser.add_argument("--search-seed", type=int, default=0, help="seed of the search algorithm")
    add_total_timesteps(parser, help="steps per trial (default: the env's n_timesteps)")
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                        help="fixed hyperparameter for every trial, as in train.py (repeatable)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    add_obs_noise(parser, default=0.0, help="sigma of Gaussian observation noise (default 0)")
    parser.add_argument("--irregular", metavar="MIN,MAX", help="random number of simulation frames per step")
    parser.add_argument("--dt-in-obs", action="store_true", help="append each step's elapsed time to the observation")
    parser.add_argument("--vec-env", choices=("dummy", "subproc"), default="dummy",
                        help="environment copies of a trial in its process or one process each")
    parser.add_argument("--output", help="sweep folder (default runs/sweep_<env>); rerun to resume")
    parser.add_argument("--address", help="existing Ray cluster: auto (on a cluster node) or ray://HEAD:10001")
    parser.add_argument("--num-cpus", type=int, help="cores of the local Ray instance (default all)")
    parser.add_argument("--max-concurrent", type=int, help="trials running at once (default: as resources allow)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0,
                        help="CPUs reserved per trial (default 1; raise it with --vec-env subproc)")
    parser.add_argument("--summarize", nargs="+", metavar="DIR",
                        help="only summarize the run folders under DIR(s) (no Ray needed)")
    parser.add_argument("--summary-out", help="folder for the --summarize files (default: the first DIR)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level of the interval")
    return parser.parse_args(argv)


def _print_tables(paths: dict[str, Path]) -> None:
    """Prints the summary and, for a search, the ranked trials among the written ``paths``."""
    for key in ("markdown", "search_markdown"):
        if key in paths:
            print(Path(paths[key]).read_text())


def summarize(args: argparse.Namespace) -> None:
    out_dir = args.summary_out or args.summarize[0]
    paths = write_summary(find_runs(*args.summarize), out_dir, args.confidence)
    names = list(dict.fromkeys(name for folder in args.summarize for name in searched_names(folder)))
    if names:
        paths.update(search_table(args.summarize, names, out_dir))
    _print_tables(paths)
    print("written: " + ", ".join(str(path) for path in paths.values()))


def sweep(args: argparse.Namespace) -> int:
    if not args.env:
        raise ConfigError("pass --env ENV_ID (e.g. --env HalfCheetah-v4), or --summarize DIR.")
    settings = SweepSettings(
        env_id=args.env, policies=tuple(parse_list(args.policies)), seeds=tuple(seeds_of(args)),
        total_timesteps=args.total_timesteps, overrides=tuple(args.hp),
        search_space=load_search_space(args.search) if args.search else {}, search_alg=args.search_alg,
        samples=args.samples, scheduler=args.scheduler, grace_period=args.grace_period,
        search_seed=args.search_seed, device=args.device,
        env_options={"obs_noise": args.obs_noise, "irregular": parse_frame_range(args.irregular),
                     "dt_in_obs": args.dt_in_obs},
        vec_env=args.vec_env)
    result = run_sweep(settings, f"runs/sweep_{args.env}" if args.output is None else args.output, address=args.address,
                       num_cpus=args.num_cpus, max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial,
                       make_env=envs.make_vec)
    _print_tables(result.summary)
    print(f"{result.trials} trials: {result.finished} finished, {result.stopped} stopped early by the scheduler, "
          f"{result.interrupted} interrupted, {len(result.errors)} failed; sweep folder {result.output}")
    for error in result.errors:
        print(f"trial failed: {error}", file=sys.stderr)
    if result.interrupted or result.errors:
        print("rerun the same command to resume the interrupted and failed trials.", file=sys.stderr)
        return 1
    return 0


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.summarize:
        summarize(args)
        return 0
    return sweep(args)


if __name__ == "__main__":
    sys.exit(main())
