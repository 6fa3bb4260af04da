"""Code written for ncps runs on ltc_rl: wiring names and circuits, argument orders, CfC variants, conversions."""

import numpy as np
import pytest
import torch

from ltc_rl import CfC, LTC, LTCCell, from_ncps, wirings

ncps_torch = pytest.importorskip("ncps.torch", reason="ncps is a test extra: pip install -e '.[test]'")
ncps_wirings = pytest.importorskip("ncps.wirings")


def _same_circuit(ours, theirs) -> None:
    assert np.array_equal(ours.adjacency_matrix, theirs.adjacency_matrix)
    assert np.array_equal(ours.sensory_adjacency_matrix, theirs.sensory_adjacency_matrix)


# ---------------------------------------------------------------------------- wirings
@pytest.mark.parametrize("seed", [1, 7, 22222, 4242])
@pytest.mark.parametrize("units, outputs, sparsity, inputs", [(64, 6, 0.5, 17), (19, 4, 0.3, 5), (32, 1, 0.8, 3),
                                                              (40, 8, 0.1, 30)])
def test_auto_ncp_reproduces_ncps_circuit_for_the_same_seed(seed, units, outputs, sparsity, inputs):
    theirs = ncps_wirings.AutoNCP(units, outputs, sparsity, seed=seed)
    theirs.build(inputs)
    ours = wirings.AutoNCP(units, outputs, sparsity, seed=seed, ncps_compatible=True).build(inputs)
    _same_circuit(ours, theirs)


@pytest.mark.parametrize("seed", [3, 22222])
def test_ncp_fully_connected_and_random_reproduce_ncps_for_the_same_seed(seed):
    cases = [
        (ncps_wirings.NCP(30, 5, 3, 10, 5, 4, 3, seed=seed),  # the inter -> command fan-in cap matters here
         wirings.NCP(30, 5, 3, 10, 5, 4, 3, seed=seed, ncps_compatible=True), 8),
        (ncps_wirings.FullyConnected(9, 3, erev_init_seed=seed),
         wirings.FullyConnected(9, 3, seed=seed, ncps_compatible=True), 4),
        (ncps_wirings.Random(9, 3, 0.4, random_seed=seed), wirings.Random(9, 3, 0.4, seed=seed, ncps_compatible=True),
         4),
    ]
    for theirs, ours, inputs in cases:
        theirs.build(inputs)
        _same_circuit(ours.build(inputs), theirs)


def test_ncps_names_answer_like_ncps():
    theirs = ncps_wirings.NCP(6, 5, 3, 4, 3, 4, 2)
    theirs.build(7)
    ours = wirings.from_ncps(theirs)
    assert isinstance(ours, wirings.NCP) and ours.input_dim == 7 and ours.output_dim == 3
    assert ours.num_layers == theirs.num_layers == 3
    for layer in range(3):
        assert ours.get_neurons_of_layer(layer) == theirs.get_neurons_of_layer(layer)
    assert [ours.get_type_of_neuron(n) for n in range(14)] == [theirs.get_type_of_neuron(n) for n in range(14)]
    assert ours.synapse_count == theirs.synapse_count
    assert ours.sensory_synapse_count == theirs.sensory_synapse_count
    fc = wirings.FullyConnected(5)
    assert fc.num_layers == 1 and fc.get_neurons_of_layer(0) == list(range(5))
    with pytest.raises(ValueError, match="unknown layer 1"):
        fc.get_neurons_of_layer(1)


def test_get_graph_has_ncps_nodes_and_edges():
    theirs = ncps_wirings.AutoNCP(12, 3, seed=5)
    theirs.build(4)
    ours = wirings.from_ncps(theirs)
    a, b = ours.get_graph(), theirs.get_graph()
    assert dict(a.nodes(data="neuron_type")) == dict(b.nodes(data="neuron_type"))
    assert set(a.edges(data="polarity")) == set(b.edges(data="polarity"))
    assert "sensory_0" not in ours.get_graph(include_sensory_neurons=False)


def test_draw_graph_returns_legend_handles(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wiring = wirings.AutoNCP(12, 3).build(4)
    handles = wiring.draw_graph(layout="spring", draw_labels=True)
    assert {h.get_label() for h in handles} == {"Sensory neurons", "Inter neurons", "Command neurons",
                                                 "Motor neurons"}
    plt.close("all")
    with pytest.raises(ValueError, match="unknown layout"):
        wiring.draw_graph(layout="nope")


def test_get_config_round_trips_exactly_and_reads_ncps_base_configs():
    for wiring in (wirings.AutoNCP(16, 3, seed=2, ncps_compatible=True).build(5),
                   wirings.Random(8, 2, 0.5).build(3), wirings.FullyConnected(4)):
        restored = type(wiring).from_config(wiring.get_config())
        assert type(restored) is type(wiring) and restored.get_config() == wiring.get_config()
    theirs = ncps_wirings.Wiring(4)
    theirs.add_synapse(0, 1, -1)
    theirs.set_output_dim(2)
    theirs.build(3)
    theirs.add_sensory_synapse(2, 3, 1)
    ours = wirings.Wiring.from_config(theirs.get_config())
    _same_circuit(ours, theirs)
    assert ours.output_dim == 2


# ---------------------------------------------------------------------------- ncps wirings and argument order
@pytest.mark.parametrize("build", [lambda w: LTC(7, w), lambda w: LTCCell(7, w), lambda w: CfC(7, w)])
def test_ncps_wiring_objects_are_accepted_synapse_for_synapse(build):
    theirs = ncps_wirings.AutoNCP(20, 4, seed=9)
    model = build(theirs)
    assert theirs.input_dim == 7  # built for the input size, as ncps builds it
    _same_circuit(model.wiring, theirs)
    assert isinstance(model.wiring, wirings.AutoNCP)


def test_ltc_cell_takes_ncps_argument_order_and_keywords():
    wiring = wirings.AutoNCP(12, 3, seed=1)
    for cell in (LTCCell(wiring, 5), LTCCell(wiring=wirings.AutoNCP(12, 3, seed=1), in_features=5),
                 LTCCell(wirings.AutoNCP(12, 3, seed=1).build(5)), LTCCell(ncps_wirings.FullyConnected(6), 5)):
        assert (cell.input_size, cell.sensory_size) == (5, 5)
        assert cell.motor_size == cell.output_size
    assert np.array_equal(LTCCell(wirings.AutoNCP(12, 3, seed=1), 5).wiring.adjacency,
                          LTCCell(5, wirings.AutoNCP(12, 3, seed=1)).wiring.adjacency)
    with pytest.raises(ValueError, match="input size is unknown"):
        LTCCell(wirings.AutoNCP(12, 3))
    with pytest.raises(ValueError, match="pass the input size once"):
        LTCCell(5, wirings.FullyConnected(4), in_features=5)


def test_ltc_attributes_have_ncps_names():
    theirs = ncps_torch.LTC(7, ncps_wirings.AutoNCP(20, 4, seed=3))
    ours = from_ncps(theirs)
    for name in ("state_size", "sensory_size", "motor_size", "output_size", "synapse_count"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.sensory_synapse_count == theirs._wiring.sensory_synapse_count  # ncps's own counts the recurrent ones


# ---------------------------------------------------------------------------- CfC and mixed memory
def _compare(reference, x, dt=None) -> None:
    """ncps's model against its conversion, float64, with a random initial state."""
    ours = from_ncps(reference)
    h0 = torch.randn(x.shape[0], reference.state_size, dtype=torch.float64) * 0.3
    hx = (h0, torch.randn_like(h0)) if reference.use_mixed else h0
    with torch.no_grad():
        y_ref, h_ref = reference(x, hx) if dt is None else reference(x, hx, timespans=dt)
        y, h = ours(x, hx) if dt is None else ours(x, hx, timespans=dt)
    h_ref = torch.cat(h_ref, dim=-1) if isinstance(h_ref, tuple) else h_ref
    assert y.shape == y_ref.shape
    assert (y - y_ref).abs().max() < 1e-5 and (h - h_ref).abs().max() < 1e-5


@pytest.mark.parametrize("kwargs", [{}, {"proj_size": 3}, {"mixed_memory": True}, {"mode": "pure"},
                                    {"mode": "no_gate"}, {"backbone_layers": 0}, {"return_sequences": False},
                                    {"activation": "relu", "backbone_units": 16, "backbone_layers": 3,
                                     "backbone_dropout": 0.1}])
def test_from_ncps_cfc_matches_ncps_in_float64(kwargs):
    torch.manual_seed(0)
    _compare(ncps_torch.CfC(5, 8, **kwargs).double().eval(), torch.randn(3, 7, 5, dtype=torch.float64))


@pytest.mark.parametrize("kwargs", [{}, {"mixed_memory": True, "proj_size": 2}, {"mode": "pure"}])
def test_from_ncps_wired_cfc_matches_ncps_in_float64(kwargs):
    torch.manual_seed(1)
    reference = ncps_torch.CfC(5, ncps_wirings.AutoNCP(12, 3, seed=3), **kwargs).double()
    _compare(reference, torch.randn(3, 7, 5, dtype=torch.float64))


def test_cfc_with_irregular_timespans_and_ltc_with_mixed_memory_match_ncps():
    torch.manual_seed(2)
    x = torch.randn(1, 9, 5, dtype=torch.float64)  # ncps broadcasts per-row timespans only for one row
    _compare(ncps_torch.CfC(5, 8).double(), x, dt=torch.rand(1, 9, 1, dtype=torch.float64) + 0.3)
    _compare(ncps_torch.LTC(5, ncps_wirings.AutoNCP(12, 3), mixed_memory=True).double(),
             torch.randn(3, 6, 5, dtype=torch.float64))


def test_cfc_cells_convert_and_state_layout_is_flat():
    torch.manual_seed(3)
    cell = ncps_torch.CfCCell(4, 6).double()
    ours = from_ncps(cell)
    x, h = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours.rnn_cell(x, h, 1.0)[1], cell(x, h, 1.0)[1], atol=1e-12, rtol=0)
    mixed = CfC(4, 6, mixed_memory=True)
    y, state = mixed(torch.randn(2, 3, 4))
    assert state.shape == (2, 12) and mixed.state_size == 12  # [h, c] in one tensor
    y2, _ = mixed(torch.randn(2, 3, 4), (state[:, :6], state[:, 6:]))  # ncps's pair is accepted as hx
    assert y2.shape == (2, 3, 6)


def test_cfc_keywords_and_wired_mode_errors():
    assert CfC(4, 6, activation="gelu").rnn_cell.backbone[1].__class__.__name__ == "GELU"
    assert CfC(4, 6, proj_size=2)(torch.randn(1, 3, 4))[0].shape == (1, 3, 2)
    wired = CfC(4, wirings.AutoNCP(12, 3, seed=3, ncps_compatible=True))
    assert wired.output_size == 3 and wired.state_size == 12
    with pytest.raises(ValueError, match="backbone_layers cannot be used with a wiring"):
        CfC(4, wirings.AutoNCP(12, 3), backbone_layers=2)


# ---------------------------------------------------------------------------- one control step
@pytest.mark.parametrize("batch_first", [True, False])
def test_one_step_call_takes_the_single_step_path_with_the_sequence_results(batch_first, monkeypatch):
    torch.manual_seed(4)
    model = LTC(5, wirings.AutoNCP(16, 3, seed=2), batch_first=batch_first)
    x = torch.randn(2, 1, 5) if batch_first else torch.randn(1, 2, 5)
    h = torch.randn(2, 16) * 0.2
    dt = torch.full(x.shape[:2], 0.7)
    with torch.no_grad():
        expected = [model.rnn_cell.forward_sequence(x if batch_first else x.transpose(0, 1), h, d)
                    for d in (None, dt.reshape(2, 1))]
        monkeypatch.setattr(model.rnn_cell, "forward_sequence", lambda *a, **k: pytest.fail("sequence path taken"))
        for (y_expected, h_expected), timespans in zip(expected, (None, dt)):
            y, state = model(x, h, timespans=timespans)
            torch.testing.assert_close(y, y_expected if batch_first else y_expected.transpose(0, 1))
            torch.testing.assert_close(state, h_expected)
        last, _ = LTC(5, 4, return_sequences=False)(torch.randn(3, 1, 5))
    assert last.shape == (3, 4)
    with pytest.raises(ValueError, match="hx must have shape"):
        model(x, torch.zeros(2, 7))


def test_sequence_step_benchmark_compares_both_shapes_with_ncps():
    from ltc_rl.bench.cell import STEP_SHAPES, format_step_latency, sequence_step_latency

    rows = sequence_step_latency(blocks=1)
    assert [row["label"] for row in rows] == [label for label, *_ in STEP_SHAPES]
    assert all(0 < row["ncps_s"] < 0.1 and 0 < row["ltc_rl_s"] < 0.1 for row in rows)
    assert format_step_latency(rows).count("x |") == len(rows)
