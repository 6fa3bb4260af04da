"""``ltc-bench-ppo``, the command of ltc_rl/cli/bench_ppo.py, run from a checkout as
``python scripts/bench_ppo.py``."""

import sys

from ltc_rl.cli.bench_ppo import main

if __name__ == "__main__":
    sys.exit(main())
