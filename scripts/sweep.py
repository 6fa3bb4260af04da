"""``ltc-sweep``, the command of ltc_rl/cli/sweep.py, run from a checkout as
``python scripts/sweep.py``."""

import sys

from ltc_rl.cli.sweep import main

if __name__ == "__main__":
    sys.exit(main())
