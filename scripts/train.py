"""``ltc-train``, the command of ltc_rl/cli/train.py, run from a checkout as
``python scripts/train.py``."""

import sys

from ltc_rl.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
