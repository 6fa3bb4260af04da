"""The fast LTC path (ltc_rl.kernels.ltc_fast) against the readable reference (LTCCell(fast=False)).

Values and gradients (every parameter, the inputs, the initial state and dt) must agree within
1e-6 in float64 and 1e-4 relative in float32, for all solvers, wirings, per-step dt and resets.
The default tests run the kernels eagerly (tests/conftest.py sets LTC_RL_COMPILE=0); the slow
ones compile them with torch.compile.
"""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import pytest
import torch

from ltc_rl import wirings
from ltc_rl.cells import SOLVERS
from ltc_rl.kernels import compile_mode, ltc_fast
from ltc_rl.kernels import compile as kernel_compile
from ltc_rl.sequence import LTC

from conftest import BATCH, INPUTS, TOLERANCE, assert_match, make_inputs, make_pair, requires_cuda, run_sequence

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("wiring", ["fc", "random", "autoncp"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_sequence_matches_reference_with_dt_and_resets(solver: str, wiring: str, dtype: torch.dtype) -> None:
    reference, fast = make_pair(wiring, solver, dtype)
    inputs = make_inputs(reference, dtype, with_dt=True, with_resets=True)
    assert_match(run_sequence(fast, inputs), run_sequence(reference, inputs), dtype)


@pytest.mark.parametrize("with_dt,with_resets", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("solver", SOLVERS)
def test_sequence_matches_reference_without_dt_or_resets(solver: str, with_dt: bool, with_resets: bool) -> None:
    reference, fast = make_pair("autoncp", solver, torch.float64)
    inputs = make_inputs(reference, torch.float64, with_dt, with_resets)
    assert_match(run_sequence(fast, inputs), run_sequence(reference, inputs), torch.float64)


@pytest.mark.parametrize("mappings", [("linear", None), (None, "linear"), ("affine", "affine")])
@pytest.mark.parametrize("implicit", [True, False])
def test_options_match_reference(implicit: bool, mappings: tuple) -> None:
    reference, fast = make_pair("random", "fused", torch.float64, implicit_param_constraints=implicit,
                                input_mapping=mappings[0], output_mapping=mappings[1], ode_unfolds=3)
    inputs = make_inputs(reference, torch.float64, with_dt=True, with_resets=False)
    assert_match(run_sequence(fast, inputs), run_sequence(reference, inputs), torch.float64)


def test_compressed_layout_of_a_dense_wiring_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forcing the gather/scatter layout on a fully connected wiring gives the dense results."""
    monkeypatch.setattr(ltc_fast, "SPARSE_FRACTION", 1.0)
    reference, fast = make_pair("fc", "rk4", torch.float64)
    assert ltc_fast._plan(fast.kernel_spec()).rec_index is not None
    inputs = make_inputs(reference, torch.float64, with_dt=True, with_resets=True)
    assert_match(run_sequence(fast, inputs), run_sequence(reference, inputs), torch.float64)


def test_layouts() -> None:
    """Dense wirings broadcast; sparse ones list each neuron's existing synapses first."""
    _, dense = make_pair("fc")
    assert ltc_fast._plan(dense.kernel_spec()).rec_index is None
    _, sparse = make_pair("autoncp")
    index = ltc_fast._plan(sparse.kernel_spec()).rec_index
    mask = sparse.sparsity_mask
    in_degree = (mask != 0).sum(0)
    assert index.shape == (sparse.state_size, int(in_degree.max()))
    for post in range(sparse.state_size):
        listed = index[post, : int(in_degree[post])]
        assert torch.equal(listed, torch.nonzero(mask[:, post]).flatten())


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dt", [None, 0.4, "per-sample"])
def test_single_step_matches_reference(solver: str, dt) -> None:
    """forward(): the gradient path and the no-grad inference path."""
    reference, fast = make_pair("autoncp", solver, torch.float64)
    x = torch.randn(BATCH, INPUTS, dtype=torch.float64)
    state = 0.2 * torch.randn(BATCH, reference.state_size, dtype=torch.float64)
    step_dt = torch.rand(BATCH, dtype=torch.float64) + 0.2 if dt == "per-sample" else dt
    with torch.no_grad():
        for expected, actual in zip(reference(x, state, step_dt), fast(x, state, step_dt)):
            torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)
    x.requires_grad_()
    outputs = {}
    for name, cell in (("reference", reference), ("fast", fast)):
        y, new_state = cell(x, state, step_dt)
        grads = torch.autograd.grad((y ** 2).sum() + new_state.sum(), [x, *cell.parameters()])
        outputs[name] = {"y": y, "state": new_state, **{f"grad {i}": g for i, g in enumerate(grads)}}
    assert_match(outputs["fast"], outputs["reference"], torch.float64)


def test_sequence_module_uses_the_fast_path_and_matches() -> None:
    model = LTC(INPUTS, wirings.AutoNCP(16, 3, seed=5))
    reference = copy.deepcopy(model)
    reference.rnn_cell.fast = False
    assert model.rnn_cell.fast
    x = torch.randn(2, 7, INPUTS)
    for (y_fast, h_fast), (y_ref, h_ref) in [(model(x), reference(x))]:
        torch.testing.assert_close(y_fast, y_ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(h_fast, h_ref, rtol=1e-4, atol=1e-5)


def test_no_synapse_tensors_are_saved_for_backward() -> None:
    """The fast path keeps O(batch x units) per unfold for backward; the reference keeps (batch, units, units)."""
    saved: dict[str, list[int]] = {"fast": [], "reference": []}
    reference, fast = make_pair("fc", "fused", torch.float32)
    x = torch.randn(4, 12, INPUTS)
    for name, cell in (("reference", reference), ("fast", fast)):
        def pack(tensor: torch.Tensor, sizes=saved[name]) -> torch.Tensor:
            sizes.append(tensor.numel())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            outputs, _ = cell.forward_sequence(x)
        outputs.sum().backward()
    synapse_tensor = 4 * reference.state_size * reference.state_size
    assert max(saved["reference"]) >= synapse_tensor
    states_per_unfold = 12 * reference.ode_unfolds * 3 * 4 * reference.state_size  # (u, num, cond) per unfold
    assert max(saved["fast"]) <= states_per_unfold
    assert sum(saved["fast"]) * 5 < sum(saved["reference"])


def test_bad_shapes_raise_clear_errors() -> None:
    _, fast = make_pair()
    x = torch.randn(2, 4, INPUTS, dtype=torch.float64)
    with pytest.raises(ValueError, match="dt must have shape"):
        fast.forward_sequence(x, dt=torch.ones(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="resets must have shape"):
        fast.forward_sequence(x, resets=torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch, time, input_size"):
        fast.forward_sequence(x[0])


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """No usable compiler: a warning, never an error, and the same results."""
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler found")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(kernel_compile.GraphKernel, "_compile",
                        lambda self, tensors: (_ for _ in ()).throw(RuntimeError("no C++ compiler found")))
    kernel_compile._cached_kernel.cache_clear()
    kernel_compile._cached_graph_kernel.cache_clear()
    ltc_fast._plans.clear()
    try:
        reference, fast = make_pair("autoncp", "euler", torch.float64)
        inputs = make_inputs(reference, torch.float64, with_dt=True, with_resets=True)
        with compile_mode(True), pytest.warns(RuntimeWarning, match="running it eagerly"):
            result = run_sequence(fast, inputs)
            with torch.no_grad():
                step = fast(inputs["x"][:, 0], inputs["state"])
        assert_match(result, run_sequence(reference, inputs), torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(step, reference(inputs["x"][:, 0], inputs["state"]))
    finally:
        kernel_compile._cached_kernel.cache_clear()
        kernel_compile._cached_graph_kernel.cache_clear()
        ltc_fast._plans.clear()


def test_bad_input_is_not_mistaken_for_a_compiler_failure() -> None:
    """An input error raises as usual and leaves compilation enabled."""
    reshape = kernel_compile.Kernel(lambda x: x.reshape(7))
    with compile_mode(True), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(RuntimeError, match="invalid for input of size 3"):
            reshape(torch.zeros(3))
    assert not reshape._unavailable


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("solver", SOLVERS)
def test_cuda_matches_reference(solver: str) -> None:
    reference, fast = make_pair("autoncp", solver, torch.float32)
    reference, fast = reference.cuda(), fast.cuda()
    inputs = make_inputs(reference, torch.float32, with_dt=True, with_resets=True, device="cuda")
    assert_match(run_sequence(fast, inputs), run_sequence(reference, inputs), torch.float32)
    with torch.no_grad():
        x, state = inputs["x"][:1, 0], inputs["state"][:1]
        torch.testing.assert_close(fast(x, state), reference(x, state), rtol=1e-4, atol=1e-5)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.slow
def test_cuda_compiled_matches_reference() -> None:
    reference, fast = make_pair("fc", "fused", torch.float32)
    reference, fast = reference.cuda(), fast.cuda()
    inputs = make_inputs(reference, torch.float32, with_dt=True, with_resets=True, device="cuda")
    with compile_mode(True):
        assert_match(run_sequence(fast, inputs), run_sequence(reference, inputs), torch.float32)


@pytest.mark.slow
@pytest.mark.parametrize("wiring,solver,dtype", [("fc", "fused", torch.float32), ("autoncp", "rk4", torch.float64),
                                                 ("random", "euler", torch.float32)])
def test_compiled_kernels_match_reference(wiring: str, solver: str, dtype: torch.dtype) -> None:
    """The torch.compile'd kernels (training and batch-1 inference) against the reference."""
    reference, fast = make_pair(wiring, solver, dtype)
    inputs = make_inputs(reference, dtype, with_dt=True, with_resets=True)
    with compile_mode(True), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a compiler fallback would hide what we test
        assert_match(run_sequence(fast, inputs), run_sequence(reference, inputs), dtype)
        with torch.no_grad():
            x, state = inputs["x"][:1, 0], inputs["state"][:1].detach()
            for actual, expected in zip(fast(x, state, 0.5), reference(x, state, 0.5)):
                torch.testing.assert_close(actual, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


def test_native_kernel_reads_the_spec_fields_in_their_order() -> None:
    """The native batch-1 inference indexes the CellTensors list by the C++ ``Field`` enumeration:
    its names, in order, must be the NamedTuple's fields."""
    source = (Path(ltc_fast.__file__).parent / "ltc_native.cpp").read_text()
    match = re.search(r"enum Field : int64_t \{([^}]*)\}", source)
    assert match is not None, "ltc_native.cpp lost its Field enumeration"
    names = [name.strip().lower() for name in match.group(1).split(",") if name.strip()]
    assert names == [*ltc_fast.CellTensors._fields, "field_count"]


@pytest.mark.parametrize("with_dt", [False, True], ids=["no-dt", "dt"])
@pytest.mark.parametrize("wiring", ["fc", "random", "autoncp"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_export_form_computes_the_reference_step(solver: str, wiring: str, with_dt: bool) -> None:
    """The form exports trace (input mapping folded into the sensory synapses, without dt the fused update
    divided by cm / h, an NCP's recurrent synapses cropped to the neurons receiving them) is the same step."""
    reference, _ = make_pair(wiring, solver, torch.float64)
    exported = copy.deepcopy(reference)
    exported.export_form = exported.crop_rows = True
    inputs = make_inputs(reference, torch.float64, with_dt, with_resets=False)
    padding = exported.recurrent_terms().padding
    assert (padding != (0, 0)) == (wiring == "autoncp")  # AutoNCP(16, 3): the 8 inter neurons receive none
    with torch.no_grad():
        for step in range(3):
            dt = None if inputs["dt"] is None else inputs["dt"][:, step]
            expected, actual = reference(inputs["x"][:, step], inputs["state"], dt), \
                exported(inputs["x"][:, step], inputs["state"], dt)
            torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)
