"""Building and caching the native LTC kernel (ltc_rl.kernels.native, python -m ltc_rl.kernels.build).

Each test uses its own kernel cache (``TORCH_EXTENSIONS_DIR`` in a temporary folder) and runs the
processes that build, wait or hold the build lock as subprocesses with a timeout, so a lock that
deadlocks fails the test instead of hanging it. One test compiles the kernel for real (about a
minute); the others need no compiler run.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ltc_rl.cells import LTCCell
from ltc_rl.kernels import build, native

from conftest import REPO_ROOT

requires_compiler = pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                                       reason="no C++ compiler on PATH to build the native kernel")
BUILD_COMMAND = [sys.executable, "-m", "ltc_rl.kernels.build"]
DESCRIBE = [sys.executable, "-c", "from ltc_rl.kernels import native; print(native.describe())"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty kernel cache for this test and the processes it starts."""
    folder = tmp_path / "torch_extensions"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("LTC_RL_NATIVE", raising=False)
    return folder


def _run(command: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


def _holding_lock(seconds: float) -> list[str]:
    """A process that takes the build lock, says ``held`` and keeps it ``seconds`` long."""
    return [sys.executable, "-c", "import time; from ltc_rl.kernels import native\n"
            f"with native._build_lock(native._entry().lock, 30):\n    print('held', flush=True); time.sleep({seconds})"]


def test_cache_name_changes_with_source_flags_and_torch_version() -> None:
    name = native.cache_name("int f();", "AVX2", "2.13.0")
    assert re.fullmatch(r"ltc_rl_native_avx2_[0-9a-f]{12}", name), name
    assert native.cache_name("int f();", "AVX2", "2.13.0") == name
    variants = [native.cache_name("int g();", "AVX2", "2.13.0"),  # another checkout's source
                native.cache_name("int f();", "AVX2", "2.12.0"),  # another environment's torch
                native.cache_name("int f();", "AVX512", "2.13.0")]  # other compiler flags
    hashes = {candidate[-12:] for candidate in [name, *variants]}
    assert len(hashes) == 4, [name, *variants]


def test_ensure_for_builds_only_for_fast_fused_ltc_cells_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(native, "_enabled", True)
    monkeypatch.setattr(native, "native_kernel", lambda: calls.append(1) or object())
    for module in (torch.nn.LSTM(2, 3), LTCCell(2, 4, solver="rk4"), LTCCell(2, 4, fast=False), LTCCell(2, 4).half()):
        assert not native.ensure_for(module), module
    assert calls == []
    assert native.ensure_for(torch.nn.Sequential(torch.nn.Linear(2, 2), LTCCell(2, 4)))
    assert calls == [1]


def test_a_lock_left_by_a_dead_process_is_taken_over(cache: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = native._entry().lock
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname()}))
    taker = [sys.executable, "-c", "from ltc_rl.kernels import native\n"
             "with native._build_lock(native._entry().lock, 30):\n    print('acquired', flush=True)"]
    result = _run(taker, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "acquired", result.stderr
    assert f"taking over the build lock {lock} from pid {gone.pid} on {socket.gethostname()}" in result.stderr
    assert not lock.exists()  # released


def test_a_build_that_does_not_finish_gives_a_warning_and_the_fallback(cache: Path) -> None:
    lock = native._entry().lock
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(_holding_lock(120), cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        result = _run(DESCRIBE, timeout=60, LTC_RL_NATIVE_BUILD_TIMEOUT="2")
        waited = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("compiled graphs"), result.stdout
    owner = f"pid {holder.pid} on {socket.gethostname()}"
    assert f"ltc_rl: waiting for {owner} to finish building the native LTC kernel" in result.stderr
    assert result.stderr.count("gave up after") == 1, result.stderr
    assert re.search(rf"RuntimeWarning: gave up after \d+ s waiting for {owner} .*lock file {re.escape(str(lock))}\); "
                     rf"if no such build is running, delete {re.escape(str(lock))}; using the compiled-graph path",
                     result.stderr), result.stderr
    assert waited < 30


def test_build_command_without_a_compiler_is_one_error_line(cache: Path) -> None:
    result = _run(BUILD_COMMAND, timeout=60, CXX="/nonexistent")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: cannot build the native LTC kernel: C++ compiler '/nonexistent' not found (install g++ or clang++, "
        "or set CXX to one)"], result.stderr
    assert result.stdout == ""
    assert not any(cache.iterdir())  # no lock, no build folder left behind


def test_console_script_runs_the_build_command() -> None:
    tomllib = pytest.importorskip("tomllib")
    target = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]["ltc-build-kernel"]
    module, _, function = target.partition(":")
    assert getattr(importlib.import_module(module), function) is build.main


@pytest.mark.slow
@requires_compiler
def test_build_after_a_killed_build_announces_itself_and_later_loads_are_silent(cache: Path) -> None:
    """The real thing, once: a build SIGKILLed midway leaves its lock file and scratch folder; the next build
    takes over, says so, builds with a notice before and after, and the process after it loads silently."""
    entry = native._entry()
    killed = subprocess.Popen(BUILD_COMMAND, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert "building the native LTC kernel once" in killed.stderr.readline()
        time.sleep(2)  # the compiler is running
    finally:
        os.killpg(killed.pid, signal.SIGKILL)  # with its compiler processes
        killed.wait()
    assert json.loads(entry.lock.read_text())["pid"] == killed.pid
    assert list(cache.glob(f"{entry.name}.building-*")) and not entry.folder.exists()

    built = _run(BUILD_COMMAND, timeout=900)
    assert built.returncode == 0, built.stderr
    notices = [line for line in built.stderr.splitlines() if line.startswith("ltc_rl: ")]
    assert notices[0].startswith(f"ltc_rl: taking over the build lock {entry.lock} from pid {killed.pid}"), notices
    assert notices[1] == (f"ltc_rl: building the native LTC kernel once for this machine (about a minute; cached in "
                          f"{entry.folder}) ...")
    assert re.fullmatch(r"ltc_rl: native LTC kernel built in \d+ s", notices[2]), notices
    assert re.fullmatch(rf"native LTC kernel ready in [\d.]+ s: {re.escape(str(entry.library))}\n", built.stdout)
    assert sorted(path.name for path in cache.iterdir()) == [entry.name]  # no lock, no scratch folder

    loaded = _run(DESCRIBE, timeout=120)
    assert loaded.returncode == 0 and loaded.stdout.startswith("native C++ kernel"), loaded.stderr
    assert "ltc_rl:" not in loaded.stderr, loaded.stderr
