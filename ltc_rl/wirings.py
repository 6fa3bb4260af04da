"""Neural-circuit wirings: which neuron talks to which, and with what polarity.

A wiring fixes the sparsity pattern of an LTC network. It holds two integer matrices
whose entries are +1 (excitatory synapse), -1 (inhibitory synapse) or 0 (no synapse):

* ``adjacency`` of shape ``(units, units)``: ``adjacency[src, dest]`` between neurons;
* ``sensory_adjacency`` of shape ``(input_size, units)``: from inputs to neurons, known
  once the wiring is built for an input size (``wiring.build(input_size)``).

Motor neurons (the outputs) are the first ``output_size`` neurons, as in ncps, so a
network's output is ``state[:, :output_size]``. The vocabulary (``FullyConnected``,
``Random``, ``NCP``, ``AutoNCP``, fanouts, sparsity level) follows ncps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Wiring", "FullyConnected", "Random", "NCP", "AutoNCP", "wiring_from_dict", "make", "WIRING_CHOICES"]


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
    def build(self, input_size: int) -> "Wiring":
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
    def from_dict(cls, data: dict[str, Any]) -> "Wiring":
        """Restore a wiring saved by :meth:`to_dict`, synapse for synapse."""
        return wiring_from_dict(data)

    @classmethod
    def from_adjacency(
        cls, adjacency: np.ndarray, sensory_adjacency: np.ndarray | None = None, output_size: int | None = None
    ) -> "Wiring":
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

    def draw(self, path: str | Path, title: str | None = None) -> Path:
        """Render the circuit to an image file: layer by layer (sensory, inter, command, motor) as a graph, or,
        for dense wirings (more than :attr:`DRAW_GRAPH_MAX_SYNAPSES` synapses, e.g. fully connected), as its
        polarity matrix (rows: presynaptic sensory inputs and neurons, columns: postsynaptic neurons).

        Green is excitatory, red inhibitory; synapses within a layer (recurrent command synapses) are arcs.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

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

        graph = nx.DiGraph()
        groups: list[tuple[str, list[str]]] = []
        if self.sensory_adjacency is not None:
            groups.append(("sensory", [f"s{i}" for i in range(self.sensory_adjacency.shape[0])]))
        groups.extend((name, [f"n{i}" for i in ids]) for name, ids in self.layers() if ids)
        for depth, (name, nodes) in enumerate(groups):
            for node in nodes:
                graph.add_node(node, layer=depth, kind=name)
        if self.sensory_adjacency is not None:
            for src, dest in zip(*np.nonzero(self.sensory_adjacency)):
                graph.add_edge(f"s{src}", f"n{dest}", polarity=int(self.sensory_adjacency[src, dest]))
        for src, dest in zip(*np.nonzero(self.adjacency)):
            graph.add_edge(f"n{src}", f"n{dest}", polarity=int(self.adjacency[src, dest]))

        colors = {"sensory": "#8ecae6", "inter": "#90be6d", "command": "#f9c74f", "motor": "#f94144"}
        positions = nx.multipartite_layout(graph, subset_key="layer")
        fig, ax = plt.subplots(figsize=(4 + 2 * len(groups), max(4.0, 0.25 * max(len(n) for _, n in groups))))
        for name, nodes in groups:
            nx.draw_networkx_nodes(graph, positions, nodelist=nodes, node_color=colors[name], label=name,
                                   node_size=120, ax=ax)
        layer = nx.get_node_attributes(graph, "layer")
        for polarity, color in ((1, "tab:green"), (-1, "tab:red")):
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


def _polarity(rng: np.random.Generator, excitatory_share: float = 2 / 3) -> int:
    return 1 if rng.random() < excitatory_share else -1


class FullyConnected(Wiring):
    """Every neuron and every input connects to every neuron (2/3 excitatory, as in ncps)."""

    def __init__(self, units: int, output_size: int | None = None, self_connections: bool = True,
                 seed: int = 1111) -> None:
        super().__init__(units, output_size)
        self.self_connections = bool(self_connections)
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        for src in range(self.units):
            for dest in range(self.units):
                if src != dest or self.self_connections:
                    self.add_synapse(src, dest, _polarity(self._rng))

    def _build_sensory(self) -> None:
        for src in range(self.input_size):
            for dest in range(self.units):
                self.add_sensory_synapse(src, dest, _polarity(self._rng))

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "self_connections": self.self_connections, "seed": self.seed}


class Random(Wiring):
    """A random subset of ``1 - sparsity_level`` of all synapses (and sensory synapses)."""

    def __init__(self, units: int, output_size: int | None = None, sparsity_level: float = 0.0,
                 seed: int = 1111) -> None:
        super().__init__(units, output_size)
        _require_sparsity(sparsity_level)
        self.sparsity_level = float(sparsity_level)
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        self._fill(self.add_synapse, self.units)

    def _fill(self, add, sources: int) -> None:
        count = max(1, int(round(sources * self.units * (1.0 - self.sparsity_level))))
        for flat in self._rng.choice(sources * self.units, size=count, replace=False):
            add(int(flat // self.units), int(flat % self.units), _polarity(self._rng))

    def _build_sensory(self) -> None:
        self._fill(self.add_sensory_synapse, self.input_size)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "sparsity_level": self.sparsity_level, "seed": self.seed}


class NCP(Wiring):
    """A Neural Circuit Policy: sensory -> inter -> command (recurrent) -> motor layers.

    Neuron ids are ``[motor | command | inter]``, so motor neurons come first.
    """

    def __init__(self, inter_neurons: int, command_neurons: int, motor_neurons: int, sensory_fanout: int,
                 inter_fanout: int, recurrent_command_synapses: int, motor_fanin: int, seed: int = 22222) -> None:
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
        self._rng = np.random.default_rng(self.seed)
        motor, command, inter = self._groups()
        self._connect_layers(inter, command, self.inter_fanout, self.add_synapse)
        for _ in range(self.recurrent_command_synapses):
            self.add_synapse(int(self._rng.choice(command)), int(self._rng.choice(command)),
                             int(self._rng.choice([-1, 1])))
        self._connect_fanin(command, motor)

    def _groups(self) -> tuple[list[int], list[int], list[int]]:
        m, c = self.motor_neurons, self.command_neurons
        return list(range(m)), list(range(m, m + c)), list(range(m + c, self.units))

    def _connect_layers(self, sources: list[int], targets: list[int], fanout: int, add) -> None:
        """Each source reaches ``fanout`` targets; targets left unreached get the mean fan-in."""
        unreached = set(targets)
        for src in sources:
            for dest in self._rng.choice(targets, size=fanout, replace=False):
                unreached.discard(int(dest))
                add(src, int(dest), int(self._rng.choice([-1, 1])))
        fanin = int(np.clip(len(sources) * fanout // len(targets), 1, len(sources)))
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
        self._connect_layers(list(range(self.input_size)), inter, fanout, self.add_sensory_synapse)

    def neuron_type(self, neuron: int) -> str:
        if neuron < self.motor_neurons:
            return "motor"
        return "command" if neuron < self.motor_neurons + self.command_neurons else "inter"

    def layers(self) -> list[tuple[str, list[int]]]:
        motor, command, inter = self._groups()
        return [("inter", inter), ("command", command), ("motor", motor)]

    def _config(self) -> dict[str, Any]:
        return {"inter_neurons": self.inter_neurons, "command_neurons": self.command_neurons,
                "motor_neurons": self.motor_neurons, "sensory_fanout": self.sensory_fanout,
                "inter_fanout": self.inter_fanout, "recurrent_command_synapses": self.recurrent_command_synapses,
                "motor_fanin": self.motor_fanin, "seed": self.seed}


class AutoNCP(NCP):
    """An NCP sized from just ``units``, ``output_size`` and ``sparsity_level`` (ncps' recipe)."""

    def __init__(self, units: int, output_size: int, sparsity_level: float = 0.5, seed: int = 22222) -> None:
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
        )

    def _config(self) -> dict[str, Any]:
        return {"units": self.auto_units, "output_size": self.output_size,
                "sparsity_level": self.auto_sparsity, "seed": self.seed}


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
    if cls is Wiring:
        wiring = Wiring(**data["config"])
    else:
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
