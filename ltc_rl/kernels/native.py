"""The native CPU kernel of the fused-solver LTC (``ltc_native.cpp``), built once per machine.

:mod:`ltc_rl.kernels.ltc_fast` runs the fused solver through this kernel on CPU: the sequence
forward and backward passes, the sensory drive of all time steps, and batch-1 inference (one call,
parameter preparation included). One thread walks a group of batch rows through the whole
sequence (no per-step Python, no per-unfold thread start-up); float32 synapse activations come from
a polynomial ``2^y`` in a dozen vector instructions (within 5e-6 of ``torch.sigmoid``), and the
backward pass recomputes them instead of storing them. Loading the library also registers the batch
inference step as the operator ``torch.ops.ltc_rl.inference``, which traced TorchScript records
(``agents.export.export_torchscript(..., kernel="native")``).

Building and caching. The source is compiled with PyTorch's C++ extension builder (a C++ compiler
and ninja) on first use, or ahead of time by ``python -m ltc_rl.kernels.build``. The result lives in
``TORCH_EXTENSIONS_DIR`` (by default ``~/.cache/torch_extensions``) under a name that hashes the
source, the compiler flags and the torch and Python versions (:func:`cache_name`), so checkouts and
virtual environments with different sources never rebuild each other's kernel; later processes load
it in well under a second, silently. A build prints one line before and one after on stderr. It
runs in a temporary folder renamed into place when complete (no half-built cache), under a lock
file held with ``flock``: the operating system releases it when its holder dies, even by SIGKILL,
so a killed build never blocks the next one (torch's own lock, a file whose mere existence blocks,
is used only inside that private folder). A process that finds another build running says so
every 10 s and, after ``LTC_RL_NATIVE_BUILD_TIMEOUT`` seconds (default 900), gives up waiting.
Wherever the kernel cannot be had (no compiler, a failed build, that timeout),
:func:`native_kernel` warns once and returns None, and the compiled-graph path runs instead (same
results, slower).

``LTC_RL_NATIVE=0`` switches it off for the process, as does :func:`set_native_enabled`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import socket
import sys
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import torch

from ltc_rl.errors import LtcRlError, one_line

try:
    import fcntl
except ImportError:  # Windows: no flock (nor the GCC/Clang flags below); the compiled-graph path runs
    fcntl = None  # type: ignore[assignment]

__all__ = ["native_kernel", "native_enabled", "set_native_enabled", "applies", "describe", "ensure_for", "build",
           "cache_name", "cache_root", "NativeBuildError"]

_ENV_VAR = "LTC_RL_NATIVE"
_TIMEOUT_ENV_VAR = "LTC_RL_NATIVE_BUILD_TIMEOUT"
_DEFAULT_TIMEOUT_S = 900.0
_REPORT_EVERY_S = 10.0
_SOURCE = Path(__file__).with_name("ltc_native.cpp")
_enabled = os.environ.get(_ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")
_module: ModuleType | None = None
_failed = False


class NativeBuildError(LtcRlError, RuntimeError):
    """The native kernel cannot be had: no compiler or ninja, a failed compile, or another process's build
    that did not finish in time. The message is one line naming the cause and the fix."""


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


def _flags(capability: str) -> tuple[list[str], list[str]]:
    """``(compiler flags, linker flags)`` of the kernel built for ``capability``."""
    macros = [f"-DCPU_CAPABILITY={capability}"]
    if capability != "DEFAULT":
        macros.append(f"-DCPU_CAPABILITY_{capability}")
    return ["-O3", "-fopenmp", "-fno-math-errno", *_ARCH_FLAGS.get(capability, []), *macros], ["-fopenmp"]


def cache_name(source: str, capability: str, torch_version: str = torch.__version__) -> str:
    """The kernel's extension name, ``ltc_rl_native_<capability>_<12 hex digits>``.

    The digits hash the source text, the compiler and linker flags of ``capability``, the torch version
    and the Python ABI: whatever changes the library gives it another name (and folder), so builds of
    different checkouts or environments sit side by side in the cache instead of replacing each other.
    """
    cflags, ldflags = _flags(capability)
    key = "\0".join([source, *cflags, "|", *ldflags, torch_version, str(sysconfig.get_config_var("SOABI"))])
    return f"ltc_rl_native_{capability.lower()}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def cache_root() -> Path:
    """The folder of built kernels: ``TORCH_EXTENSIONS_DIR``, else torch's default (``~/.cache/torch_extensions``)."""
    from torch.utils.cpp_extension import get_default_build_root

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())


def _notice(message: str) -> None:
    print(f"ltc_rl: {message}", file=sys.stderr, flush=True)


def _wait_limit() -> float:
    text = os.environ.get(_TIMEOUT_ENV_VAR, "")
    try:
        return float(text) if text.strip() else _DEFAULT_TIMEOUT_S
    except ValueError:
        raise NativeBuildError(f"{_TIMEOUT_ENV_VAR}={text!r} is not a number of seconds; unset it or set e.g. "
                               f"{_TIMEOUT_ENV_VAR}=900.") from None


def _owner(fd: int) -> str:
    """Who holds (or held) the lock open as ``fd``, from what its holder wrote into it."""
    try:
        owner = json.loads(os.pread(fd, 4096, 0) or b"null")
        return f"pid {int(owner['pid'])} on {owner['host']}"
    except (OSError, ValueError, TypeError, KeyError):
        return "another process"


@contextlib.contextmanager
def _build_lock(path: Path, timeout: float) -> Iterator[None]:
    """Holds the build lock ``path`` for the ``with`` block; waits for another holder at most ``timeout`` s.

    An ``flock`` on the file, which the operating system releases when its holder exits or is killed: a lock
    file left behind by a killed build is taken over at once. The holder writes its pid and host into the
    file (for the messages of waiting processes) and removes it on release. Raises
    :class:`NativeBuildError` on timeout, naming the file.
    """
    if fcntl is None:
        raise NativeBuildError("cannot build the native LTC kernel: this platform has no POSIX file locks (fcntl)")
    start = time.monotonic()
    next_report = start
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(fd)
            os.close(fd)
            waited = time.monotonic() - start
            if waited >= timeout:
                raise NativeBuildError(
                    f"gave up after {waited:.0f} s waiting for {owner} to finish building the native LTC kernel "
                    f"(lock file {path}); if no such build is running, delete {path}") from None
            if time.monotonic() >= next_report:
                _notice(f"waiting for {owner} to finish building the native LTC kernel ({waited:.0f} s so far; "
                        f"lock file {path}) ...")
                next_report += _REPORT_EVERY_S
            time.sleep(0.2)
            continue
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if not current:  # its holder released (removed) it between our open and our lock: start again
            os.close(fd)
            continue
        break
    try:
        if os.fstat(fd).st_size:
            _notice(f"taking over the build lock {path} from {_owner(fd)}, whose build stopped before finishing")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _import(name: str, library: Path) -> ModuleType:
    """The built extension module ``name`` from its shared library."""
    try:
        spec = importlib.util.spec_from_file_location(name, library)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (ImportError, OSError) as error:
        raise NativeBuildError(f"cannot load the built native kernel {library} ({one_line(error)}); delete "
                               f"{library.parent} to build it again") from error
    return module


def _compile_summary(error: BaseException) -> str:
    """The telling line of a failed build's output: the first compiler ``error:``, else the last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.startswith("ninja:")]
    return next((line for line in lines if "error:" in line), lines[-1] if lines else type(error).__name__)[:300]


def _compile(name: str, capability: str, folder: Path) -> ModuleType:
    """Compiles the kernel ``name`` into ``folder``: in a temporary sibling folder, renamed into place when complete."""
    from torch.utils import cpp_extension

    compiler = cpp_extension.get_cxx_compiler()
    if shutil.which((shlex.split(compiler) or [""])[0]) is None:
        raise NativeBuildError(f"cannot build the native LTC kernel: C++ compiler {compiler!r} not found (install g++ "
                               "or clang++, or set CXX to one)")
    if not cpp_extension.is_ninja_available():
        raise NativeBuildError("cannot build the native LTC kernel: ninja not found (pip install ninja)")
    for leftover in folder.parent.glob(f"{name}.building-*"):  # of builds killed midway (we hold the lock)
        shutil.rmtree(leftover, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{name}.building-", dir=folder.parent))
    scratch.chmod(0o755)  # readable by other users as torch's own build folders are (mkdtemp makes it private)
    _notice(f"building the native LTC kernel once for this machine (about a minute; cached in {folder}) ...")
    start = time.monotonic()
    try:
        cflags, ldflags = _flags(capability)
        module = cpp_extension.load(name=name, sources=[str(_SOURCE)], extra_cflags=cflags, extra_ldflags=ldflags,
                                    build_directory=str(scratch), verbose=False)
        if folder.exists():  # a folder without a complete build (put there by hand): replaced
            shutil.rmtree(folder)
        scratch.rename(folder)
    except Exception as error:
        raise NativeBuildError(f"building the native LTC kernel failed: {_compile_summary(error)}") from error
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # left only by a failed or interrupted build
    _notice(f"native LTC kernel built in {time.monotonic() - start:.0f} s")
    return module


class _Entry(NamedTuple):
    """Where this machine's kernel lives in the cache."""

    name: str  # the extension name (see cache_name)
    folder: Path  # its build folder, present only once complete
    library: Path  # the shared library in that folder
    lock: Path  # the build lock, beside the folder


def _entry() -> _Entry:
    name = cache_name(_SOURCE.read_text(), _capability())
    root = cache_root()
    return _Entry(name, root / name, root / name / f"{name}.so", root / f"{name}.lock")


def _load_or_build() -> tuple[ModuleType, Path]:
    """The kernel module and its library file: loaded from the cache, else built (under the build lock)."""
    try:
        entry = _entry()
        if not entry.library.is_file():
            entry.lock.parent.mkdir(parents=True, exist_ok=True)
            with _build_lock(entry.lock, _wait_limit()):
                if not entry.library.is_file():  # else another process built it while we waited
                    return _compile(entry.name, _capability(), entry.folder), entry.library
        return _import(entry.name, entry.library), entry.library
    except OSError as error:  # e.g. a read-only cache folder, or file locks unsupported there
        raise NativeBuildError(f"cannot build the native LTC kernel ({one_line(error)}); where the cache folder is "
                               "the problem, set TORCH_EXTENSIONS_DIR to a writable local folder") from error


def build() -> Path:
    """Builds the kernel now (or loads it from the cache) and returns its library file.

    Unlike :func:`native_kernel` it raises :class:`NativeBuildError` when the kernel cannot be had and
    ignores ``LTC_RL_NATIVE``; the module it loads serves the rest of the process.
    """
    global _module, _failed
    if _module is not None:
        return _entry().library
    _module, library = _load_or_build()
    _failed = False
    return library


def native_kernel() -> ModuleType | None:
    """The compiled kernel module, built on the first call where needed; None where disabled or unavailable."""
    global _module, _failed
    if not _enabled or _failed:
        return None
    if _module is None:
        try:
            _module = _load_or_build()[0]
        except NativeBuildError as error:
            _failed = True
            warnings.warn(f"{error}; using the compiled-graph path instead (same results, slower).", RuntimeWarning,
                          stacklevel=2)
            return None
    return _module


def applies(state: torch.Tensor, parameter: torch.Tensor, solver: str) -> bool:
    """Whether the native kernel serves this case: fused solver, CPU, float32 or float64 throughout."""
    return (_enabled and solver == "fused" and state.device.type == "cpu" and parameter.device.type == "cpu"
            and state.dtype in (torch.float32, torch.float64) and parameter.dtype == state.dtype
            and native_kernel() is not None)


def ensure_for(module: torch.nn.Module) -> bool:
    """Builds or loads the kernel now if ``module`` holds a cell it serves; returns whether it does.

    Call it before a progress bar or worker processes start, so that a first build announces itself
    there rather than stalling the first forward pass. A cell it serves is an LTC cell on its fast
    path with the fused solver (``fast`` and ``solver == "fused"``) whose parameters are on the CPU.
    """
    for cell in module.modules():
        parameter = next(cell.parameters(recurse=False), None)
        if (parameter is not None and getattr(cell, "fast", False) and getattr(cell, "solver", None) == "fused"
                and applies(parameter, parameter, "fused")):
            return True
    return False


def describe() -> str:
    """Which CPU path the fused solver takes in this process (builds the kernel if needed), for reports."""
    if not _enabled:
        return f"compiled graphs (native kernel switched off by {_ENV_VAR}=0)"
    kernel = native_kernel()
    if kernel is None:
        return "compiled graphs (the native kernel could not be built)"
    return f"native C++ kernel, {_capability()} ({kernel.vector_width()} float32 lanes)"
