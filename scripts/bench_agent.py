"""``ltc-bench-agent``, the command of ltc_rl/cli/bench_agent.py, run from a checkout as
``python scripts/bench_agent.py``."""

import sys

from ltc_rl.cli.bench_agent import main

if __name__ == "__main__":
    sys.exit(main())
