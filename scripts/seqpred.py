"""The LTC paper's Half-Cheetah sequence-prediction study (Table 3): train, evaluate, tabulate.

    python scripts/seqpred.py --data ../shared/data/cheetah --models ltc,lstm,ctrnn,node,ctgru,cfc --seeds 3
    python scripts/seqpred.py --data traces/ --models ltc,lstm --epochs 2      # quick mode
"""

from __future__ import annotations

import argparse
import shlex
import sys

from ltc_rl.errors import cli_main
from ltc_rl.seqpred import SEQPRED_MODELS, StudyConfig, run_study


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder of trace_XXXX.npy files (sorted: 5 valid, 10 test, "
                        "10 train)")
    parser.add_argument("--models", default=",".join(SEQPRED_MODELS),
                        help=f"comma-separated models from {','.join(SEQPRED_MODELS)} (default: all)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per model (default 3)")
    parser.add_argument("--epochs", type=int, default=200, help="training epochs (paper: 200; 2 = quick mode)")
    parser.add_argument("--sparsity", type=float, default=0.0,
                        help="share of synapses / weights removed, as the paper's --sparsity (default 0)")
    parser.add_argument("--units", type=int, default=32, help="hidden units (paper: 32)")
    parser.add_argument("--workers", type=int, default=1, help="runs trained in parallel processes (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--out", default="runs/seqpred", help="output folder (default runs/seqpred)")
    return parser.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python scripts/seqpred.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    config = StudyConfig(data=args.data, out=args.out, models=[m.strip() for m in args.models.split(",") if m.strip()],
                         seeds=args.seeds, epochs=args.epochs, sparsity=args.sparsity, units=args.units,
                         workers=args.workers, threads=args.threads, device=args.device, command=command)
    result = run_study(config)
    print(result.table)
    print(result.files["table"].read_text().split(result.table)[-1].strip())
    print(f"wall time {result.wall_seconds / 60:.1f} min; wrote " + ", ".join(str(p) for p in result.files.values()))


if __name__ == "__main__":
    sys.exit(main())
