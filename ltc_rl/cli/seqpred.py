"""The LTC paper's Half-Cheetah sequence-prediction study (Table 3): train, evaluate, tabulate.

    python scripts/seqpred.py --policies ltc,lstm,ctrnn,node,ctgru,cfc --seeds 3      # the paper's protocol
    python scripts/seqpred.py --data traces/ --policies ltc,lstm --epochs 2          # quick mode, own traces

Data: the paper's 31 traces (github.com/raminmh/liquid_time_constant_networks, experiments_with_ltcs/data/cheetah,
Apache-2.0). Without --data: $LTC_RL_CHEETAH_DATA, else ../shared/data/cheetah. Fewer than the paper's 200
epochs are reported as "not comparable to the paper". An existing, non-empty --out is never overwritten.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from ltc_rl.cli import add_num_threads, add_policies, check_num_threads, parse_list
from ltc_rl.errors import cli_main
from ltc_rl.seqpred import SEQPRED_MODELS
from ltc_rl.studies.seqpred import StudyConfig, run_seqpred_study
from ltc_rl.seqpred.data import default_data_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="folder of trace_XXXX.npy files (sorted: 5 valid, 10 test, 10 train); "
                        "default $LTC_RL_CHEETAH_DATA, else ../shared/data/cheetah")
    add_policies(parser, ",".join(SEQPRED_MODELS),
                 f"comma-separated networks to compare (default {','.join(SEQPRED_MODELS)})")
    parser.add_argument("--seeds", type=int, default=3, metavar="COUNT",
                        help="seeds 0..COUNT-1 per network (default 3)")
    parser.add_argument("--epochs", type=int, default=200, help="training epochs (paper: 200; 2 = quick mode)")
    parser.add_argument("--sparsity", type=float, default=0.0,
                        help="share of synapses / weights removed, as the paper's --sparsity (default 0)")
    parser.add_argument("--units", type=int, default=32, help="hidden units (paper: 32)")
    parser.add_argument("--workers", type=int, default=1, help="runs trained in parallel processes (default 1)")
    add_num_threads(parser, default=1)
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--out", default="runs/seqpred", help="output folder (default runs/seqpred; must not exist)")
    return parser.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python scripts/seqpred.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    config = StudyConfig(data=args.data or default_data_dir(), out=args.out, models=parse_list(args.policies),
                         seeds=args.seeds, epochs=args.epochs, sparsity=args.sparsity, units=args.units,
                         workers=args.workers, threads=check_num_threads(args.num_threads), device=args.device, command=command)
    result = run_seqpred_study(config)
    print(result.table)
    print(result.files["table"].read_text().split(result.table)[-1].strip())
    print(f"wall time {result.wall_seconds / 60:.1f} min; wrote " + ", ".join(str(p) for p in result.files.values()))


if __name__ == "__main__":
    sys.exit(main())
