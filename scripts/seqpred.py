"""``ltc-seqpred``, the command of ltc_rl/cli/seqpred.py, run from a checkout as
``python scripts/seqpred.py``."""

import sys

from ltc_rl.cli.seqpred import main

if __name__ == "__main__":
    sys.exit(main())
