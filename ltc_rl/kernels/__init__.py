"""Fast implementations behind the cell API (see :mod:`ltc_rl.kernels.ltc_fast`)."""

from ltc_rl.kernels.compile import compile_enabled, compile_mode, set_compile_enabled

__all__ = ["compile_enabled", "compile_mode", "set_compile_enabled"]
