"""Multi-seed benchmark of policies x tasks x seeds (each run a scripts/train.py run), noise robustness, rliable report.

    python scripts/benchmark_rl.py --tasks HalfCheetah-v4,HalfCheetahNoVel-v4 --policies ltc,ncp,lstm,mlp \\
        --seeds 0,1,2 --total-timesteps 1000000 --obs-noise 0 0.1 0.2 --out runs/bench --workers 2 --num-threads 1
    python scripts/benchmark_rl.py --study ltc_rl/studies/halfcheetah.yml --out runs/bench_halfcheetah
    python scripts/benchmark_rl.py --study ltc_rl/studies/halfcheetah.yml --out runs/bench_halfcheetah --ray auto
    python scripts/benchmark_rl.py --out runs/bench_halfcheetah --report-only

Rerunning the same command continues an interrupted benchmark (finished runs are skipped, unfinished ones
continue from their checkpoint); seeds, tasks and policies may be added to an existing benchmark folder.
The study file (YAML) names tasks with env options and policy variants with --hp overrides (see
ltc_rl/studies/rl_benchmark.py). Writes results.md, results.csv and PNGs into --out.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import envs
from agents.evaluation import evaluate_run_noise
from ltc_rl.cli import add_num_threads, add_obs_noise, add_total_timesteps, check_num_threads
from ltc_rl.errors import cli_main
from ltc_rl.studies.rl_benchmark import build_settings, load_study, run_benchmark
from ltc_rl.studies.rl_report import write_report
from ltc_rl.runs.config import POLICIES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="benchmark folder (rerun the same command to continue)")
    parser.add_argument("--study", metavar="FILE.yml", help="tasks, policy variants, seeds, steps, noise levels")
    parser.add_argument("--tasks", help="comma-separated task names of the study or gymnasium ids (shipped: "
                                        f"{', '.join(envs.available_ids())})")
    parser.add_argument("--policies", help=f"comma-separated policy names, from the study or {', '.join(POLICIES)}")
    parser.add_argument("--seeds", help="number of seeds (0..N-1) or a comma-separated list (default: study, else 0,1,2)")
    add_total_timesteps(parser, help="steps per run (default: the study's, else the env's n_timesteps)")
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                        help="hyperparameter for every run, as in train.py (repeatable)")
    add_obs_noise(parser, levels=True, help="observation-noise levels of the robustness evaluation, e.g. 0 0.1 0.2 "
                                            "(default: the study's, else none)")
    parser.add_argument("--noise-episodes", type=int, help="deterministic episodes per noise level (default 10)")
    parser.add_argument("--thresholds", metavar="RETURNS", help="results.csv: steps until each return, e.g. 3000")
    parser.add_argument("--reference", help="policy compared with every other by probability of improvement "
                                            "(default ltc)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--workers", type=int, default=1, help="runs at a time (default 1)")
    add_num_threads(parser, default=1)
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="run on Ray: a local instance, or the cluster at ADDRESS (auto, ray://HEAD:10001)")
    parser.add_argument("--progress-every", type=float, default=60.0, help="seconds between progress lines")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the report (default 2000)")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report from the finished runs")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    if args.report_only:
        paths = write_report(args.out, reps=args.reps)
        print(f"report: {paths['markdown']}")
        return 0
    settings = build_settings(
        load_study(args.study) if args.study else None, args.tasks, args.policies, args.seeds, args.total_timesteps,
        args.hp, args.obs_noise, args.noise_episodes, args.thresholds, args.reference, args.device,
        command=" ".join(shlex.quote(part) for part in ["python", "scripts/benchmark_rl.py", *argv]))
    result = run_benchmark(settings, args.out, workers=args.workers, threads=check_num_threads(args.num_threads),
                           use_ray=args.ray is not None, ray_address=None if args.ray in (None, "local") else args.ray,
                           make_env=envs.make_vec, evaluate_noise=evaluate_run_noise,
                           progress_every=args.progress_every, log=lambda line: print(line, flush=True))
    paths = write_report(result.output, result.settings, reps=args.reps)
    print(f"{result.done} of {len(result.planned)} runs done, {len(result.failed)} failed; report: "
          f"{Path(paths['markdown'])}")
    if result.interrupted or result.failed or result.done < len(result.planned):
        print("rerun the same command to continue the interrupted and failed runs.", file=sys.stderr)
        return 130 if result.interrupted else 1
    return 0


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Bad settings: one ``error:`` line, exit code 2; interrupted: 130; some runs failed: 1."""
    argv = sys.argv[1:] if argv is None else argv
    return run(parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
