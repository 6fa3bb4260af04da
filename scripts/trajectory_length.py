"""``ltc-trajectory-length``, the command of ltc_rl/cli/trajectory_length.py, run from a checkout as
``python scripts/trajectory_length.py``."""

import sys

from ltc_rl.cli.trajectory_length import main

if __name__ == "__main__":
    sys.exit(main())
