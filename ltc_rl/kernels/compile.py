"""``torch.compile`` with an eager fallback, switchable per process.

A :class:`Kernel` is a pure tensor function (plus static keyword arguments bound at creation).
When compilation is enabled it runs through ``torch.compile`` (Inductor: fused C++/OpenMP loops
on CPU, Triton on CUDA); the first call for a new shape pays the compile time, later calls are
fast. A :class:`GraphKernel` serves latency-critical small calls (batch-1 inference): it traces
the function once per input signature into an FX graph and compiles that with Inductor
directly, single-threaded, skipping ``torch.compile``'s per-call guard and wrapper work (about
15 us a call, as much as the whole batch-1 LTC step). When no compiler is usable (no C++
toolchain, no Triton, an unsupported platform) a kernel warns once and runs eagerly from then
on: the result is the same, only slower.

Compilation is on by default. Set the environment variable ``LTC_RL_COMPILE=0`` (the test suite
does) or use :func:`compile_mode` to run every kernel eagerly, e.g. for short jobs where
compile time would dominate.
"""

from __future__ import annotations

import functools
import os
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["Kernel", "GraphKernel", "kernel", "graph_kernel", "compile_enabled", "set_compile_enabled",
           "compile_mode"]

_ENV_VAR = "LTC_RL_COMPILE"
_enabled: bool = os.environ.get(_ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def compile_enabled() -> bool:
    """Whether kernels run through ``torch.compile`` (True unless ``LTC_RL_COMPILE=0`` or switched off)."""
    return _enabled


def set_compile_enabled(enabled: bool) -> None:
    """Switch compilation of all kernels on or off for this process."""
    global _enabled
    _enabled = bool(enabled)


@contextmanager
def compile_mode(enabled: bool) -> Iterator[None]:
    """Temporarily switch compilation on or off: ``with compile_mode(False): ...`` runs eagerly."""
    previous = compile_enabled()
    set_compile_enabled(enabled)
    try:
        yield
    finally:
        set_compile_enabled(previous)


def _bind(fn: Callable[..., Any], static: dict[str, Any]) -> Callable[..., Any]:
    """``fn`` with ``static`` bound, as a function with its own code object.

    torch.compile caches compiled graphs (and caps their number) per code object; a
    ``functools.partial`` would share one wrapper frame, and so one cache, among all kernels.
    """
    def bound(*args: Any) -> Any:
        return fn(*args, **static)

    name = getattr(fn, "__name__", "kernel")
    own = types.FunctionType(bound.__code__.replace(co_name=name), bound.__globals__, name, None, bound.__closure__)
    own.__doc__ = fn.__doc__
    return own


class _Fallback:
    """Runs the eager function when compilation is off or failed; warns once on failure."""

    def __init__(self, fn: Callable[..., Any], static: dict[str, Any]) -> None:
        self.eager = _bind(fn, static)
        self.name = getattr(fn, "__name__", repr(fn))
        self._unavailable = False

    @property
    def compiling(self) -> bool:
        return _enabled and not self._unavailable

    def fall_back(self, error: Exception, *args: Any) -> Any:
        """Run eagerly after ``error`` from the compiled path; a compiler problem disables compiling."""
        result = self.eager(*args)  # bad input raises its own (clear) error here
        self._unavailable = True
        warnings.warn(f"torch.compile is not usable for kernel {self.name!r} "
                      f"({type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}); "
                      "running it eagerly instead (same results, slower).", RuntimeWarning, stacklevel=3)
        return result


class Kernel(_Fallback):
    """A tensor function run compiled when enabled and possible, eagerly otherwise.

    Static arguments (solver, number of unfolds, flags) are bound at creation, so the compiled
    graph specialises on them; tensor arguments are passed per call. Shapes are compiled
    dynamically from the second distinct shape on (``torch.compile``'s default), so a new batch
    size does not trigger a compile per size. ``threads=1`` compiles single-threaded code: for
    small problems (batch-1 inference) thread start-up costs more than it saves.
    """

    def __init__(self, fn: Callable[..., Any], threads: int | None = None, **static: Any) -> None:
        super().__init__(fn, static)
        self.options = None if threads is None else {"cpp.threads": int(threads)}
        self._compiled: Callable[..., Any] | None = None

    def __call__(self, *args: Any) -> Any:
        if not self.compiling:
            return self.eager(*args)
        if self._compiled is None:
            self._compiled = torch.compile(self.eager, options=self.options)
        try:
            return self._compiled(*args)
        except Exception as error:  # noqa: BLE001 - fall_back tells a compiler problem from bad input
            return self.fall_back(error, *args)


class GraphKernel(_Fallback):
    """A tensor function compiled per input signature into one single-threaded Inductor graph.

    Called as ``kernel(signature, *tensors)``: ``signature`` is a hashable description of the
    tensors' shapes, dtypes and devices (the caller knows it cheaply) and the tensors must be
    contiguous; the function takes and returns flat tensors. Intended for small, fixed shapes
    under ``torch.no_grad()``.
    """

    def __init__(self, fn: Callable[..., Any], **static: Any) -> None:
        super().__init__(fn, static)
        self._graphs: dict[Any, Callable[..., Any]] = {}

    def _compile(self, tensors: tuple[torch.Tensor, ...]) -> Callable[..., Any]:
        from torch._inductor.compile_fx import compile_fx
        from torch.fx.experimental.proxy_tensor import make_fx

        graph = make_fx(self.eager)(*tensors)
        return compile_fx(graph, list(tensors), config_patches={"cpp.threads": 1, "size_asserts": False})

    def __call__(self, signature: Any, *tensors: torch.Tensor) -> Any:
        if not self.compiling:
            return self.eager(*tensors)
        with torch.no_grad():
            try:
                graph = self._graphs.get(signature)
                if graph is None:
                    graph = self._graphs[signature] = self._compile(tensors)
                return tuple(graph(*tensors))
            except Exception as error:  # noqa: BLE001 - fall_back tells a compiler problem from bad input
                return self.fall_back(error, *tensors)


@functools.cache
def _cached_kernel(fn: Callable[..., Any], threads: int | None, static: tuple[tuple[str, Any], ...]) -> Kernel:
    return Kernel(fn, threads, **dict(static))


def kernel(fn: Callable[..., Any], threads: int | None = None, **static: Any) -> Kernel:
    """The shared :class:`Kernel` for ``fn`` with these static arguments (one compiled graph per combination)."""
    return _cached_kernel(fn, threads, tuple(sorted(static.items())))


@functools.cache
def _cached_graph_kernel(fn: Callable[..., Any], static: tuple[tuple[str, Any], ...]) -> GraphKernel:
    return GraphKernel(fn, **dict(static))


def graph_kernel(fn: Callable[..., Any], **static: Any) -> GraphKernel:
    """The shared :class:`GraphKernel` for ``fn`` with these static arguments."""
    return _cached_graph_kernel(fn, tuple(sorted(static.items())))
