"""``ltc-bench-memory-task``, the command of ltc_rl/cli/bench_memory_task.py, run from a checkout as
``python scripts/bench_memory_task.py``."""

import sys

from ltc_rl.cli.bench_memory_task import main

if __name__ == "__main__":
    sys.exit(main())
