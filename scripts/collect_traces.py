"""``ltc-collect-traces``, the command of ltc_rl/cli/collect_traces.py, run from a checkout as
``python scripts/collect_traces.py``."""

import sys

from ltc_rl.cli.collect_traces import main

if __name__ == "__main__":
    sys.exit(main())
