import json

import numpy as np
import pytest

from ltc_rl import wirings


def test_fully_connected_has_every_synapse_with_polarity():
    wiring = wirings.FullyConnected(8, output_size=3).build(5)
    assert wiring.adjacency.shape == (8, 8)
    assert wiring.sensory_adjacency.shape == (5, 8)
    assert set(np.unique(wiring.adjacency)) <= {-1, 1}
    assert set(np.unique(wiring.sensory_adjacency)) <= {-1, 1}
    assert wiring.synapse_count == 64 and wiring.sensory_synapse_count == 40
    assert (wiring.adjacency == 1).sum() > (wiring.adjacency == -1).sum()  # 2/3 excitatory


def test_fully_connected_without_self_connections():
    wiring = wirings.FullyConnected(6, self_connections=False)
    assert np.all(np.diag(wiring.adjacency) == 0)
    assert wiring.synapse_count == 30


@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.9])
def test_random_wiring_keeps_the_requested_density(sparsity):
    wiring = wirings.Random(20, sparsity_level=sparsity).build(10)
    assert wiring.synapse_count == round(400 * (1 - sparsity))
    assert wiring.sensory_synapse_count == round(200 * (1 - sparsity))


def test_ncp_layers_only_connect_forward_and_command_recurrently():
    wiring = wirings.NCP(inter_neurons=10, command_neurons=8, motor_neurons=4, sensory_fanout=4,
                         inter_fanout=3, recurrent_command_synapses=6, motor_fanin=3).build(7)
    motor, command, inter = set(range(4)), set(range(4, 12)), set(range(12, 22))
    kinds = {n: wiring.neuron_type(n) for n in range(22)}
    assert {kinds[n] for n in motor} == {"motor"} and {kinds[n] for n in inter} == {"inter"}
    for src, dest in zip(*np.nonzero(wiring.adjacency)):
        pair = (src in inter and dest in command) or (src in command and dest in command) \
            or (src in command and dest in motor)
        assert pair, f"unexpected synapse {src}->{dest}"
    sensory_targets = set(np.nonzero(wiring.sensory_adjacency)[1])
    assert sensory_targets == inter  # every inter neuron is reached, nothing else is
    assert all(wiring.adjacency[:, m].any() for m in motor)  # every motor neuron listens to a command neuron
    assert all(wiring.adjacency[c, :].any() for c in command)


def test_auto_ncp_sizes_and_sparsity():
    dense = wirings.AutoNCP(32, 6, sparsity_level=0.1).build(17)
    sparse = wirings.AutoNCP(32, 6, sparsity_level=0.8).build(17)
    assert dense.units == sparse.units == 32 and dense.output_size == 6
    assert dense.motor_neurons + dense.command_neurons + dense.inter_neurons == 32
    assert sparse.synapse_count < dense.synapse_count
    assert sparse.density < 0.1


def test_to_dict_round_trip_is_exact_and_json_serialisable():
    for wiring in (wirings.FullyConnected(5, 2), wirings.Random(9, 3, sparsity_level=0.4),
                   wirings.AutoNCP(24, 4, sparsity_level=0.5),
                   wirings.NCP(6, 5, 2, 3, 2, 4, 2)):
        wiring.build(11)
        restored = wirings.wiring_from_dict(json.loads(json.dumps(wiring.to_dict())))
        assert type(restored) is type(wiring)
        assert restored.to_dict() == wiring.to_dict()
        np.testing.assert_array_equal(restored.adjacency, wiring.adjacency)
        np.testing.assert_array_equal(restored.sensory_adjacency, wiring.sensory_adjacency)


def test_unbuilt_wiring_round_trips():
    wiring = wirings.AutoNCP(16, 2)
    restored = wirings.Wiring.from_dict(wiring.to_dict())
    assert not restored.is_built and restored.units == 16


def test_same_seed_same_wiring_different_seed_different_wiring():
    a, b = wirings.AutoNCP(32, 6, seed=1).build(5), wirings.AutoNCP(32, 6, seed=1).build(5)
    c = wirings.AutoNCP(32, 6, seed=2).build(5)
    np.testing.assert_array_equal(a.adjacency, b.adjacency)
    assert not np.array_equal(a.adjacency, c.adjacency)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: wirings.FullyConnected(0), "units"),
        (lambda: wirings.FullyConnected(4, output_size=5), "output_size"),
        (lambda: wirings.Random(8, sparsity_level=1.0), "sparsity_level"),
        (lambda: wirings.Random(8, sparsity_level=-0.1), "sparsity_level"),
        (lambda: wirings.AutoNCP(8, 6), "AutoNCP"),
        (lambda: wirings.AutoNCP(32, 6, sparsity_level=1.5), "sparsity_level"),
        (lambda: wirings.NCP(4, 4, 2, 5, 2, 2, 2), "sensory_fanout"),
        (lambda: wirings.NCP(4, 4, 2, 2, 5, 2, 2), "inter_fanout"),
        (lambda: wirings.NCP(4, 4, 2, 2, 2, 2, 5), "motor_fanin"),
        (lambda: wirings.make("bogus", 8), "unknown wiring"),
        (lambda: wirings.make("ncp", 8), "output_size"),
        (lambda: wirings.wiring_from_dict({"nope": 1}), "not a saved wiring"),
    ],
)
def test_impossible_wirings_raise_value_errors_that_name_the_problem(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_rebuilding_for_another_input_size_is_refused():
    wiring = wirings.FullyConnected(4).build(3)
    assert wiring.build(3) is wiring
    with pytest.raises(ValueError, match="built for 3 inputs"):
        wiring.build(5)


def test_make_by_name():
    assert isinstance(wirings.make("fc", 8), wirings.FullyConnected)
    assert isinstance(wirings.make("random", 8, sparsity_level=0.3), wirings.Random)
    ncp = wirings.make("ncp", 19, output_size=1)
    assert isinstance(ncp, wirings.AutoNCP) and ncp.output_size == 1


def test_draw_writes_a_png(tmp_path):
    wiring = wirings.AutoNCP(20, 3).build(6)
    path = wiring.draw(tmp_path / "circuit.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_dense_wirings_draw_as_a_matrix_and_sparse_ones_as_a_graph(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(wirings.Wiring, "_draw_matrix", lambda self, plt, title: drawn.append("matrix") or
                        plt.figure())
    monkeypatch.setattr(wirings.Wiring, "_draw_graph", lambda self, plt, title: drawn.append("graph") or plt.figure())
    dense = wirings.FullyConnected(64)
    dense.build(17)
    sparse = wirings.AutoNCP(16, 4)
    sparse.build(5)
    assert dense.draw(tmp_path / "fc.png").is_file() and sparse.draw(tmp_path / "ncp.png").is_file()
    assert drawn == ["matrix", "graph"]
