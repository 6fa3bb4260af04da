"""Train a policy on a gymnasium task into a run folder (model, statistics, config, logs, checkpoints, curve).

    python scripts/train.py --env HalfCheetah-v5                       # LTC policy, shipped defaults
    python scripts/train.py --env HalfCheetah-v5 --policy ncp --total-timesteps 200000 --seed 3
    python scripts/train.py --env CartPole-v1 --policy lstm --hp n_steps=64 --hp policy_kwargs.units=32
    python scripts/train.py --env HalfCheetahNoVel-v5 --obs-noise 0.1 --irregular 2,8 --dt-in-obs
    python scripts/train.py --env MyEnv-v0 --gym-packages my_envs --env-kwargs size:8   # your own registered env
    python scripts/train.py --resume runs/HalfCheetah-v5_ltc_seed3     # continue from the last checkpoint

Any id registered with gymnasium trains; ids without an entry in ltc_rl/hyperparams/*.yml use its `default`
entry (with a notice). --hp NAME=VALUE (repeatable) overrides the hyperparameters. Environments:
envs.make_vec; the env options are recorded in config.yaml.
"""

from __future__ import annotations

import argparse
import sys

import torch

import envs
from ltc_rl.cli import (add_env_arguments, add_num_threads, add_obs_noise, add_total_timesteps, check_num_threads,
                        parse_env_kwargs)
from ltc_rl.errors import cli_main, ConfigError
from ltc_rl.runs.config import POLICIES, parse_frame_range, parse_overrides, resolve_config
from ltc_rl.runs.training import SessionOptions, resume, train

ENV_OPTION_FLAGS = ("obs_noise", "irregular", "dt_in_obs", "vec_env", "env_kwargs", "gym_packages")
#: Flags that set a hyperparameter of the pipeline (rl-zoo's names).
SCHEDULE_FLAGS = {"eval_freq": "eval_freq", "eval_episodes": "n_eval_episodes", "save_freq": "checkpoint_freq"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", help=f"any registered gymnasium id (shipped: {', '.join(envs.available_ids())})")
    parser.add_argument("--policy", default=None, help=f"one of {', '.join(POLICIES)} (default ltc)")
    add_total_timesteps(parser, help="environment steps (default: the env's n_timesteps)")
    parser.add_argument("--n-envs", type=int, help="parallel environment copies (default: from the hyperparameters)")
    parser.add_argument("--seed", type=int, help="random seed (default: drawn and recorded in config.yaml)")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda (default auto)")
    parser.add_argument("--output", help="run folder to create (default runs/<env>_<policy>_seed<seed>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its newest checkpoint")
    parser.add_argument("--trained-agent", metavar="MODEL_ZIP",
                        help="start a new run from a trained model's parameters (and the normalisation statistics "
                             "beside it)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="with --resume: also load the pickled checkpoints of older versions (this runs any code "
                             "they hold: only for run folders from a source you trust)")
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                        help="hyperparameter override, e.g. --hp n_steps=256 --hp policy_kwargs.units=32")
    parser.add_argument("--eval-freq", type=int, help="evaluate every N environment steps (0: never)")
    parser.add_argument("--eval-episodes", type=int, help="episodes per evaluation")
    parser.add_argument("--save-freq", type=int, help="checkpoint every N environment steps (0: only at the end)")
    add_obs_noise(parser, help="sigma of Gaussian observation noise (default 0)")
    parser.add_argument("--irregular", metavar="MIN,MAX",
                        help="irregular sampling: a random number of simulation frames in [MIN, MAX] per step")
    parser.add_argument("--dt-in-obs", action="store_true", default=None,
                        help="append each step's elapsed time to the observation")
    parser.add_argument("--vec-env", choices=("dummy", "subproc"),
                        help="environment copies in this process (dummy, default) or one process each (subproc)")
    add_env_arguments(parser)
    add_num_threads(parser)
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="0: errors only, 1: start banner, evaluations, next step (default), 2: also SB3's log")
    parser.add_argument("--log-interval", type=int, default=1, help="rollouts between two log points (default 1)")
    parser.add_argument("--tensorboard-log", metavar="DIR", help="TensorBoard events here (default RUN/logs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, argv: list[str]) -> None:
    if check_num_threads(args.num_threads) is not None:
        torch.set_num_threads(args.num_threads)
    options = SessionOptions(verbose=args.verbose, log_interval=args.log_interval,
                             tensorboard_log=args.tensorboard_log, trained_agent=args.trained_agent)
    if args.resume:
        fixed = [name for name in ("env", "policy", "n_envs", "seed", "output", "trained_agent", *ENV_OPTION_FLAGS,
                                   *SCHEDULE_FLAGS) if getattr(args, name) is not None]
        if fixed or args.hp:
            raise ConfigError(f"--resume continues a run with its own configuration; drop "
                              f"{', '.join('--' + n.replace('_', '-') for n in fixed) or '--hp'} "
                              "(only --total-timesteps and --device may change).")
        result = resume(args.resume, args.total_timesteps, args.device, not args.no_progress, argv,
                        make_env=envs.make_vec, trust_pickle=args.trust_pickle, options=options)
    else:
        if args.trust_pickle:
            raise ConfigError("--trust-pickle applies to --resume only (--trained-agent loads current model files).")
        if not args.env:
            raise ConfigError("pass --env ENV_ID (e.g. --env HalfCheetah-v5) or --resume RUN_DIR.")
        envs.import_gym_packages(args.gym_packages or ())
        env_options = {"obs_noise": args.obs_noise or 0.0, "irregular": parse_frame_range(args.irregular),
                       "dt_in_obs": bool(args.dt_in_obs)}
        if args.env_kwargs:
            env_options["env_kwargs"] = parse_env_kwargs(args.env_kwargs)
        if args.gym_packages:
            env_options["gym_packages"] = list(args.gym_packages)
        overrides = parse_overrides(args.hp)
        overrides.update({name: getattr(args, flag) for flag, name in SCHEDULE_FLAGS.items()
                          if getattr(args, flag) is not None})
        config = resolve_config(args.env, args.policy or "ltc", args.total_timesteps, args.n_envs, args.seed,
                                args.device or "auto", overrides, env_options=env_options,
                                vec_env=args.vec_env or "dummy")
        output = f"runs/{config.env_id}_{config.policy}_seed{config.seed}" if args.output is None else args.output
        result = train(config, output, not args.no_progress, argv, make_env=envs.make_vec, options=options)
    print(f"done: {result.timesteps} steps, final evaluation return {result.final_mean_reward:.1f}, "
          f"best {result.best_mean_reward:.1f}; run folder {result.run_dir}")
    if args.verbose >= 1:
        print(f"next: python scripts/evaluate.py --model {result.run_dir}   (add --video out.gif or --plot-neurons "
              "neurons.png for pictures)")


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Bad input or a failed run: one line ``error: ...`` and exit code 2; Ctrl-C / SIGTERM: 130 / 143."""
    argv = sys.argv[1:] if argv is None else argv
    run(parse_args(argv), ["scripts/train.py", *argv])
    return 0


if __name__ == "__main__":
    sys.exit(main())
