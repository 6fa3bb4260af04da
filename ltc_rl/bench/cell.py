"""LTC cell benchmark: ltc_rl's fast path against ``ncps.torch.LTC`` on the same shapes.

Used by ``scripts/bench_cell.py``. Each case runs in a fresh subprocess, so that

* its peak memory is its own: the worker resets the kernel's peak-RSS mark (``VmHWM``, via
  ``/proc/self/clear_refs``) right before each step and reads it right after; we report the
  highest peak and, as "step memory", the first step's growth over the RSS just before it (later
  steps reuse memory the allocator kept from the first, which would hide what a step needs);
* a case that needs too much memory fails alone: the worker caps its address space with
  ``resource.setrlimit(RLIMIT_AS)`` at its size after start-up plus ``memory_cap_gb`` and
  reports "OOM" instead of pushing the machine into swap or the OOM killer.

On CUDA, memory is ``torch.cuda.max_memory_allocated`` and no address-space cap is set.
Times are wall-clock. Every implementation gets one warm-up call first (reported separately: it
includes ``torch.compile``'s compile time and the allocator's first growth), then the best of
at least ``repeats`` runs counts (the least disturbed by other load on the machine); training
cases repeat until ``window_seconds`` have passed, so a fast implementation is sampled over the same
window of the machine's load as a slow one, not just a few moments of it.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["Case", "Result", "default_cases", "run_case", "run_cases", "format_cell_results", "worker_main",
           "interleaved_latency", "sequence_step_latency", "format_step_latency", "STEP_SHAPES"]

IMPLEMENTATIONS = ("ncps", "ltc_rl")


@dataclass(frozen=True)
class Case:
    """One measurement: an implementation on one shape."""

    impl: str  # "ncps" or "ltc_rl"
    kind: str  # "train" (forward + backward of a sequence) or "latency" (one no-grad step)
    wiring: str  # "fc" or "autoncp"
    units: int
    batch: int
    steps: int = 1
    inputs: int = 17
    motor: int = 6  # AutoNCP output size
    repeats: int = 3
    window_seconds: float = 0.0  # repeat steps (or latency blocks) until this much time has passed
    threads: int = 2
    device: str = "cpu"
    memory_cap_gb: float = 4.0
    latency_calls: int = 200  # latency: calls per block (the result is the best block's median)

    @property
    def label(self) -> str:
        wiring = f"FC {self.units}" if self.wiring == "fc" else f"AutoNCP({self.units},{self.motor})"
        shape = f"batch {self.batch}" + (f", seq {self.steps}" if self.kind == "train" else "")
        return f"{wiring}, {shape}"


@dataclass
class Result:
    case: Case
    status: str = "ok"  # "ok", "OOM", or an error message
    seconds: float | None = None  # best train step, or median latency of one step
    first_seconds: float | None = None  # first call, compile included
    peak_mb: float | None = None  # highest peak RSS over the steps (CUDA: max allocated)
    step_mb: float | None = None  # first step: its peak minus the memory just before it
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.case.label}


def default_cases(quick: bool = False, device: str = "cpu", threads: int = 2) -> list[Case]:
    """The reference shapes: training FC 64 (time, memory), batch-1 latency FC 32/64, AutoNCP vs FC,
    FC 128/256 within 4 GB (ncps attempted under a cap); on CUDA, FC 64 at batch 1024."""
    steps, repeats, window = (32, 1, 0.0) if quick else (128, 5, 8.0)
    base = Case("ltc_rl", "train", "fc", 64, 64, steps, repeats=repeats, window_seconds=window, threads=threads,
                device=device)
    if device != "cpu":
        gpu = replace(base, batch=1024, memory_cap_gb=0.0)
        return [replace(gpu, impl=impl) for impl in IMPLEMENTATIONS]
    ncps_cap = 12.0  # ncps needs ~7.5 GB at FC 64 / seq 128; larger shapes are reported as OOM
    cases = [replace(base, impl="ncps", memory_cap_gb=ncps_cap), base,
             replace(base, wiring="autoncp")]
    for units in (32, 64):
        latency = Case("ltc_rl", "latency", "fc", units, 1, repeats=1 if quick else 10, threads=threads,
                       window_seconds=0.0 if quick else 2.0, latency_calls=500 if quick else 200)
        cases += [replace(latency, impl="ncps"), latency]
    for units in (128, 256):
        cases.append(replace(base, units=units, repeats=1))
    cases.append(replace(base, impl="ncps", units=128, repeats=1, memory_cap_gb=ncps_cap))
    return cases


# ---------------------------------------------------------------------------- worker (subprocess)
def _status_kb(field_name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current RSS


def _build(case: Case):
    import torch

    if case.impl == "ncps":
        import ncps.torch
        import ncps.wirings as ncps_wirings

        wiring = ncps_wirings.FullyConnected(case.units) if case.wiring == "fc" else \
            ncps_wirings.AutoNCP(case.units, case.motor)
        model = ncps.torch.LTC(case.inputs, wiring)
    elif case.impl == "ltc_rl":
        from ltc_rl import wirings
        from ltc_rl.sequence import LTC

        wiring = wirings.FullyConnected(case.units) if case.wiring == "fc" else \
            wirings.AutoNCP(case.units, case.motor)
        model = LTC(case.inputs, wiring)
    else:
        raise ValueError(f"unknown implementation {case.impl!r}; choose one of {IMPLEMENTATIONS}.")
    return model.to(torch.device(case.device))


def _measure_train(case: Case, result: Result) -> None:
    import torch

    model = _build(case)
    cuda = case.device.startswith("cuda")
    x = torch.randn(case.batch, case.steps, case.inputs, device=case.device)

    def train_step() -> float:
        model.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        outputs, _ = model(x)
        outputs.pow(2).mean().backward()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    times, peaks = [], []
    started = time.perf_counter()
    for run in itertools.count():  # a warm-up call, then the measured ones
        if run > case.repeats and time.perf_counter() - started >= case.window_seconds:
            break
        model.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            _reset_peak_rss()
            before = _status_kb("VmRSS") * 1024
        seconds = train_step()
        peak = torch.cuda.max_memory_allocated() if cuda else _status_kb("VmHWM") * 1024
        peaks.append(peak)
        if run == 0:  # every byte the step needs still has to come from the system
            result.first_seconds = seconds
            result.step_mb = (peak - before) / 2**20
        else:
            times.append(seconds)
    result.seconds = min(times)
    result.peak_mb = max(peaks) / 2**20
    result.extra["runs"] = len(times)


def _measure_latency(case: Case, result: Result) -> None:
    import torch

    cell = _build(case).rnn_cell
    x = torch.randn(case.batch, case.inputs, device=case.device)
    state = torch.zeros(case.batch, case.units, device=case.device)
    cuda = case.device.startswith("cuda")
    with torch.no_grad():
        start = time.perf_counter()
        cell(x, state)
        result.first_seconds = time.perf_counter() - start
        for _ in range(50):
            cell(x, state)
        medians: list[float] = []
        started = time.perf_counter()
        while len(medians) < case.repeats or time.perf_counter() - started < case.window_seconds:
            samples = []
            for _ in range(case.latency_calls):
                start = time.perf_counter()
                cell(x, state)
                if cuda:
                    torch.cuda.synchronize()
                samples.append(time.perf_counter() - start)
            medians.append(statistics.median(samples))
    result.seconds = min(medians)  # the block least disturbed by other load on the machine
    result.extra["blocks"] = len(medians)
    result.extra["median_of_blocks"] = statistics.median(medians)


def measure(case: Case) -> Result:
    """Run one case in this process (the worker side of :func:`run_case`)."""
    import torch

    torch.set_num_threads(case.threads)
    torch.manual_seed(0)
    result = Result(case)
    if not case.device.startswith("cuda") and case.memory_cap_gb > 0:
        cap = _status_kb("VmSize") * 1024 + int(case.memory_cap_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    try:
        (_measure_train if case.kind == "train" else _measure_latency)(case, result)
    except (MemoryError, RuntimeError) as error:
        message = str(error)
        if isinstance(error, MemoryError) or "can't allocate memory" in message or "out of memory" in message:
            result.status = "OOM"
        else:
            result.status = f"error: {message.splitlines()[0][:200]}"
    return result


def worker_main() -> None:
    """Entry point of the subprocess: a Case as JSON in argv[1], the Result as JSON on stdout's last line."""
    case = Case(**json.loads(sys.argv[1]))
    print(json.dumps(measure(case).to_dict()))


# ---------------------------------------------------------------------------- driver
def run_case(case: Case, timeout_s: float = 1800.0) -> Result:
    """Measure ``case`` in a fresh interpreter."""
    command = [sys.executable, "-c", "from ltc_rl.bench.cell import worker_main; worker_main()",
               json.dumps(asdict(case))]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return Result(case, status=f"timeout after {timeout_s:.0f} s")
    if done.returncode != 0:
        killed = done.returncode < 0
        tail = done.stderr.strip().splitlines()[-1:] or [""]
        return Result(case, status="OOM (killed)" if killed else f"error: {tail[0][:200]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    data.pop("label")
    data["case"] = case
    return Result(**data)


def run_cases(cases: list[Case], progress: bool = True) -> list[Result]:
    from tqdm import tqdm

    results = []
    for case in tqdm(cases, desc="bench_cell", disable=not progress):
        results.append(run_case(case))
    return results


# ---------------------------------------------------------------------------- report
def _find(results: list[Result], impl: str, kind: str, wiring: str, units: int, batch: int) -> Result | None:
    for result in results:
        c = result.case
        if (c.impl, c.kind, c.wiring, c.units, c.batch) == (impl, kind, wiring, units, batch):
            return result
    return None


def _seconds(result: Result | None, scale: float = 1.0, digits: int = 3) -> str:
    if result is None:
        return "-"
    if result.status != "ok":
        return result.status
    return f"{result.seconds * scale:.{digits}f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "-"
    return f"{numerator / denominator:.1f}x"


def _ok(result: Result | None) -> bool:
    return result is not None and result.status == "ok"


def format_cell_results(results: list[Result]) -> str:
    """A markdown table per measure, with ncps/ltc_rl ratios from the same run."""
    lines = []
    train = sorted({(r.case.wiring, r.case.units, r.case.batch) for r in results if r.case.kind == "train"},
                   key=lambda k: (k[1], k[0] != "fc", k[2]))
    if train:
        lines += ["Training step (forward + backward of one sequence):", "",
                  "| shape | ncps s | ltc_rl s | time ratio | ncps peak MB (step MB) | ltc_rl peak MB (step MB) "
                  "| step-memory ratio | peak ratio | ltc_rl first call s (compile) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for wiring, units, batch in train:
            ncps_r = _find(results, "ncps", "train", wiring, units, batch)
            ours = _find(results, "ltc_rl", "train", wiring, units, batch)
            case = (ours or ncps_r).case

            def memory(r: Result | None) -> str:
                if not _ok(r):
                    return "-" if r is None else r.status
                return f"{r.peak_mb:.0f} ({r.step_mb:.0f})"

            both = _ok(ncps_r) and _ok(ours)
            lines.append(
                f"| {case.label} | {_seconds(ncps_r)} | {_seconds(ours)} | "
                f"{_ratio(ncps_r.seconds, ours.seconds) if both else '-'} | {memory(ncps_r)} | {memory(ours)} | "
                f"{_ratio(ncps_r.step_mb, ours.step_mb) if both else '-'} | "
                f"{_ratio(ncps_r.peak_mb, ours.peak_mb) if both else '-'} | "
                f"{f'{ours.first_seconds:.1f}' if _ok(ours) else '-'} |")
        fc, sparse = (_find(results, "ltc_rl", "train", w, 64, 64) for w in ("fc", "autoncp"))
        if _ok(fc) and _ok(sparse):
            lines += ["", f"Sparse vs dense (ltc_rl, same shapes): AutoNCP(64,6) {sparse.seconds:.3f} s vs "
                          f"FC 64 {fc.seconds:.3f} s: sparse is {fc.seconds / sparse.seconds:.2f}x the speed of dense."]
    latency = sorted({(r.case.units, r.case.batch) for r in results if r.case.kind == "latency"})
    if latency:
        lines += ["", "Single-step inference latency (no grad; median of a block of calls, the best block; us):", "",
                  "| shape | ncps us | ltc_rl us | ratio | ltc_rl first call s (compile) |", "|---|---|---|---|---|"]
        for units, batch in latency:
            ncps_r = _find(results, "ncps", "latency", "fc", units, batch)
            ours = _find(results, "ltc_rl", "latency", "fc", units, batch)
            case = (ours or ncps_r).case
            both = _ok(ncps_r) and _ok(ours)
            lines.append(f"| {case.label} | {_seconds(ncps_r, 1e6, 1)} | {_seconds(ours, 1e6, 1)} | "
                         f"{_ratio(ncps_r.seconds, ours.seconds) if both else '-'} | "
                         f"{f'{ours.first_seconds:.1f}' if _ok(ours) else '-'} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- control-step latency
#: The shapes of the control-step comparison: (label, wiring, units, motor neurons); 17 inputs.
STEP_SHAPES = (("FC 64", "fc", 64, 6), ("AutoNCP(64,6)", "autoncp", 64, 6))


def interleaved_latency(calls: dict[str, Any], blocks: int = 15, calls_per_block: int = 200,
                        warmup: int = 50) -> dict[str, float]:
    """Seconds per call of each function: the median of a block of calls, the best of ``blocks`` blocks.

    The functions take turns block by block, so that all of them are sampled over the same window
    of the machine's load and their ratios are fair even on a busy machine.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    best = {name: float("inf") for name in calls}
    for _ in range(blocks):
        for name, call in calls.items():
            samples = []
            for _ in range(calls_per_block):
                start = time.perf_counter()
                call()
                samples.append(time.perf_counter() - start)
            best[name] = min(best[name], statistics.median(samples))
    return best


def _sequence_models(wiring: str, units: int, motor: int, inputs: int) -> tuple[Any, Any]:
    """ncps's ``LTC`` and ours with the same circuit (ncps's generator) and the same weights."""
    import ncps.torch
    import ncps.wirings as ncps_wirings

    from ltc_rl import wirings
    from ltc_rl.sequence import LTC

    if wiring == "fc":
        theirs, ours = ncps_wirings.FullyConnected(units), wirings.FullyConnected(units, ncps_compatible=True)
    else:
        theirs, ours = ncps_wirings.AutoNCP(units, motor), wirings.AutoNCP(units, motor, ncps_compatible=True)
    reference, model = ncps.torch.LTC(inputs, theirs), LTC(inputs, ours)
    model.load_state_dict(reference.state_dict())  # the same parameter names; masks and polarities included
    return reference, model


def sequence_step_latency(threads: int = 1, blocks: int = 15, inputs: int = 17) -> list[dict[str, Any]]:
    """One control step through the sequence API, ``y, h = LTC(...)(x_t, h)`` with ``x_t`` of one time step,
    batch 1, no grad: ncps against ltc_rl on :data:`STEP_SHAPES` (needs ncps). Rows: label, ncps_s, ltc_rl_s."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = []
    for label, wiring, units, motor in STEP_SHAPES:
        reference, ours = _sequence_models(wiring, units, motor, inputs)
        x, h = torch.randn(1, 1, inputs), torch.zeros(1, units)
        with torch.no_grad():
            seconds = interleaved_latency({"ncps": lambda: reference(x, h), "ltc_rl": lambda: ours(x, h)},
                                          blocks=blocks, calls_per_block=100)
        rows.append({"label": label, "ncps_s": seconds["ncps"], "ltc_rl_s": seconds["ltc_rl"]})
    return rows


def format_step_latency(rows: list[dict[str, Any]]) -> str:
    """The sequence-API control-step comparison as a markdown table (us, ratio ncps / ltc_rl)."""
    lines = ["One control step through the sequence API, y, h = LTC(17, wiring)(x_t, h) (batch 1, no grad; "
             "us, median of a block, best block, the two taking turns):", "",
             "| shape | ncps us | ltc_rl us | ncps / ltc_rl |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['label']} | {row['ncps_s'] * 1e6:.1f} | {row['ltc_rl_s'] * 1e6:.1f} | "
                     f"{_ratio(row['ncps_s'], row['ltc_rl_s'])} |")
    return "\n".join(lines)
