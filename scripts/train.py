"""Train a policy on a gymnasium task into a run folder (model, statistics, config, logs, checkpoints, curve).

    python scripts/train.py --env HalfCheetah-v4                       # LTC policy, shipped defaults
    python scripts/train.py --env HalfCheetah-v4 --policy ncp --total-timesteps 200000 --seed 3
    python scripts/train.py --env CartPole-v1 --policy lstm --hp n_steps=64 --hp policy_kwargs.units=32
    python scripts/train.py --env HalfCheetahNoVel-v4 --obs-noise 0.1 --irregular 2,8 --dt-in-obs
    python scripts/train.py --resume runs/HalfCheetah-v4_ltc_seed3     # continue from the last checkpoint

Hyperparameters: ltc_rl/hyperparams/*.yml (per env id), overridden by --hp NAME=VALUE (repeatable).
Environments: envs.make_vec (ids: envs.available_ids()); the env options are recorded in config.yaml.
"""

from __future__ import annotations

import argparse
import sys

import envs
from ltc_rl.errors import cli_main
from ltc_rl.training import POLICIES, ConfigError, parse_frame_range, parse_overrides, resolve_config, resume, train

ENV_OPTION_FLAGS = ("obs_noise", "irregular", "dt_in_obs", "vec_env")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", help=f"environment id, one of {', '.join(envs.available_ids())}")
    parser.add_argument("--policy", default=None, help=f"one of {', '.join(POLICIES)} (default ltc)")
    parser.add_argument("--total-timesteps", type=int, help="environment steps (default: the env's n_timesteps)")
    parser.add_argument("--n-envs", type=int, help="parallel environment copies (default: from the hyperparameters)")
    parser.add_argument("--seed", type=int, help="random seed (default: drawn and recorded in config.yaml)")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda (default auto)")
    parser.add_argument("--output", help="run folder to create (default runs/<env>_<policy>_seed<seed>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its newest checkpoint")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="with --resume: also load the pickled checkpoints of older versions (this runs any code "
                             "they hold: only for run folders from a source you trust)")
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                        help="hyperparameter override, e.g. --hp n_steps=256 --hp policy_kwargs.units=32")
    parser.add_argument("--obs-noise", type=float, help="sigma of Gaussian observation noise (default 0)")
    parser.add_argument("--irregular", metavar="MIN,MAX",
                        help="irregular sampling: a random number of simulation frames in [MIN, MAX] per step")
    parser.add_argument("--dt-in-obs", action="store_true", default=None,
                        help="append each step's elapsed time to the observation")
    parser.add_argument("--vec-env", choices=("dummy", "subproc"),
                        help="environment copies in this process (dummy, default) or one process each (subproc)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, argv: list[str]) -> None:
    if args.resume:
        fixed = [name for name in ("env", "policy", "n_envs", "seed", "output", *ENV_OPTION_FLAGS)
                 if getattr(args, name) is not None]
        if fixed or args.hp:
            raise ConfigError(f"--resume continues a run with its own configuration; drop "
                              f"{', '.join('--' + n.replace('_', '-') for n in fixed) or '--hp'} "
                              "(only --total-timesteps and --device may change).")
        result = resume(args.resume, args.total_timesteps, args.device, not args.no_progress, argv,
                        make_env=envs.make_vec, trust_pickle=args.trust_pickle)
    else:
        if args.trust_pickle:
            raise ConfigError("--trust-pickle applies to --resume only (a new run loads nothing).")
        if not args.env:
            raise ConfigError("pass --env ENV_ID (e.g. --env HalfCheetah-v4) or --resume RUN_DIR.")
        env_options = {"obs_noise": args.obs_noise or 0.0, "irregular": parse_frame_range(args.irregular),
                       "dt_in_obs": bool(args.dt_in_obs)}
        config = resolve_config(args.env, args.policy or "ltc", args.total_timesteps, args.n_envs, args.seed,
                                args.device or "auto", parse_overrides(args.hp), env_options=env_options,
                                vec_env=args.vec_env or "dummy", env_ids=envs.available_ids())
        output = f"runs/{config.env_id}_{config.policy}_seed{config.seed}" if args.output is None else args.output
        result = train(config, output, not args.no_progress, argv, make_env=envs.make_vec)
    print(f"done: {result.timesteps} steps, final evaluation return {result.final_mean_reward:.1f}, "
          f"best {result.best_mean_reward:.1f}; run folder {result.run_dir}")


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Bad input or a failed run: one line ``error: ...`` and exit code 2; Ctrl-C / SIGTERM: 130 / 143."""
    argv = sys.argv[1:] if argv is None else argv
    run(parse_args(argv), ["scripts/train.py", *argv])
    return 0


if __name__ == "__main__":
    sys.exit(main())
