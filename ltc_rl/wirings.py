"""Neural-circuit wirings: which neuron talks to which, and with what polarity.

A wiring fixes the sparsity pattern of an LTC network. It holds two integer matrices
whose entries are +1 (excitatory synapse), -1 (inhibitory synapse) or 0 (no synapse):

* ``adjacency`` of shape ``(units, units)``: ``adjacency[src, dest]`` between neurons;
* ``sensory_adjacency`` of shape ``(input_size, units)``: from inputs to neurons, known
  once the wiring is built for an input size (``wiring.build(input_size)``).

Motor neurons (the outputs) are the first ``output_size`` neurons, as in ncps, so a
network's output is ``state[:, :output_size]``. The vocabulary (``FullyConnected``,
``Random``, ``NCP``, ``AutoNCP``, fanouts, sparsity level) follows ncps, and so do ncps's
attribute and method names (``adjacency_matrix``, ``input_dim``, ``get_config``, ``draw_graph``, ...),
kept alongside this module's own. ``ncps_compatible=True`` draws the synapses with ncps's random
generator in ncps's order, so the same arguments and seed give ncps's circuit; :func:`from_ncps`
converts an ``ncps.wirings`` object synapse for synapse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ltc_rl.reporting import headless_pyplot

__all__ = ["Wiring", "FullyConnected", "Random", "NCP", "AutoNCP", "wiring_from_dict", "make", "WIRING_CHOICES",
           "from_ncps", "is_ncps_wiring"]


def _require_positive_int(name: str, value: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; pass a whole number >= 1.")


def _require_sparsity(value: float) -> None:
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(
            f"sparsity_level must lie in [0, 1), got {value!r}; use 0 for dense and e.g. 0.5 to drop half the synapses."
        )


class Wiring:
    """A connectivity pattern over ``units`` neurons with ``output_size`` motor neurons.

    Subclasses fill the neuron-to-neuron ``adjacency`` in their constructor and the
    input-to-neuron ``sensory_adjacency`` in :meth:`_build_sensory`.
    """

    def __init__(self, units: int, output_size: int | None = None) -> None:
        _require_positive_int("units", units)
        output_size = units if output_size is None else output_size
        _require_positive_int("output_size", output_size)
        if output_size > units:
            raise ValueError(
                f"output_size ({output_size}) exceeds units ({units}): a wiring cannot have more motor "
                "neurons than neurons; raise units or lower output_size."
            )
        self.units = int(units)
        self.output_size = int(output_size)
        self.input_size: int | None = None
        self.adjacency = np.zeros((self.units, self.units), dtype=np.int8)
        self.sensory_adjacency: np.ndarray | None = None

    # ------------------------------------------------------------------ building
    def build(self, input_size: int) -> Wiring:
        """Create the sensory synapses for ``input_size`` inputs (idempotent for the same size)."""
        _require_positive_int("input_size", input_size)
        if self.input_size is not None:
            if self.input_size != input_size:
                raise ValueError(
                    f"wiring was built for {self.input_size} inputs but is now used with {input_size}; "
                    "create a fresh wiring for a network with a different input size."
                )
            return self
        self.input_size = int(input_size)
        self.sensory_adjacency = np.zeros((self.input_size, self.units), dtype=np.int8)
        self._build_sensory()
        return self

    @property
    def is_built(self) -> bool:
        return self.sensory_adjacency is not None

    def _build_sensory(self) -> None:
        """Fill ``self.sensory_adjacency``: every input reaches every neuron unless a subclass says otherwise."""
        rng = np.random.default_rng(0)
        for src in range(self.input_size):
            for dest in range(self.units):
                self.add_sensory_synapse(src, dest, _polarity(rng))

    def add_synapse(self, src: int, dest: int, polarity: int) -> None:
        if not (0 <= src < self.units and 0 <= dest < self.units):
            raise ValueError(f"synapse {src}->{dest} is outside the {self.units} neurons of this wiring.")
        if polarity not in (-1, 1):
            raise ValueError(f"polarity must be +1 or -1, got {polarity!r}.")
        self.adjacency[src, dest] = polarity

    def add_sensory_synapse(self, src: int, dest: int, polarity: int) -> None:
        if self.sensory_adjacency is None:
            raise ValueError("call build(input_size) before adding sensory synapses.")
        if not (0 <= src < self.sensory_adjacency.shape[0] and 0 <= dest < self.units):
            raise ValueError(f"sensory synapse {src}->{dest} is outside this wiring.")
        if polarity not in (-1, 1):
            raise ValueError(f"polarity must be +1 or -1, got {polarity!r}.")
        self.sensory_adjacency[src, dest] = polarity

    # ------------------------------------------------------------------ queries
    @property
    def synapse_count(self) -> int:
        return int(np.abs(self.adjacency).sum())

    @property
    def sensory_synapse_count(self) -> int:
        return 0 if self.sensory_adjacency is None else int(np.abs(self.sensory_adjacency).sum())

    @property
    def density(self) -> float:
        """Fraction of possible neuron-to-neuron synapses that exist."""
        return self.synapse_count / float(self.units * self.units)

    def neuron_type(self, neuron: int) -> str:
        """``"motor"`` for output neurons, ``"inter"`` otherwise (NCP refines this)."""
        return "motor" if neuron < self.output_size else "inter"

    # ------------------------------------------------------------------ ncps's names
    @property
    def adjacency_matrix(self) -> np.ndarray:
        """ncps's name of :attr:`adjacency`."""
        return self.adjacency

    @property
    def sensory_adjacency_matrix(self) -> np.ndarray | None:
        """ncps's name of :attr:`sensory_adjacency`."""
        return self.sensory_adjacency

    @property
    def input_dim(self) -> int | None:
        """ncps's name of :attr:`input_size`."""
        return self.input_size

    @property
    def output_dim(self) -> int:
        """ncps's name of :attr:`output_size`."""
        return self.output_size

    def get_type_of_neuron(self, neuron_id: int) -> str:
        """ncps's name of :meth:`neuron_type`."""
        return self.neuron_type(neuron_id)

    @property
    def num_layers(self) -> int:
        """Number of neuron layers in ncps's sense (1; an NCP has 3), as ncps's wired CfC stacks them."""
        return 1

    def get_neurons_of_layer(self, layer_id: int) -> list[int]:
        """The neuron ids of layer ``layer_id`` (``0 <= layer_id < num_layers``), sensory side first."""
        if layer_id != 0:
            raise ValueError(f"unknown layer {layer_id}; this wiring has {self.num_layers} layer(s).")
        return list(range(self.units))

    def get_config(self) -> dict[str, Any]:
        """ncps's serialisation name: the same exact description as :meth:`to_dict`."""
        return self.to_dict()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Wiring:
        """Restore a wiring from :meth:`get_config` (also ncps's base ``Wiring.get_config()`` dicts)."""
        if "class" not in config and "adjacency_matrix" in config:
            return Wiring.from_adjacency(np.asarray(config["adjacency_matrix"]), config.get("sensory_adjacency_matrix"),
                                         config.get("output_dim"))
        return wiring_from_dict(config)

    def layers(self) -> list[tuple[str, list[int]]]:
        """Neuron groups from input side to output side, used for drawing."""
        return [
            ("inter", list(range(self.output_size, self.units))),
            ("motor", list(range(self.output_size))),
        ]

    # ------------------------------------------------------------------ (de)serialisation
    def _config(self) -> dict[str, Any]:
        """Constructor arguments of the concrete class."""
        return {"units": self.units, "output_size": self.output_size}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description that :func:`wiring_from_dict` restores exactly."""
        return {
            "class": type(self).__name__,
            "config": self._config(),
            "input_size": self.input_size,
            "adjacency": self.adjacency.tolist(),
            "sensory_adjacency": None if self.sensory_adjacency is None else self.sensory_adjacency.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Wiring:
        """Restore a wiring saved by :meth:`to_dict`, synapse for synapse."""
        return wiring_from_dict(data)

    @classmethod
    def from_adjacency(
        cls, adjacency: np.ndarray, sensory_adjacency: np.ndarray | None = None, output_size: int | None = None
    ) -> Wiring:
        """A wiring with exactly the given polarity matrices (e.g. recovered from a trained model)."""
        adjacency = np.sign(np.asarray(adjacency)).astype(np.int8)
        if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise ValueError(f"adjacency must be a square (units, units) matrix, got shape {adjacency.shape}.")
        wiring = Wiring(adjacency.shape[0], output_size)
        wiring.adjacency = adjacency
        if sensory_adjacency is not None:
            sensory = np.sign(np.asarray(sensory_adjacency)).astype(np.int8)
            if sensory.ndim != 2 or sensory.shape[1] != adjacency.shape[0]:
                raise ValueError(
                    f"sensory_adjacency must have shape (input_size, {adjacency.shape[0]}), got {sensory.shape}."
                )
            wiring.input_size = sensory.shape[0]
            wiring.sensory_adjacency = sensory
        return wiring

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v}" for k, v in self._config().items())
        return f"{type(self).__name__}({cfg})"

    # ------------------------------------------------------------------ drawing
    #: Above this many synapses a drawn graph is a hairball: :meth:`draw` shows the adjacency matrix instead.
    DRAW_GRAPH_MAX_SYNAPSES = 600

    def get_graph(self, include_sensory_neurons: bool = True):
        """The circuit as a ``networkx.DiGraph``, as ncps builds it.

        Nodes ``neuron_i`` and ``sensory_i`` carry ``neuron_type`` (``"sensory"``, ``"inter"``,
        ``"command"``, ``"motor"``); edges carry ``polarity`` (``"excitatory"`` / ``"inhibitory"``).
        """
        if include_sensory_neurons and self.sensory_adjacency is None:
            raise ValueError("this wiring is not built yet: call wiring.build(input_size) first, "
                             "or pass include_sensory_neurons=False.")
        import networkx as nx

        graph = nx.DiGraph()
        for neuron in range(self.units):
            graph.add_node(f"neuron_{neuron}", neuron_type=self.neuron_type(neuron))
        blocks = [("neuron", self.adjacency)]
        if include_sensory_neurons:
            for src in range(self.sensory_adjacency.shape[0]):  # type: ignore[union-attr]
                graph.add_node(f"sensory_{src}", neuron_type="sensory")
            blocks.insert(0, ("sensory", self.sensory_adjacency))
        for prefix, matrix in blocks:
            for src, dest in zip(*np.nonzero(matrix)):
                graph.add_edge(f"{prefix}_{src}", f"neuron_{dest}",
                               polarity="excitatory" if matrix[src, dest] > 0 else "inhibitory")
        return graph

    def draw_graph(self, layout: str = "shell", neuron_colors: dict[str, str] | None = None,
                   synapse_colors: str | dict[str, str] | None = None, draw_labels: bool = False) -> list:
        """Draw the circuit on the current matplotlib axes, as ncps does; returns legend handles.

        ``layout``: a networkx layout name (``"shell"``, ``"kamada"``, ``"circular"``, ``"random"``,
        ``"spring"``, ``"spectral"``, ``"spiral"``) or ``"layers"`` (sensory to motor, left to right).
        """
        import matplotlib.patches as mpatches
        import networkx as nx

        layouts = {"kamada": nx.kamada_kawai_layout, "circular": nx.circular_layout, "random": nx.random_layout,
                   "shell": nx.shell_layout, "spring": nx.spring_layout, "spectral": nx.spectral_layout,
                   "spiral": nx.spiral_layout, "layers": self._layered_positions}
        if layout not in layouts:
            raise ValueError(f"unknown layout {layout!r}; choose one of {sorted(layouts)}.")
        if isinstance(synapse_colors, str):
            synapse_colors = {"excitatory": synapse_colors, "inhibitory": synapse_colors}
        synapse_colors = {"excitatory": "tab:green", "inhibitory": "tab:red", **(synapse_colors or {})}
        neuron_colors = {**_NEURON_COLORS, **(neuron_colors or {})}
        graph = self.get_graph(include_sensory_neurons=self.is_built)
        positions = layouts[layout](graph)
        kinds = nx.get_node_attributes(graph, "neuron_type")
        for kind, color in neuron_colors.items():
            nodes = [n for n, k in kinds.items() if k == kind]
            if nodes:
                nx.draw_networkx_nodes(graph, positions, nodelist=nodes, node_color=color, node_size=120)
        if draw_labels:
            nx.draw_networkx_labels(graph, positions)
        for polarity, color in synapse_colors.items():
            edges = [(u, v) for u, v, d in graph.edges(data=True) if d["polarity"] == polarity]
            nx.draw_networkx_edges(graph, positions, edgelist=edges, edge_color=color, alpha=0.35, arrowsize=6,
                                   width=0.6)
        return [mpatches.Patch(color=color, label=f"{kind.capitalize()} neurons")
                for kind, color in neuron_colors.items() if kind in kinds.values()]

    def _layered_positions(self, graph) -> dict[str, np.ndarray]:
        """Node positions with one column per layer, sensory neurons on the left, motor neurons on the right."""
        import networkx as nx

        depth = {"sensory": 0, **{name: i + 1 for i, (name, _) in enumerate(self.layers())}}
        for node, kind in graph.nodes(data="neuron_type"):
            graph.nodes[node]["layer"] = depth[kind]
        return nx.multipartite_layout(graph, subset_key="layer")

    def draw(self, path: str | Path, title: str | None = None) -> Path:
        """Render the circuit to an image file: layer by layer (sensory, inter, command, motor) as a graph, or,
        for dense wirings (more than :attr:`DRAW_GRAPH_MAX_SYNAPSES` synapses, e.g. fully connected), as its
        polarity matrix (rows: presynaptic sensory inputs and neurons, columns: postsynaptic neurons).

        Green is excitatory, red inhibitory; synapses within a layer (recurrent command synapses) are arcs.
        """
        plt = headless_pyplot()

        total = self.synapse_count + self.sensory_synapse_count
        title = title or f"{self!r}: {self.synapse_count} synapses, {self.sensory_synapse_count} sensory"
        fig = self._draw_matrix(plt, title) if total > self.DRAW_GRAPH_MAX_SYNAPSES else self._draw_graph(plt, title)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        return path

    def _draw_matrix(self, plt: Any, title: str) -> Any:
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch

        order = [i for _, ids in self.layers() for i in ids]
        blocks = [self.adjacency[np.ix_(order, order)]]
        labels = [f"n{i}" for i in order]
        if self.sensory_adjacency is not None:
            blocks.insert(0, self.sensory_adjacency[:, order])
            labels = [f"s{i}" for i in range(self.sensory_adjacency.shape[0])] + labels
        matrix = np.concatenate(blocks, axis=0)
        fig, ax = plt.subplots(figsize=(8, 8 * matrix.shape[0] / max(matrix.shape[1], 1) + 1))
        ax.imshow(matrix, cmap=ListedColormap(["tab:red", "white", "tab:green"]), vmin=-1, vmax=1,
                  interpolation="nearest", aspect="auto")
        if self.sensory_adjacency is not None:
            ax.axhline(self.sensory_adjacency.shape[0] - 0.5, color="k", lw=0.8)
        step = max(1, len(labels) // 32)
        ax.set_yticks(range(0, len(labels), step), labels[::step], fontsize=6)
        ax.set_xticks(range(0, len(order), step), [f"n{i}" for i in order][::step], fontsize=6, rotation=90)
        ax.set_ylabel("from (sensory inputs above the line, then neurons)")
        ax.set_xlabel("to neuron")
        ax.legend(handles=[Patch(color="tab:green", label="excitatory"), Patch(color="tab:red", label="inhibitory"),
                           Patch(facecolor="white", edgecolor="0.5", label="no synapse")],
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        ax.set_title(title, fontsize=10)
        return fig

    def _draw_graph(self, plt: Any, title: str) -> Any:
        import networkx as nx
        from matplotlib.lines import Line2D

        graph = self.get_graph(include_sensory_neurons=self.is_built)
        positions = self._layered_positions(graph)
        kinds = nx.get_node_attributes(graph, "neuron_type")
        columns = len(set(kinds.values()))
        tallest = max(sum(1 for k in kinds.values() if k == kind) for kind in set(kinds.values()))
        fig, ax = plt.subplots(figsize=(4 + 2 * columns, max(4.0, 0.25 * tallest)))
        for kind, color in _NEURON_COLORS.items():
            nodes = [n for n, k in kinds.items() if k == kind]
            if nodes:
                nx.draw_networkx_nodes(graph, positions, nodelist=nodes, node_color=color, label=kind,
                                       node_size=120, ax=ax)
        layer = nx.get_node_attributes(graph, "layer")
        for polarity, color in (("excitatory", "tab:green"), ("inhibitory", "tab:red")):
            edges = [(u, v) for u, v, d in graph.edges(data=True) if d["polarity"] == polarity]
            across = [(u, v) for u, v in edges if layer[u] != layer[v]]
            within = [(u, v) for u, v in edges if layer[u] == layer[v]]  # on one vertical line: drawn as arcs
            nx.draw_networkx_edges(graph, positions, edgelist=across, edge_color=color, alpha=0.35,
                                   arrowsize=6, width=0.6, ax=ax)
            nx.draw_networkx_edges(graph, positions, edgelist=within, edge_color=color, alpha=0.6, arrowsize=6,
                                   width=0.8, connectionstyle="arc3,rad=0.6", ax=ax)
        handles = [*ax.get_legend_handles_labels()[0], Line2D([], [], color="tab:green", label="excitatory synapse"),
                   Line2D([], [], color="tab:red", label="inhibitory synapse")]
        ax.legend(handles=handles, scatterpoints=1, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
        return fig


_NEURON_COLORS = {"sensory": "#8ecae6", "inter": "#90be6d", "command": "#f9c74f", "motor": "#f94144"}


def _polarity(rng: np.random.Generator, excitatory_share: float = 2 / 3) -> int:
    return 1 if rng.random() < excitatory_share else -1


def _ncps_polarity(rng: np.random.Generator) -> int:
    """ncps's draw of a fully connected or random wiring's polarity (2/3 excitatory)."""
    return int(rng.choice([-1, 1, 1]))


class FullyConnected(Wiring):
    """Every neuron and every input connects to every neuron (2/3 excitatory, as in ncps).

    ``ncps_compatible=True``: polarities drawn as ``ncps.wirings.FullyConnected`` draws them (its
    ``erev_init_seed`` is ``seed``).
    """

    def __init__(self, units: int, output_size: int | None = None, self_connections: bool = True,
                 seed: int = 1111, ncps_compatible: bool = False) -> None:
        super().__init__(units, output_size)
        self.self_connections = bool(self_connections)
        self.seed = int(seed)
        self.ncps_compatible = bool(ncps_compatible)
        self._rng = np.random.default_rng(self.seed)
        for src in range(self.units):
            for dest in range(self.units):
                if src != dest or self.self_connections:
                    self.add_synapse(src, dest, self._polarity())

    def _polarity(self) -> int:
        return _ncps_polarity(self._rng) if self.ncps_compatible else _polarity(self._rng)

    def _build_sensory(self) -> None:
        for src in range(self.input_size):
            for dest in range(self.units):
                self.add_sensory_synapse(src, dest, self._polarity())

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "self_connections": self.self_connections, "seed": self.seed,
                **_ncps_flag(self)}


class Random(Wiring):
    """A random subset of ``1 - sparsity_level`` of all synapses (and sensory synapses).

    ``ncps_compatible=True``: synapses drawn as ``ncps.wirings.Random`` draws them (its
    ``random_seed`` is ``seed``; ncps draws each sensory polarity twice and keeps the second).
    """

    def __init__(self, units: int, output_size: int | None = None, sparsity_level: float = 0.0,
                 seed: int = 1111, ncps_compatible: bool = False) -> None:
        super().__init__(units, output_size)
        _require_sparsity(sparsity_level)
        self.sparsity_level = float(sparsity_level)
        self.seed = int(seed)
        self.ncps_compatible = bool(ncps_compatible)
        self._rng = np.random.default_rng(self.seed)
        self._fill(self.add_synapse, self.units)

    def _fill(self, add, sources: int, draws: int = 1) -> None:
        count = int(round(sources * self.units * (1.0 - self.sparsity_level)))
        count = count if self.ncps_compatible else max(1, count)
        for flat in self._rng.choice(sources * self.units, size=count, replace=False):
            for _ in range(draws):
                polarity = _ncps_polarity(self._rng) if self.ncps_compatible else _polarity(self._rng)
            add(int(flat // self.units), int(flat % self.units), polarity)

    def _build_sensory(self) -> None:
        self._fill(self.add_sensory_synapse, self.input_size, draws=2 if self.ncps_compatible else 1)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "sparsity_level": self.sparsity_level, "seed": self.seed, **_ncps_flag(self)}


class NCP(Wiring):
    """A Neural Circuit Policy: sensory -> inter -> command (recurrent) -> motor layers.

    Neuron ids are ``[motor | command | inter]``, so motor neurons come first.

    ``ncps_compatible=True`` reproduces ``ncps.wirings.NCP`` for the same arguments and seed: its
    generator (``numpy.random.RandomState(seed)``) and its order, which draws every synapse in
    :meth:`build` (so the neuron-to-neuron synapses exist only once the wiring is built, and depend
    on the input size).
    """

    def __init__(self, inter_neurons: int, command_neurons: int, motor_neurons: int, sensory_fanout: int,
                 inter_fanout: int, recurrent_command_synapses: int, motor_fanin: int, seed: int = 22222,
                 ncps_compatible: bool = False) -> None:
        for name, value in (("inter_neurons", inter_neurons), ("command_neurons", command_neurons),
                            ("motor_neurons", motor_neurons), ("sensory_fanout", sensory_fanout),
                            ("inter_fanout", inter_fanout), ("motor_fanin", motor_fanin)):
            _require_positive_int(name, value)
        if recurrent_command_synapses < 0:
            raise ValueError("recurrent_command_synapses must be >= 0.")
        if sensory_fanout > inter_neurons:
            raise ValueError(f"sensory_fanout ({sensory_fanout}) exceeds inter_neurons ({inter_neurons}); "
                             "lower the fanout or add inter neurons.")
        if inter_fanout > command_neurons:
            raise ValueError(f"inter_fanout ({inter_fanout}) exceeds command_neurons ({command_neurons}); "
                             "lower the fanout or add command neurons.")
        if motor_fanin > command_neurons:
            raise ValueError(f"motor_fanin ({motor_fanin}) exceeds command_neurons ({command_neurons}); "
                             "lower the fan-in or add command neurons.")
        super().__init__(inter_neurons + command_neurons + motor_neurons, motor_neurons)
        self.inter_neurons = int(inter_neurons)
        self.command_neurons = int(command_neurons)
        self.motor_neurons = int(motor_neurons)
        self.sensory_fanout = int(sensory_fanout)
        self.inter_fanout = int(inter_fanout)
        self.recurrent_command_synapses = int(recurrent_command_synapses)
        self.motor_fanin = int(motor_fanin)
        self.seed = int(seed)
        self.ncps_compatible = bool(ncps_compatible)
        if self.ncps_compatible:
            self._rng: Any = np.random.RandomState(self.seed)
        else:
            self._rng = np.random.default_rng(self.seed)
            self._connect_neurons()

    def _connect_neurons(self) -> None:
        """Inter -> command, recurrent command, and command -> motor synapses."""
        motor, command, inter = self._groups()
        # ncps caps the fan-in of unreached command neurons at the number of command neurons.
        cap = len(command) if self.ncps_compatible else len(inter)
        self._connect_layers(inter, command, self.inter_fanout, self.add_synapse, cap)
        for _ in range(self.recurrent_command_synapses):
            self.add_synapse(int(self._rng.choice(command)), int(self._rng.choice(command)),
                             int(self._rng.choice([-1, 1])))
        self._connect_fanin(command, motor)

    def _groups(self) -> tuple[list[int], list[int], list[int]]:
        m, c = self.motor_neurons, self.command_neurons
        return list(range(m)), list(range(m, m + c)), list(range(m + c, self.units))

    def _connect_layers(self, sources: list[int], targets: list[int], fanout: int, add, cap: int) -> None:
        """Each source reaches ``fanout`` targets; targets left unreached get the mean fan-in (at most ``cap``)."""
        unreached = set(targets)
        for src in sources:
            for dest in self._rng.choice(targets, size=fanout, replace=False):
                unreached.discard(int(dest))
                add(src, int(dest), int(self._rng.choice([-1, 1])))
        fanin = int(np.clip(len(sources) * fanout // len(targets), 1, cap))
        for dest in sorted(unreached):
            for src in self._rng.choice(sources, size=fanin, replace=False):
                add(int(src), dest, int(self._rng.choice([-1, 1])))

    def _connect_fanin(self, command: list[int], motor: list[int]) -> None:
        """Each motor neuron listens to ``motor_fanin`` command neurons; idle commands get used too."""
        unused = set(command)
        for dest in motor:
            for src in self._rng.choice(command, size=self.motor_fanin, replace=False):
                unused.discard(int(src))
                self.add_synapse(int(src), dest, int(self._rng.choice([-1, 1])))
        fanout = int(np.clip(len(motor) * self.motor_fanin // len(command), 1, len(motor)))
        for src in sorted(unused):
            for dest in self._rng.choice(motor, size=fanout, replace=False):
                self.add_synapse(src, int(dest), int(self._rng.choice([-1, 1])))

    def _build_sensory(self) -> None:
        _, _, inter = self._groups()
        fanout = min(self.sensory_fanout, len(inter))
        self._connect_layers(list(range(self.input_size)), inter, fanout, self.add_sensory_synapse, self.input_size)
        if self.ncps_compatible:
            self._connect_neurons()

    def neuron_type(self, neuron: int) -> str:
        if neuron < self.motor_neurons:
            return "motor"
        return "command" if neuron < self.motor_neurons + self.command_neurons else "inter"

    def layers(self) -> list[tuple[str, list[int]]]:
        motor, command, inter = self._groups()
        return [("inter", inter), ("command", command), ("motor", motor)]

    @property
    def num_layers(self) -> int:
        return 3

    def get_neurons_of_layer(self, layer_id: int) -> list[int]:
        if layer_id not in (0, 1, 2):
            raise ValueError(f"unknown layer {layer_id}; an NCP has layers 0 (inter), 1 (command) and 2 (motor).")
        return self.layers()[layer_id][1]

    def _config(self) -> dict[str, Any]:
        return {"inter_neurons": self.inter_neurons, "command_neurons": self.command_neurons,
                "motor_neurons": self.motor_neurons, "sensory_fanout": self.sensory_fanout,
                "inter_fanout": self.inter_fanout, "recurrent_command_synapses": self.recurrent_command_synapses,
                "motor_fanin": self.motor_fanin, "seed": self.seed, **_ncps_flag(self)}


class AutoNCP(NCP):
    """An NCP sized from just ``units``, ``output_size`` and ``sparsity_level`` (ncps' recipe).

    ``ncps_compatible=True`` gives ``ncps.wirings.AutoNCP``'s circuit for the same arguments and seed.
    """

    def __init__(self, units: int, output_size: int, sparsity_level: float = 0.5, seed: int = 22222,
                 ncps_compatible: bool = False) -> None:
        _require_positive_int("units", units)
        _require_positive_int("output_size", output_size)
        _require_sparsity(sparsity_level)
        if output_size >= units - 2:
            raise ValueError(
                f"AutoNCP needs at least 3 more units than outputs (got units={units}, output_size={output_size}): "
                f"use units >= {output_size + 3} so that inter and command neurons exist."
            )
        density = 1.0 - sparsity_level
        hidden = units - output_size
        command = max(int(0.4 * hidden), 1)
        inter = hidden - command
        self.auto_units, self.auto_sparsity = int(units), float(sparsity_level)
        super().__init__(
            inter_neurons=inter,
            command_neurons=command,
            motor_neurons=output_size,
            sensory_fanout=max(int(inter * density), 1),
            inter_fanout=max(int(command * density), 1),
            recurrent_command_synapses=max(int(command * density * 2), 1),
            motor_fanin=max(int(command * density), 1),
            seed=seed,
            ncps_compatible=ncps_compatible,
        )

    def _config(self) -> dict[str, Any]:
        return {"units": self.auto_units, "output_size": self.output_size,
                "sparsity_level": self.auto_sparsity, "seed": self.seed, **_ncps_flag(self)}


def _ncps_flag(wiring: Wiring) -> dict[str, bool]:
    """``ncps_compatible`` for a wiring's saved config, only where set (older configs stay valid)."""
    return {"ncps_compatible": True} if getattr(wiring, "ncps_compatible", False) else {}


_WIRING_CLASSES: dict[str, type[Wiring]] = {
    cls.__name__: cls for cls in (Wiring, FullyConnected, Random, NCP, AutoNCP)
}


def wiring_from_dict(data: dict[str, Any]) -> Wiring:
    """Restore any wiring saved with :meth:`Wiring.to_dict`."""
    try:
        name = data["class"]
        cls = _WIRING_CLASSES[name]
    except (KeyError, TypeError) as exc:
        raise ValueError(
            f"not a saved wiring (expected a dict with 'class' one of {sorted(_WIRING_CLASSES)}): {exc}"
        ) from None
    wiring = cls(**data["config"])
    wiring.adjacency = np.asarray(data["adjacency"], dtype=np.int8)
    if data.get("sensory_adjacency") is not None:
        wiring.input_size = int(data["input_size"])
        wiring.sensory_adjacency = np.asarray(data["sensory_adjacency"], dtype=np.int8)
    if wiring.adjacency.shape != (wiring.units, wiring.units):
        raise ValueError(f"saved adjacency has shape {wiring.adjacency.shape}, expected {(wiring.units,) * 2}.")
    return wiring


WIRING_CHOICES = ("fc", "random", "ncp")


def make(name: str, units: int, output_size: int | None = None, sparsity_level: float = 0.5,
         seed: int | None = None) -> Wiring:
    """A wiring by short name, as used on command lines and in configs.

    ``"fc"``: :class:`FullyConnected`; ``"random"``: :class:`Random` with ``sparsity_level``;
    ``"ncp"``: :class:`AutoNCP` with ``output_size`` motor neurons and ``sparsity_level``.
    """
    seeds = {} if seed is None else {"seed": seed}
    if name == "fc":
        return FullyConnected(units, output_size, **seeds)
    if name == "random":
        return Random(units, output_size, sparsity_level=sparsity_level, **seeds)
    if name == "ncp":
        if output_size is None:
            raise ValueError("an 'ncp' wiring needs output_size (the number of motor neurons).")
        return AutoNCP(units, output_size, sparsity_level=sparsity_level, **seeds)
    raise ValueError(f"unknown wiring {name!r}; choose one of {WIRING_CHOICES}.")


def is_ncps_wiring(obj: Any) -> bool:
    """Whether ``obj`` is an ``ncps.wirings`` wiring (recognised by its attributes; ncps need not be installed)."""
    return (not isinstance(obj, Wiring) and hasattr(obj, "adjacency_matrix") and hasattr(obj, "units")
            and callable(getattr(obj, "get_type_of_neuron", None)) and callable(getattr(obj, "build", None)))


def _ncps_equivalent(wiring: Any) -> Wiring:
    """This module's class for an ncps wiring, with the same arguments (a plain :class:`Wiring` when unknown)."""
    kind, units, output_dim = type(wiring).__name__, int(wiring.units), wiring.output_dim
    try:
        if kind == "AutoNCP":
            return AutoNCP(units, int(wiring._output_size), float(wiring._sparsity_level), int(wiring._seed),
                           ncps_compatible=True)
        if kind == "NCP":
            return NCP(wiring._num_inter_neurons, wiring._num_command_neurons, wiring._num_motor_neurons,
                       wiring._sensory_fanout, wiring._inter_fanout, wiring._recurrent_command_synapses,
                       wiring._motor_fanin, ncps_compatible=True)
        if kind == "FullyConnected":
            return FullyConnected(units, output_dim, bool(wiring.self_connections), int(wiring._erev_init_seed),
                                  ncps_compatible=True)
        if kind == "Random":
            return Random(units, output_dim, float(wiring.sparsity_level), int(wiring._random_seed),
                          ncps_compatible=True)
    except (AttributeError, TypeError, ValueError):
        pass  # a subclass or version with other internals: keep the synapses, lose the class
    return Wiring(units, output_dim)


def from_ncps(wiring: Any, input_size: int | None = None) -> Wiring:
    """An ``ncps.wirings`` wiring converted synapse for synapse (same adjacency and polarities).

    ``input_size`` builds the ncps wiring first (as ``ncps.torch.LTC`` does); without it the ncps
    wiring must already be built. The class (NCP, AutoNCP, FullyConnected, Random) and its
    arguments carry over, so layers, neuron types and saved configs work as for this module's wirings.
    """
    if not is_ncps_wiring(wiring):
        raise ValueError(f"expected an ncps.wirings wiring, got {type(wiring).__name__}.")
    if input_size is not None:
        wiring.build(int(input_size))
    if wiring.input_dim is None:
        raise ValueError("this ncps wiring is not built: pass input_size, or call wiring.build(input_size) first.")
    ours = _ncps_equivalent(wiring)
    ours.adjacency = np.sign(np.asarray(wiring.adjacency_matrix)).astype(np.int8)
    ours.input_size = int(wiring.input_dim)
    ours.sensory_adjacency = np.sign(np.asarray(wiring.sensory_adjacency_matrix)).astype(np.int8)
    return ours
