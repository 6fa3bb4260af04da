"""The ncps-style sequence modules: LTC(input_size, units_or_wiring) and CfC."""

import pytest
import torch

from ltc_rl import LTC, CfC, wirings


def test_readme_example_shapes():
    wiring = wirings.AutoNCP(units=32, output_size=6)
    rnn = LTC(17, wiring, batch_first=True)
    x = torch.randn(8, 100, 17)
    y, h = rnn(x)
    assert y.shape == (8, 100, 6) and h.shape == (8, 32)
    y, h = rnn(x, h, timespans=torch.rand(8, 100))
    assert y.shape == (8, 100, 6) and h.shape == (8, 32)
    y, h = LTC(17, 64)(x)
    assert y.shape == (8, 100, 64) and h.shape == (8, 64)


def test_time_major_unbatched_and_last_output_agree_with_batch_first():
    torch.manual_seed(0)
    batch_first = LTC(4, 10).double()
    time_major = LTC(4, 10, batch_first=False).double()
    last_only = LTC(4, 10, return_sequences=False).double()
    time_major.load_state_dict(batch_first.state_dict())
    last_only.load_state_dict(batch_first.state_dict())
    x = torch.randn(3, 6, 4, dtype=torch.float64)
    dt = torch.rand(3, 6, dtype=torch.float64) + 0.5
    y, h = batch_first(x, timespans=dt)
    y_tm, h_tm = time_major(x.transpose(0, 1), timespans=dt.transpose(0, 1).unsqueeze(-1))
    torch.testing.assert_close(y_tm.transpose(0, 1), y)
    torch.testing.assert_close(h_tm, h)
    y_last, _ = last_only(x, timespans=dt)
    torch.testing.assert_close(y_last, y[:, -1])
    y_single, h_single = batch_first(x[1], timespans=dt[1])
    torch.testing.assert_close(y_single, y[1])
    torch.testing.assert_close(h_single, h[1])


def test_initial_state_and_float_timespans_and_resets():
    torch.manual_seed(0)
    rnn = CfC(3, 5).double()
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    h0 = torch.randn(2, 5, dtype=torch.float64)
    y_a, _ = rnn(x, h0, timespans=2.0)
    y_b, _ = rnn(x, h0, timespans=torch.full((2, 4), 2.0, dtype=torch.float64))
    torch.testing.assert_close(y_a, y_b)
    resets = torch.zeros(2, 4, dtype=torch.bool)
    resets[:, 0] = True
    y_reset, _ = rnn(x, h0, resets=resets)
    y_zero, _ = rnn(x)
    torch.testing.assert_close(y_reset, y_zero)


def test_wrong_shapes_are_named():
    rnn = LTC(4, 6)
    with pytest.raises(ValueError, match="features"):
        rnn(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="hx"):
        rnn(torch.randn(2, 3, 4), torch.zeros(2, 7))
    with pytest.raises(ValueError, match="2-D"):
        rnn(torch.randn(4))
    with pytest.raises(ValueError, match="backbone_units cannot be used with a wiring"):
        CfC(4, wirings.FullyConnected(4), backbone_units=8)


def test_modules_move_with_to_and_keep_no_hidden_cpu_tensors():
    rnn = LTC(4, wirings.AutoNCP(12, 2)).to(torch.float64)
    assert all(t.dtype == torch.float64 for t in rnn.state_dict().values())
    y, h = rnn(torch.randn(2, 3, 4, dtype=torch.float64))
    assert y.dtype == h.dtype == torch.float64
