"""``ltc-benchmark-rl``, the command of ltc_rl/cli/benchmark_rl.py, run from a checkout as
``python scripts/benchmark_rl.py``."""

import sys

from ltc_rl.cli.benchmark_rl import main

if __name__ == "__main__":
    sys.exit(main())
