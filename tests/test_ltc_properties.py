"""The paper's guarantees for the fused solver, checked on random cells, inputs and time steps."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ltc_rl import LTCCell, wirings

WIRINGS = {
    "fc": lambda units: wirings.FullyConnected(units),
    "random": lambda units: wirings.Random(units, sparsity_level=0.5),
    "ncp": lambda units: wirings.AutoNCP(units, 2),
}


def _cell(seed: int, units: int, wiring: str, implicit: bool) -> LTCCell:
    torch.manual_seed(seed)
    cell = LTCCell(3, WIRINGS[wiring](units), implicit_param_constraints=implicit).double()
    with torch.no_grad():  # arbitrary learned-looking values, not just the initial ranges
        for name in ("vleak", "mu", "sensory_mu", "erev", "sensory_erev"):
            getattr(cell, name).normal_(0.0, 1.5)
        for name in ("sigma", "sensory_sigma"):
            getattr(cell, name).normal_(0.0, 10.0)
    return cell


def _reachable_range(cell: LTCCell, state: torch.Tensor) -> tuple[float, float]:
    """Theorem 2: the range spanned by the initial state, leak and (connected) reversal potentials."""
    values = [state.flatten(), cell.vleak.flatten(), cell.erev[cell.sparsity_mask > 0],
              cell.sensory_erev[cell.sensory_sparsity_mask > 0], torch.zeros(1, dtype=state.dtype)]
    values = torch.cat(values)  # 0 included: the solver's epsilon pulls towards 0 by < 1e-8
    return values.min().item(), values.max().item()


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    units=st.integers(5, 12),
    wiring=st.sampled_from(sorted(WIRINGS)),
    implicit=st.booleans(),
    input_scale=st.sampled_from([1e-3, 1.0, 1e3, 1e8]),
    log_dt=st.floats(-3.0, 1.0),
    steps=st.integers(1, 6),
)
def test_fused_solver_keeps_state_within_theorem_2_bounds(seed, units, wiring, implicit, input_scale, log_dt, steps):
    cell = _cell(seed, units, wiring, implicit)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(4, steps, 3, generator=generator, dtype=torch.float64) * input_scale
    state = torch.randn(4, units, generator=generator, dtype=torch.float64) * 2
    dt = torch.full((4, steps), 10.0 ** log_dt, dtype=torch.float64)
    low, high = _reachable_range(cell, state)
    with torch.no_grad():
        outputs, final = cell.forward_sequence(x, state, dt)
        assert torch.isfinite(outputs).all() and torch.isfinite(final).all()
        assert final.min().item() >= low - 1e-9 and final.max().item() <= high + 1e-9
        for t in range(steps):  # every intermediate state too
            _, state = cell(x[:, t], state, dt[:, t])
            assert state.min().item() >= low - 1e-9 and state.max().item() <= high + 1e-9


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), units=st.integers(5, 12), wiring=st.sampled_from(sorted(WIRINGS)),
       input_scale=st.sampled_from([1.0, 1e4, 1e9]))
def test_liquid_time_constants_stay_positive_and_finite(seed, units, wiring, input_scale):
    cell = _cell(seed, units, wiring, implicit=True)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 3, generator=generator, dtype=torch.float64) * input_scale
    state = torch.randn(5, units, generator=generator, dtype=torch.float64) * 3
    with torch.no_grad():
        tau = cell.time_constants(x, state)
    assert torch.isfinite(tau).all() and (tau > 0).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), log_dt=st.floats(-3.0, 1.0))
def test_fused_solver_gradients_stay_finite(seed, log_dt):
    cell = _cell(seed, 8, "fc", implicit=False)
    x = torch.randn(2, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 100
    outputs, _ = cell.forward_sequence(x, None, torch.full((2, 5), 10.0 ** log_dt, dtype=torch.float64))
    outputs.sum().backward()
    for name, param in cell.named_parameters():  # every parameter reaches the outputs
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
