"""``ltc-bench-vecenv``, the command of ltc_rl/cli/bench_vecenv.py, run from a checkout as
``python scripts/bench_vecenv.py``."""

import sys

from ltc_rl.cli.bench_vecenv import main

if __name__ == "__main__":
    sys.exit(main())
