"""Evaluate a trained run: returns, robustness to observation noise, neuron activity, video.

    python scripts/evaluate.py --model runs/HalfCheetah-v5_ltc_seed0 --episodes 10
    python scripts/evaluate.py --model RUN_DIR --obs-noise 0 0.1 0.2 --json eval.json     # robustness table
    python scripts/evaluate.py --model RUN_DIR --plot-neurons neurons.png --video cheetah.mp4
    python scripts/evaluate.py --model RUN_DIR --diagnose        # time constants, memory, input sensitivity, memoryless return
    python scripts/evaluate.py --model RUN_DIR/best --env HalfCheetahNoVel-v5             # another task id
    python scripts/evaluate.py --model RUN_DIR --load-checkpoint 100000                   # or --load-best
    python scripts/evaluate.py --model RUN_DIR/checkpoints/ckpt_100000_steps.zip          # a checkpoint zip

Actions are the policy's mean (deterministic, as the evaluations during training and LTCAgent.act);
--stochastic samples them (rl-zoo's flag). The environment is rebuilt with the options the run was trained
with (config.yaml); --env and --obs-noise replace the task id and the noise level. A run folder without
model.zip (a run stopped early) loads its newest checkpoint. Nothing is unpickled: run folders of older
versions (vecnormalize.pkl) need --trust-pickle, which runs any code such a file holds: use it only for files
from a source you trust. Video needs MuJoCo's offscreen renderer (MUJOCO_GL=egl or osmesa) or, for
classic-control tasks, pygame; what is missing is said before any episode runs.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from agents.diagnostics import diagnose_cell, format_diagnostics
from agents.evaluation import (check_noise_levels, check_video, format_table, load_agent, plot_neuron_activity,
                               record_episode, record_video, resolve_env_id, robustness, write_json)
from ltc_rl.cli import add_alias, add_obs_noise
from ltc_rl.errors import LtcRlWarning, check_output_file, cli_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, metavar="RUN_DIR",
                        help="run folder of scripts/train.py (or its best/ folder, a model .zip or a checkpoint .zip)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--load-best", action="store_true", help="load the run's best model (best/model.zip)")
    which.add_argument("--load-checkpoint", type=int, metavar="STEPS",
                       help="load the run's checkpoint at STEPS timesteps (checkpoints/ckpt_STEPS_steps.zip)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="also load pickled files of older versions (this runs any code they hold: only for "
                             "files from a source you trust)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per setting (default 10)")
    parser.add_argument("--env", help="task id to evaluate on (default: the run's)")
    add_obs_noise(parser, levels=True,
                  help="observation-noise level(s); several give a robustness table (default: the run's)")
    parser.add_argument("--stochastic", action="store_true",
                        help="sample actions from the policy's distribution (default: its mean, deterministic)")
    add_alias(parser, "--deterministic", "deprecated_deterministic", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation environments (default 0)")
    parser.add_argument("--json", metavar="OUT.json", help="write the results as JSON")
    parser.add_argument("--plot-neurons", metavar="OUT.png",
                        help="neuron activity over one episode (+ OUT_wiring.png, the wiring diagram)")
    parser.add_argument("--diagnose", action="store_true",
                        help="time constants, memory and input sensitivity of the recurrent cell over one episode, "
                             "and its return with the state reset before every step (also in --json)")
    parser.add_argument("--video", metavar="OUT.mp4", help="render one episode (.mp4 or .gif)")
    parser.add_argument("--video-steps", type=int, default=1000, help="at most this many video frames (default 1000)")
    parser.add_argument("--device", default="cpu", help="torch device of the agent (default cpu)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    if args.deprecated_deterministic:
        warnings.warn("--deterministic is the default now; drop it (--stochastic samples actions).", LtcRlWarning,
                      stacklevel=1)
    deterministic = not args.stochastic
    levels = args.obs_noise or [None]
    check_noise_levels(levels)
    for flag, path, suffixes in (("--json", args.json, ()), ("--plot-neurons", args.plot_neurons, (".png",)),
                                 ("--video", args.video, (".mp4", ".gif"))):
        if path is not None:
            check_output_file(path, flag, suffixes)
    agent = load_agent(args.model, device=args.device, trust_pickle=args.trust_pickle, best=args.load_best,
                       checkpoint=args.load_checkpoint)
    if args.video:  # what a video needs is checked before the episodes run
        check_video(args.video, resolve_env_id(agent, args.env))
    results = robustness(agent, levels, args.episodes, args.env, deterministic, args.seed)
    print(format_table(results))
    trace = record_episode(agent, args.env, levels[0], args.seed, deterministic) \
        if args.plot_neurons or args.diagnose else None
    extra = {}
    if args.diagnose:
        memoryless = record_episode(agent, args.env, levels[0], args.seed, deterministic, memoryless=True)
        diagnostics = diagnose_cell(agent, trace, memoryless=memoryless)
        print(format_diagnostics(diagnostics, type(agent.cell).__name__))
        extra["cell_diagnostics"] = diagnostics.to_dict()
    if args.json:
        print(f"wrote {write_json(args.json, agent, results, deterministic=deterministic, seed=args.seed, **extra)}")
    if args.plot_neurons:
        for path in plot_neuron_activity(agent, trace, args.plot_neurons):
            print(f"wrote {path}")
    if args.video:
        path, frames = record_video(agent, args.video, args.env, levels[0], args.seed, deterministic,
                                    args.video_steps, progress=True)
        print(f"wrote {path} ({frames} frames)")
    return 0


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Bad input, missing or corrupt run files, mismatched environments: one ``error:`` line, exit code 2."""
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
