"""Build the native LTC kernel ahead of time (CI, Docker images, cluster nodes), so no run waits on it.

    python -m ltc_rl.kernels.build        # or the console script: ltc-build-kernel

Prints where the kernel is and how long building (or loading it from the cache) took; exit code 0.
Where it cannot be built (no C++ compiler or ninja, a failed compile, another build that does not
finish): one line ``error: ...`` and exit code 2. The cache folder is ``TORCH_EXTENSIONS_DIR``
(default ``~/.cache/torch_extensions``); see :mod:`ltc_rl.kernels.native`.
"""

from __future__ import annotations

import argparse
import sys
import time

from ltc_rl.errors import cli_main
from ltc_rl.kernels import native


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Builds (or loads) the kernel and reports it; :class:`~ltc_rl.kernels.native.NativeBuildError` -> exit 2."""
    argparse.ArgumentParser(prog="ltc-build-kernel", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    start = time.monotonic()
    library = native.build()
    print(f"native LTC kernel ready in {time.monotonic() - start:.1f} s: {library}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
