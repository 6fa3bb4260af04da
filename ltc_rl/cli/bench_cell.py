"""LTC cell speed and memory: ltc_rl's fast path vs ncps.torch.LTC on the same shapes, in one run.

    python scripts/bench_cell.py                 # the BENCHMARKS.md shapes on CPU (about 2 minutes)
    python scripts/bench_cell.py --quick         # sequence 32, one repeat
    python scripts/bench_cell.py --device cuda   # FC 64, batch 1024, sequence 128 on the GPU
    python scripts/bench_cell.py --json out.json # also write every measurement as JSON

Every case runs in its own subprocess (peak memory is attributable; memory-capped, so an ncps
shape that needs too much memory is reported as OOM). See ltc_rl/bench/cell.py.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from ltc_rl.cli import add_num_threads, check_num_threads
from ltc_rl.devices import check_device
from ltc_rl.errors import check_output_file, cli_main
from ltc_rl.kernels import native
from ltc_rl.bench.cell import default_cases, format_cell_results, run_cases
from ltc_rl.runs.files import atomic_write


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--quick", action="store_true", help="sequence length 32 and one repeat")
    add_num_threads(parser, default=2)
    parser.add_argument("--json", type=Path, default=None, help="write the measurements to this JSON file")
    parser.add_argument("--only", choices=("train", "latency"), default=None, help="run one kind of case")
    return parser.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    check_device(args.device)
    check_num_threads(args.num_threads)
    if args.json is not None:
        check_output_file(args.json, "--json")
    cases = [c for c in default_cases(args.quick, args.device, args.num_threads) if args.only in (None, c.kind)]
    fused_path = native.describe()  # builds the native kernel here, not inside a timed case
    results = run_cases(cases)
    print(f"machine: {platform.processor() or platform.machine()}, {args.num_threads} torch threads, "
          f"device {args.device}; ltc_rl fused solver on CPU: {fused_path}\n")
    print(format_cell_results(results))
    if args.json is not None:
        text = json.dumps([r.to_dict() for r in results], indent=2, default=str)
        atomic_write(args.json, lambda handle: handle.write(text.encode()))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
