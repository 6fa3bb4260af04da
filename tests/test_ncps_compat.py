"""Trained ncps.torch.LTC models import with identical outputs."""

import pytest
import torch

from ltc_rl import from_ncps, load_ncps_state_dict

ncps_torch = pytest.importorskip("ncps.torch", reason="ncps is a test extra: pip install -e '.[test]'")
ncps_wirings = pytest.importorskip("ncps.wirings")


def _trained_ncps(wiring, implicit: bool):
    torch.manual_seed(0)
    model = ncps_torch.LTC(7, wiring, implicit_param_constraints=implicit).double()
    # A few optimiser steps so that imported parameters are not just the initial ones.
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        loss = model(torch.randn(4, 5, 7, dtype=torch.float64))[0].square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("make_wiring", [lambda: ncps_wirings.FullyConnected(12),
                                         lambda: ncps_wirings.AutoNCP(20, 4),
                                         lambda: ncps_wirings.NCP(6, 5, 3, 4, 3, 4, 2)])
def test_imported_model_matches_ncps_in_float64(make_wiring, implicit):
    reference = _trained_ncps(make_wiring(), implicit)
    ours = from_ncps(reference)
    x = torch.randn(3, 25, 7, dtype=torch.float64) * 2
    h0 = torch.randn(3, reference.state_size, dtype=torch.float64) * 0.2
    # ncps broadcasts per-row timespans only for a batch of one, so irregular steps use one row.
    dt = torch.rand(1, 25, 1, dtype=torch.float64) + 0.2
    with torch.no_grad():
        y_ref, h_ref = reference(x, h0)
        y, h = ours(x, h0)
        y_ref_dt, _ = reference(x[:1], h0[:1], timespans=dt)
        y_dt, _ = ours(x[:1], h0[:1], timespans=dt)
    assert (y - y_ref).abs().max() < 1e-5 and (h - h_ref).abs().max() < 1e-5
    assert (y_dt - y_ref_dt).abs().max() < 1e-5
    assert ours.wiring.synapse_count == int(reference.synapse_count)


def test_load_state_dict_path_and_parameter_names():
    reference = _trained_ncps(ncps_wirings.AutoNCP(16, 2), implicit=True)
    ours = load_ncps_state_dict(reference.state_dict())
    assert set(ours.state_dict()) == set(reference.state_dict())
    x = torch.randn(2, 9, 7, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], reference(x)[0], atol=1e-10, rtol=0)


def test_foreign_state_dict_is_refused_clearly():
    with pytest.raises(ValueError, match="not an ncps LTC state dict"):
        load_ncps_state_dict(torch.nn.LSTM(3, 4).state_dict())
