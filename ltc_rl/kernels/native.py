"""The native CPU kernel of the fused-solver LTC (``ltc_native.cpp``), built on first use.

:mod:`ltc_rl.kernels.ltc_fast` runs the fused solver through this kernel on CPU: the sequence
forward and backward passes, the sensory drive of all time steps, and batch-1 inference (one call,
parameter preparation included). One thread walks a group of batch rows through the whole
sequence (no per-step Python, no per-unfold thread start-up); float32 synapse activations come from
a polynomial ``2^y`` in a dozen vector instructions (within 5e-6 of ``torch.sigmoid``), and the
backward pass recomputes them instead of storing them. The source is compiled once per machine with
PyTorch's C++ extension builder (a C++ compiler and ninja; the result is cached in
``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``, so later processes load it in
well under a second). Where it cannot be built, :func:`native_kernel` warns once and returns
None, and the compiled-graph path runs instead (same results).

``LTC_RL_NATIVE=0`` switches it off for the process, as does :func:`set_native_enabled`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["native_kernel", "native_enabled", "set_native_enabled", "applies", "describe"]

_ENV_VAR = "LTC_RL_NATIVE"
_SOURCE = Path(__file__).with_name("ltc_native.cpp")
_enabled = os.environ.get(_ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")
_module: ModuleType | None = None
_failed = False


def native_enabled() -> bool:
    """Whether the native kernel is used where it applies (True unless ``LTC_RL_NATIVE=0`` or switched off)."""
    return _enabled


def set_native_enabled(enabled: bool) -> None:
    """Use (True) or bypass (False) the native kernel in this process."""
    global _enabled
    _enabled = bool(enabled)


#: Compiler flags per CPU capability that ATen itself dispatches to on this machine.
_ARCH_FLAGS = {"AVX512": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mfma"],
               "AVX2": ["-mavx2", "-mfma"]}


def _capability() -> str:
    """``AVX512``, ``AVX2`` or ``DEFAULT``: the vector instruction set the kernel is built for."""
    capability = torch.backends.cpu.get_cpu_capability().upper()
    return capability if capability in _ARCH_FLAGS else "DEFAULT"


def native_kernel() -> ModuleType | None:
    """The compiled kernel module, building it on the first call; None where disabled or unbuildable."""
    global _module, _failed
    if not _enabled or _failed:
        return None
    if _module is None:
        from torch.utils.cpp_extension import load

        capability = _capability()
        macros = [f"-DCPU_CAPABILITY={capability}"]
        if capability != "DEFAULT":
            macros.append(f"-DCPU_CAPABILITY_{capability}")
        try:
            _module = load(name=f"ltc_rl_native_{capability.lower()}", sources=[str(_SOURCE)],
                           extra_cflags=["-O3", "-fopenmp", "-fno-math-errno", *_ARCH_FLAGS.get(capability, []),
                                         *macros],
                           extra_ldflags=["-fopenmp"], verbose=False)
        except Exception as error:  # noqa: BLE001 - any build problem: fall back, never fail
            _failed = True
            first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            warnings.warn(f"the native LTC kernel could not be built ({type(error).__name__}: {first_line}); "
                          "using the compiled-graph path instead (same results, slower).", RuntimeWarning,
                          stacklevel=2)
            return None
    return _module


def applies(state: torch.Tensor, parameter: torch.Tensor, solver: str) -> bool:
    """Whether the native kernel serves this case: fused solver, CPU, float32 or float64 throughout."""
    return (_enabled and solver == "fused" and state.device.type == "cpu" and parameter.device.type == "cpu"
            and state.dtype in (torch.float32, torch.float64) and parameter.dtype == state.dtype
            and native_kernel() is not None)


def describe() -> str:
    """Which CPU path the fused solver takes in this process (builds the kernel if needed), for reports."""
    if not _enabled:
        return f"compiled graphs (native kernel switched off by {_ENV_VAR}=0)"
    kernel = native_kernel()
    if kernel is None:
        return "compiled graphs (the native kernel could not be built)"
    return f"native C++ kernel, {_capability()} ({kernel.vector_width()} float32 lanes)"
