"""Expressivity by trajectory length (LTC paper, Section 5): LTC vs CT-RNN vs Neural ODE.

    python scripts/trajectory_length.py                      # the paper's sweeps, 5 random networks each
    python scripts/trajectory_length.py --widths 25,100 --depths 1,2 --sigmas 2,8 --solvers fused --samples 2
"""

from __future__ import annotations

import argparse
import sys

from ltc_rl.errors import cli_main
from ltc_rl.studies.trajectory_length import DEFAULT_AXES, TrajectoryConfig, run_trajectory_study


def _list(cast):
    return lambda text: tuple(cast(v) for v in text.split(",") if v.strip()) if text else ()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    join = lambda values: ",".join(str(v) for v in values)  # noqa: E731
    parser.add_argument("--widths", type=_list(int), default=DEFAULT_AXES["width"],
                        help=f"widths to sweep (default {join(DEFAULT_AXES['width'])}; empty string: skip)")
    parser.add_argument("--depths", type=_list(int), default=DEFAULT_AXES["depth"],
                        help=f"numbers of stacked layers (default {join(DEFAULT_AXES['depth'])})")
    parser.add_argument("--sigmas", type=_list(float), default=DEFAULT_AXES["sigma_w"],
                        help=f"weight scales sigma_w (default {join(DEFAULT_AXES['sigma_w'])})")
    parser.add_argument("--solvers", type=_list(str), default=DEFAULT_AXES["solver"],
                        help=f"LTC solvers (default {join(DEFAULT_AXES['solver'])})")
    parser.add_argument("--width", type=int, default=25, help="base width (default 25)")
    parser.add_argument("--depth", type=int, default=1, help="base depth (default 1)")
    parser.add_argument("--sigma-w", type=float, default=2.0, help="base weight scale (default 2)")
    parser.add_argument("--sigma-b", type=float, default=1.0, help="bias scale (default 1)")
    parser.add_argument("--steps", type=int, default=100, help="input samples around the circle (default 100)")
    parser.add_argument("--samples", type=int, default=5, help="random networks per setting (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="first random seed (default 0)")
    parser.add_argument("--out", default="runs/trajectory_length", help="output folder")
    return parser.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    base = TrajectoryConfig(width=args.width, depth=args.depth, sigma_w=args.sigma_w, sigma_b=args.sigma_b,
                            steps=args.steps, seed=args.seed)
    axes = {name: values for name, values in (("width", args.widths), ("depth", args.depths),
                                              ("sigma_w", args.sigmas), ("solver", args.solvers)) if values}
    result = run_trajectory_study(args.out, base, axes, args.samples)
    print(result["text"])
    print("wrote " + ", ".join(str(p) for p in result["files"].values()))


if __name__ == "__main__":
    sys.exit(main())
