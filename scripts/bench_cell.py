"""``ltc-bench-cell``, the command of ltc_rl/cli/bench_cell.py, run from a checkout as
``python scripts/bench_cell.py``."""

import sys

from ltc_rl.cli.bench_cell import main

if __name__ == "__main__":
    sys.exit(main())
