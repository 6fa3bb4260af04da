"""The native CPU kernel of the fused solver (ltc_rl/kernels/ltc_native.cpp) against the reference cell.

tests/test_fast_ltc.py already runs every fused-solver case through the native kernel (it is the
default on CPU); this file adds the cases specific to it (batch-1 inference from the raw
parameters, float32 at a policy's sizes, the pre-synaptic-major dense forward) and checks that
the compiled-graph path it replaces stays correct and takes over when the kernel cannot be built.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from ltc_rl.kernels import native

from conftest import BATCH, INPUTS, assert_match, make_inputs, make_pair, run_sequence

pytestmark = pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                                reason="no C++ compiler on PATH to build the native kernel")


@pytest.fixture
def native_path(request: pytest.FixtureRequest):
    """Run the test with the native kernel on (True) or off (False); restore afterwards."""
    previous = native.native_enabled()
    native.set_native_enabled(request.param)
    yield request.param
    native.set_native_enabled(previous)


def test_kernel_builds_and_serves_the_fused_solver_on_cpu() -> None:
    assert native.native_kernel() is not None, "the native kernel failed to build (see the RuntimeWarning)"
    state, parameter = torch.zeros(2, 4), torch.zeros(4, 4)
    assert native.applies(state, parameter, "fused")
    assert not native.applies(state, parameter, "rk4")
    assert not native.applies(state.half(), parameter.half(), "fused")
    assert not native.applies(state, parameter.double(), "fused")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_synapse_activation_matches_torch_sigmoid(dtype: torch.dtype) -> None:
    """The kernel's own logistic (a polynomial exp in float32) against torch.sigmoid, one synapse at a time:
    within 5e-6 relative (3e-6 from the polynomial, |z| * 6e-8 from rounding the exponent), 0 and 1 far out
    (to float32's rounding of 1 / (1 + 0)), and NaN kept."""
    z = torch.cat([torch.linspace(-30, 30, 20001, dtype=torch.float64),
                   torch.tensor([-1e30, -200.0, -90.0, 90.0, 200.0, 1e30, float("inf"), -float("inf"), float("nan")],
                                dtype=torch.float64)])
    one = torch.ones(1, 1, dtype=dtype)
    # one input, one neuron, sigma 1, mu 0, w = we = 1: num = cond = sigmoid(x)
    num, cond = native.native_kernel().sensory_forward(z.to(dtype).unsqueeze(1), one, 0 * one, one, one, None, None, 1)
    expected = torch.sigmoid(z.to(dtype))
    torch.testing.assert_close(num, cond, rtol=0, atol=0, equal_nan=True)
    actual = num.squeeze(1)
    central = z.abs() <= 30
    relative = ((actual[central] - expected[central]).abs() / expected[central]).max().item()
    assert relative < (5e-6 if dtype == torch.float32 else 1e-14), relative
    far = ~central & ~z.isnan()
    torch.testing.assert_close(actual[far], expected[far], rtol=0, atol=1e-7 if dtype == torch.float32 else 1e-15)
    assert torch.isnan(actual[-1])


@pytest.mark.parametrize("native_path", [True, False], ids=["native", "graph"], indirect=True)
@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("wiring", ["fc", "random", "autoncp"])
def test_fused_sequence_matches_reference(native_path: bool, wiring: str, dtype: torch.dtype,
                                          implicit: bool) -> None:
    reference, fast = make_pair(wiring, "fused", dtype, implicit_param_constraints=implicit,
                                input_mapping="affine", output_mapping="affine")
    inputs = make_inputs(reference, dtype, with_dt=True, with_resets=True)
    assert_match(run_sequence(fast, inputs), run_sequence(reference, inputs), dtype)


@pytest.mark.parametrize("native_path", [True, False], ids=["native", "graph"], indirect=True)
def test_policy_sized_float32_sequence_matches_reference(native_path: bool) -> None:
    """64 units and 17 inputs: the vector loops run full width, with tails on the sensory side."""
    torch.manual_seed(0)
    from ltc_rl.cells import LTCCell

    reference = LTCCell(17, 64, fast=False)
    fast = LTCCell(17, 64)
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(4, 20, 17)
    results = []
    for cell in (fast, reference):
        outputs, final = cell.forward_sequence(x)
        grads = torch.autograd.grad(outputs.pow(2).mean() + final.sum(), list(cell.parameters()))
        results.append({"outputs": outputs, "final": final, **{str(i): g for i, g in enumerate(grads)}})
    assert_match(results[0], results[1], torch.float32)


@pytest.mark.parametrize("native_path", [True, False], ids=["native", "graph"], indirect=True)
@pytest.mark.parametrize("scale", [30.0, float("inf")])
def test_saturated_synapses_stay_finite_and_match(native_path: bool, scale: float) -> None:
    """Inputs far outside the synapses' range (raw sensor values) saturate the sigmoids without NaN;
    NaN inputs give NaN, as in the reference."""
    reference, fast = make_pair("fc", "fused", torch.float32)
    x = torch.randn(BATCH, 7, INPUTS) * 30.0
    if scale == float("inf"):
        x[0, 3, 1] = float("nan")
    with torch.no_grad():
        expected, actual = reference.forward_sequence(x)[0], fast.forward_sequence(x)[0]
        state = torch.zeros(1, reference.state_size)
        step_expected, step_actual = reference(x[:1, 0], state)[0], fast(x[:1, 0], state)[0]
    assert torch.equal(actual.isnan(), expected.isnan())
    assert actual.isnan().any() == (scale == float("inf"))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4, equal_nan=True)
    torch.testing.assert_close(step_actual, step_expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("native_path", [True, False], ids=["native", "graph"], indirect=True)
@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dt", [None, 0.4, "per-sample"])
@pytest.mark.parametrize("wiring", ["fc", "autoncp"])
def test_inference_step_matches_reference(native_path: bool, wiring: str, dt, batch: int, implicit: bool) -> None:
    reference, fast = make_pair(wiring, "fused", torch.float64, implicit_param_constraints=implicit,
                                input_mapping="affine", output_mapping="affine")
    x = torch.randn(batch, INPUTS, dtype=torch.float64)
    state = 0.2 * torch.randn(batch, reference.state_size, dtype=torch.float64)
    step_dt = torch.rand(batch, dtype=torch.float64) + 0.2 if dt == "per-sample" else dt
    with torch.no_grad():
        expected, actual = reference(x, state, step_dt), fast(x, state, step_dt)
    assert isinstance(actual, tuple) and len(actual) == 2
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_softplus_of_raw_weights_matches_torch(dtype: torch.dtype) -> None:
    """Inference prepares positive weights with the kernel's own softplus (polynomials in float32): within
    6e-6 relative of torch's (3e-6 plus |x| * 6e-8) on both sides of its threshold of 20, and NaN kept."""
    x = torch.cat([torch.linspace(-40, 40, 30001, dtype=dtype), torch.tensor([float("inf"), float("nan")], dtype=dtype)])
    actual, expected = native.native_kernel().softplus(x), torch.nn.functional.softplus(x)
    torch.testing.assert_close(actual, expected, rtol=6e-6 if dtype == torch.float32 else 1e-14, atol=0,
                               equal_nan=True)


def test_inference_sees_parameters_changed_in_place() -> None:
    """Parameters are read afresh on every call, including changes through ``.data`` (no stale cache)."""
    reference, fast = make_pair("fc", "fused", torch.float64)
    x, state = torch.randn(1, INPUTS, dtype=torch.float64), torch.zeros(1, reference.state_size, dtype=torch.float64)
    with torch.no_grad():
        fast(x, state)
        for cell in (reference, fast):
            cell.w.data.mul_(1.7)
            cell.sensory_mu.data.add_(0.2)
        for a, e in zip(fast(x, state), reference(x, state)):
            torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("native_path", [True, False], ids=["native", "graph"], indirect=True)
def test_a_cell_first_run_under_inference_mode_still_trains(native_path: bool) -> None:
    """A sparse cell whose first call is a control step under ``torch.inference_mode`` (as ``LTCAgent.act``
    makes it) gives gradients afterwards, as ``evaluate.py --diagnose`` needs: what the cell caches on its first
    call must not be inference tensors."""
    reference, fast = make_pair("autoncp", "fused", torch.float64)
    x, state = torch.randn(2, INPUTS, dtype=torch.float64), torch.zeros(2, fast.state_size, dtype=torch.float64)
    with torch.inference_mode():
        fast(x[:1], state[:1])
        fast(x, state)
    grads = []
    for cell in (fast, reference):
        readable = x.clone().requires_grad_(True)
        cell(readable, state, torch.ones(2, dtype=torch.float64))[0].sum().backward()
        grads.append(readable.grad)
    torch.testing.assert_close(*grads, rtol=1e-9, atol=1e-9)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("dt", [None, "per-sample"])
def test_a_traced_cell_records_the_kernel_operator_and_runs_any_batch(dt, implicit: bool) -> None:
    """Tracing a fast cell records ltc_rl::inference (the Python binding is invisible to a trace): the traced
    graph computes the cell's step, also at batch sizes other than the traced one and past the batch-1 size."""
    reference, fast = make_pair("autoncp", "fused", torch.float64, implicit_param_constraints=implicit)
    fast.requires_grad_(False)

    def inputs(batch: int) -> tuple[torch.Tensor, ...]:
        x, state = torch.randn(batch, INPUTS, dtype=torch.float64), torch.randn(batch, fast.state_size, dtype=torch.float64)
        return (x, state) if dt is None else (x, state, torch.rand(batch, dtype=torch.float64) + 0.2)

    with torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(fast.eval(), inputs(2), check_trace=False))
        assert "ltc_rl::inference" in str(traced.graph)
        for batch in (1, 5, 70):
            case = inputs(batch)
            for a, e in zip(traced(*case), reference(*case)):
                torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


def test_build_failure_falls_back_with_one_warning(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import torch.utils.cpp_extension

    def broken_build(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))  # an empty cache: a build is attempted
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_failed", False)
    monkeypatch.setattr(torch.utils.cpp_extension, "load", broken_build)
    reference, fast = make_pair("autoncp", "fused", torch.float64)
    inputs = make_inputs(reference, torch.float64, with_dt=True, with_resets=False)
    with pytest.warns(RuntimeWarning, match="building the native LTC kernel failed: no compiler here; using the compiled-graph path"):
        result = run_sequence(fast, inputs)
    assert_match(result, run_sequence(reference, inputs), torch.float64)
    assert native.native_kernel() is None  # decided once: no second build attempt, no second warning
    assert not native.applies(torch.zeros(1, 2), torch.zeros(2, 2), "fused")


def test_switching_off_bypasses_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    kernel = native.native_kernel()
    assert kernel is not None

    class Spy:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(kernel, name)

    monkeypatch.setattr(native, "native_kernel", lambda: Spy())
    _, fast = make_pair("fc", "fused", torch.float32)
    fast.forward_sequence(torch.randn(2, 3, INPUTS))
    assert calls == ["sensory_forward", "forward"]
    calls.clear()
    native.set_native_enabled(False)
    try:
        fast.forward_sequence(torch.randn(2, 3, INPUTS))
    finally:
        native.set_native_enabled(True)
    assert calls == []
