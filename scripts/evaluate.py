"""``ltc-evaluate``, the command of ltc_rl/cli/evaluate.py, run from a checkout as
``python scripts/evaluate.py``."""

import sys

from ltc_rl.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
