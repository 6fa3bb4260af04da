"""``ltc-pomdp-study``, the command of ltc_rl/cli/pomdp_study.py, run from a checkout as
``python scripts/pomdp_study.py``."""

import sys

from ltc_rl.cli.pomdp_study import main

if __name__ == "__main__":
    sys.exit(main())
