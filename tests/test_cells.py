"""The shared recurrent-cell interface, for every cell."""

import pytest
import torch

from ltc_rl import CELL_TYPES, LTCCell, make_cell, wirings
from ltc_rl.cells import SOLVERS
from ltc_rl.cells.ltc import INIT_RANGES
from tests.conftest import requires_cuda

INPUTS, UNITS, BATCH, STEPS = 5, 8, 3, 7


def build(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return make_cell(kind, INPUTS, UNITS).double()


@pytest.mark.parametrize("kind", sorted(CELL_TYPES))
def test_step_shapes_and_state_size(kind):
    cell = build(kind)
    state = cell.initial_state(BATCH)
    assert state.shape == (BATCH, cell.state_size) and state.dtype == torch.float64
    y, new_state = cell(torch.randn(BATCH, INPUTS, dtype=torch.float64), state, 0.5)
    assert y.shape == (BATCH, cell.output_size)
    assert new_state.shape == state.shape
    assert torch.isfinite(y).all() and torch.isfinite(new_state).all()


@pytest.mark.parametrize("kind", sorted(CELL_TYPES))
def test_forward_sequence_equals_the_step_loop_with_dt_and_resets(kind):
    cell = build(kind)
    x = torch.randn(BATCH, STEPS, INPUTS, dtype=torch.float64)
    dt = torch.rand(BATCH, STEPS, dtype=torch.float64) + 0.1
    resets = torch.zeros(BATCH, STEPS, dtype=torch.bool)
    resets[0, 3] = resets[2, 5] = True
    state0 = torch.randn(BATCH, cell.state_size, dtype=torch.float64) * 0.1
    outputs, final = cell.forward_sequence(x, state0, dt, resets)
    state, expected = state0, []
    for t in range(STEPS):
        state = torch.where(resets[:, t, None], cell.initial_state(BATCH), state)
        y, state = cell(x[:, t], state, dt[:, t])
        expected.append(y)
    torch.testing.assert_close(outputs, torch.stack(expected, 1))
    torch.testing.assert_close(final, state)


@pytest.mark.parametrize("kind", sorted(CELL_TYPES))
def test_reset_forgets_the_past(kind):
    """After a reset, a row's outputs are those of a fresh sequence: nothing leaks across episodes."""
    cell = build(kind)
    x = torch.randn(2, STEPS, INPUTS, dtype=torch.float64)
    resets = torch.zeros(2, STEPS, dtype=torch.bool)
    resets[0, 4] = True
    outputs, _ = cell.forward_sequence(x, None, None, resets)
    fresh, _ = cell.forward_sequence(x[:1, 4:], None)
    torch.testing.assert_close(outputs[:1, 4:], fresh)
    assert not torch.allclose(outputs[1, 4:], fresh[0])


@pytest.mark.parametrize("kind", sorted(CELL_TYPES))
def test_reset_state_only_touches_masked_rows(kind):
    cell = build(kind)
    state = torch.randn(4, cell.state_size, dtype=torch.float64)
    mask = torch.tensor([True, False, True, False])
    reset = cell.reset_state(state, mask)
    torch.testing.assert_close(reset[~mask], state[~mask])
    torch.testing.assert_close(reset[mask], cell.initial_state(2))


@pytest.mark.parametrize("kind", sorted(CELL_TYPES))
def test_elapsed_time_matters_exactly_for_continuous_time_cells(kind):
    cell = build(kind)
    x, state = torch.randn(BATCH, INPUTS, dtype=torch.float64), cell.initial_state(BATCH)
    short, _ = cell(x, state, 0.1)
    long, _ = cell(x, state, 3.0)
    assert cell.uses_time != torch.allclose(short, long)


@pytest.mark.parametrize("kind", sorted(CELL_TYPES))
def test_gradients_reach_every_trainable_parameter(kind):
    cell = build(kind)
    x = torch.randn(BATCH, STEPS, INPUTS, dtype=torch.float64, requires_grad=True)
    outputs, _ = cell.forward_sequence(x)
    outputs.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, param in cell.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_unknown_cell_and_wiring_for_non_ltc_cells_are_refused():
    with pytest.raises(ValueError, match="unknown cell"):
        make_cell("transformer", 3, 4)
    with pytest.raises(ValueError, match="sparse wirings"):
        make_cell("lstm", 3, wirings.FullyConnected(4))


def test_dt_shape_is_checked():
    cell = build("ltc")
    with pytest.raises(ValueError, match="dt must be"):
        cell(torch.randn(3, INPUTS, dtype=torch.float64), cell.initial_state(3), torch.ones(5))


@pytest.mark.parametrize("solver", SOLVERS)
def test_ltc_solvers_agree_when_finely_unfolded(solver):
    """Fused, Euler and RK4 integrate the same ODE: with many small sub-steps they meet."""
    torch.manual_seed(1)
    reference = LTCCell(INPUTS, UNITS, solver="rk4", ode_unfolds=200).double()
    cell = LTCCell(INPUTS, UNITS, solver=solver, ode_unfolds=200).double()
    cell.load_state_dict(reference.state_dict())
    x = torch.randn(BATCH, INPUTS, dtype=torch.float64)
    state = torch.randn(BATCH, UNITS, dtype=torch.float64) * 0.3
    expected, _ = reference(x, state, 1.0)
    actual, _ = cell(x, state, 1.0)
    torch.testing.assert_close(actual, expected, atol=5e-3, rtol=0)


def test_ltc_output_is_the_motor_neurons_through_the_output_mapping():
    cell = LTCCell(INPUTS, wirings.AutoNCP(16, 3)).double()
    with torch.no_grad():
        cell.output_w.fill_(2.0)
        cell.output_b.fill_(0.5)
    y, state = cell(torch.randn(2, INPUTS, dtype=torch.float64), cell.initial_state(2))
    torch.testing.assert_close(y, state[:, :3] * 2.0 + 0.5)


def test_ltc_sparse_wiring_masks_missing_synapses():
    wiring = wirings.Random(10, sparsity_level=0.7, seed=3)
    cell = LTCCell(INPUTS, wiring).double()
    x = torch.randn(2, STEPS, INPUTS, dtype=torch.float64)
    cell.forward_sequence(x)[0].sum().backward()
    absent = torch.as_tensor(wiring.adjacency == 0)
    assert torch.all(cell.w.grad[absent] == 0) and torch.any(cell.w.grad[~absent] != 0)


def test_ltc_positivity_by_clipping_or_softplus():
    clipped = LTCCell(INPUTS, UNITS, implicit_param_constraints=False)
    with torch.no_grad():
        clipped.w.fill_(-1.0)
        clipped.cm.fill_(-0.5)
    clipped.apply_weight_constraints()
    assert (clipped.w >= 0).all() and (clipped.cm >= 0).all()
    soft = LTCCell(INPUTS, UNITS, implicit_param_constraints=True)
    with torch.no_grad():
        soft.w.fill_(-3.0)
    soft.apply_weight_constraints()
    assert (soft.w == -3.0).all()  # softplus keeps the parameter untouched and its value positive
    assert (soft.positive(soft.w) > 0).all()


def test_ltc_invalid_options():
    with pytest.raises(ValueError, match="solver"):
        LTCCell(3, 4, solver="midpoint")
    with pytest.raises(ValueError, match="ode_unfolds"):
        LTCCell(3, 4, ode_unfolds=0)
    with pytest.raises(ValueError, match="mapping"):
        LTCCell(3, 4, input_mapping="quadratic")


def test_ltc_init_ranges_replace_only_the_named_ranges():
    torch.manual_seed(0)
    cell = LTCCell(INPUTS, 32, init_ranges={"w": [0.0001, 0.1], "sensory_mu": (-1, 1)})
    assert cell.w.min() >= 0.0001 and cell.w.max() <= 0.1
    assert cell.sensory_mu.min() >= -1 and cell.sensory_mu.max() <= 1 and cell.sensory_mu.min() < 0.3
    default = LTCCell(INPUTS, 32)
    for name, (low, high) in INIT_RANGES.items():
        values = getattr(default, name)
        assert values.min() >= low and values.max() <= high, name
    assert cell.sigma.min() >= INIT_RANGES["sigma"][0] and cell.sigma.max() <= INIT_RANGES["sigma"][1]


@pytest.mark.parametrize("ranges, message", [({"weights": (0, 1)}, "unknown parameter 'weights'"),
                                             ({"w": (1, 0.1)}, "low <= high"),
                                             ({"w": 0.1}, "two numbers"),
                                             ({"w": (0, float("nan"))}, "finite")])
def test_ltc_bad_init_ranges_name_the_problem(ranges, message):
    with pytest.raises(ValueError, match=message):
        LTCCell(INPUTS, UNITS, init_ranges=ranges)


@pytest.mark.parametrize("kind", sorted(CELL_TYPES))
def test_state_dict_round_trip(kind):
    cell = build(kind)
    clone = make_cell(kind, INPUTS, UNITS).double()
    clone.load_state_dict(cell.state_dict())
    x = torch.randn(2, STEPS, INPUTS, dtype=torch.float64)
    torch.testing.assert_close(clone.forward_sequence(x)[0], cell.forward_sequence(x)[0])


@requires_cuda
@pytest.mark.parametrize("kind", sorted(CELL_TYPES))
def test_cells_run_on_cuda(kind):
    cell = build(kind).float().cuda()
    x = torch.randn(BATCH, STEPS, INPUTS, device="cuda")
    dt = torch.rand(BATCH, STEPS, device="cuda")
    resets = torch.zeros(BATCH, STEPS, dtype=torch.bool, device="cuda")
    outputs, state = cell.forward_sequence(x, None, dt, resets)
    outputs.sum().backward()
    assert outputs.is_cuda and state.is_cuda
    cpu_outputs, _ = cell.cpu().forward_sequence(x.cpu(), None, dt.cpu(), resets.cpu())
    torch.testing.assert_close(outputs.cpu(), cpu_outputs, atol=1e-4, rtol=1e-4)
