"""Fast LTC: the same dynamics as :class:`ltc_rl.cells.LTCCell`, computed lean.

The reference cell builds a ``(batch, units, units)`` synapse tensor in every ODE unfold and
autograd keeps each of them for the backward pass: 6 unfolds x 128 steps of them for one
training sequence. This module computes exactly the same function, but

* **never stores synapse tensors.** A custom autograd function runs the whole sequence without
  a graph, saves only the ``(batch, units)`` state entering each unfold (and RK4 stage), and
  its hand-written backward recomputes the synapse activations step by step while it walks
  back in time (analytic vector-Jacobian products of the fused, Euler and RK4 solvers);
* **exploits sparse wirings.** Recurrent synapses are stored post-synaptic-major: slot ``(i, k)``
  is the ``k``-th synapse onto neuron ``i``. A fully connected wiring uses every neuron in order
  (plain broadcasting); a sparse one (NCP) gathers only its existing synapses, padded to the
  largest in-degree, so its cost scales with the synapse count, not ``units**2``. The sensory
  synapses (few inputs onto many neurons) keep the ``(inputs, units)`` layout, vectorised over
  the neurons;
* **precomputes the sensory drive** for all time steps at once (it does not depend on the
  state), chunked with the same recompute-in-backward trick;
* **runs the fused solver natively on CPU** (:mod:`ltc_rl.kernels.native`): sequence forward,
  backward and batch-1 inference (parameter preparation included) are single calls into a
  vectorised C++ kernel, each thread walking groups of batch rows through the whole sequence;
* **compiles each cell step** (all unfolds) into one graph of fused loops with
  ``torch.compile`` elsewhere (Euler and RK4 solvers, CUDA, or where the native kernel cannot be
  built; see :mod:`ltc_rl.kernels.compile`; eager fallback with a warning where no compiler
  works); batch-1 inference is a single compiled call, parameter preparation included.

The kernel takes an :class:`LTCSpec` (the cell's tensors and settings), never the cell itself,
so this module does not depend on :mod:`ltc_rl.cells`. Every path runs on any device in float32
or float64: the native kernel where it applies, compiled or eager tensor code elsewhere.
Only first-order gradients are provided (no double backward); build the cell with
``fast=False`` for higher-order derivatives or ``torch.func`` transforms.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from torch.utils.weak import WeakIdKeyDictionary

from ltc_rl.kernels import native
from ltc_rl.kernels.compile import GraphKernel, graph_kernel, kernel

__all__ = ["Neurons", "Synapses", "CellTensors", "LTCSpec", "synapse_index", "prepare", "synapse_sums", "cell_step",
           "cell_sequence"]

#: A sparse synapse population is stored compressed when its largest in-degree is at most this
#: fraction of the possible pre-synaptic neurons; denser ones use plain broadcasting.
SPARSE_FRACTION = 0.5
#: Kernels whose synapse tensor (batch x synapse slots) has fewer elements than this run
#: single-threaded: for batch-1 inference, waking threads costs more than it saves.
SINGLE_THREAD_ELEMENTS = 1 << 16
#: Rows per chunk of the all-time-steps sensory drive, chosen so that one chunk's
#: ``(rows, inputs, units)`` activation stays near this many elements.
_CHUNK_ELEMENTS = 1 << 21


class Neurons(NamedTuple):
    """Per-neuron parameters, ``(units,)`` each; ``gleak`` and ``cm`` already made positive."""

    gleak: Tensor
    vleak: Tensor
    cm: Tensor


class Synapses(NamedTuple):
    """A synapse population's parameters in one of three layouts.

    * ``pre_major``: ``(pre, post)`` tensors, as stored in the cell;
    * post-major dense (``index`` None): ``(post, pre)`` tensors;
    * sparse: ``(post, slots)`` tensors, ``index[i, k]`` being the pre-synaptic neuron of slot ``(i, k)``.

    ``w`` is the positive, masked weight (0 for absent synapses and padding slots), ``we = w * erev``.
    """

    sigma: Tensor
    mu: Tensor
    w: Tensor
    we: Tensor
    index: Tensor | None
    pre_major: bool = False


SynapseGrads = tuple[Tensor, Tensor, Tensor, Tensor]  # gradients w.r.t. (sigma, mu, w, we)


class CellTensors(NamedTuple):
    """The raw parameters and masks of an :class:`~ltc_rl.cells.LTCCell` (None for absent mappings).

    The native kernel's batch-1 inference reads these fields by position: their order is the
    ``Field`` enumeration of ``ltc_native.cpp`` (a test compares the two).
    """

    gleak: Tensor
    vleak: Tensor
    cm: Tensor
    sigma: Tensor
    mu: Tensor
    w: Tensor
    erev: Tensor
    sensory_sigma: Tensor
    sensory_mu: Tensor
    sensory_w: Tensor
    sensory_erev: Tensor
    sparsity_mask: Tensor
    sensory_sparsity_mask: Tensor
    input_w: Tensor | None
    input_b: Tensor | None
    output_w: Tensor | None
    output_b: Tensor | None


class LTCSpec(NamedTuple):
    """Everything the fast path needs of an LTC cell: its tensors and its settings.

    Built by :meth:`LTCCell.kernel_spec <ltc_rl.cells.LTCCell.kernel_spec>` on every call (the
    tensors may be replaced or changed in place between calls).
    """

    tensors: CellTensors
    solver: str  # "fused", "euler" or "rk4"
    ode_unfolds: int
    epsilon: float
    implicit_param_constraints: bool
    output_size: int

    @property
    def state_size(self) -> int:
        """The number of neurons."""
        return self.tensors.gleak.shape[0]


# ---------------------------------------------------------------------------- layout and parameters
def synapse_index(mask: Tensor) -> Tensor | None:
    """Sparse layout of a ``(pre, post)`` sparsity mask: ``(post, slots)`` pre-synaptic indices.

    Existing synapses come first in every row (in pre-synaptic order), padding slots after them
    point at absent synapses, whose masked weight is zero. Returns None (dense layout) when the
    largest in-degree exceeds ``SPARSE_FRACTION`` of the pre-synaptic neurons.
    """
    absent = (mask.t() == 0).to(torch.int8)  # (post, pre)
    slots = int((1 - absent).sum(1).max()) if absent.numel() else 0
    if slots > SPARSE_FRACTION * mask.shape[0]:
        return None
    return torch.argsort(absent, dim=1, stable=True)[:, : max(slots, 1)].contiguous()


def _layout(w: Tensor, sigma: Tensor, mu: Tensor, erev: Tensor, index: Tensor | None,
            pre_major: bool) -> Synapses:
    if pre_major:
        return Synapses(sigma, mu, w, w * erev, None, True)

    def post_major(matrix: Tensor) -> Tensor:
        return (matrix.t() if index is None else matrix.t().gather(1, index)).contiguous()

    w_slots = post_major(w)
    return Synapses(post_major(sigma), post_major(mu), w_slots, w_slots * post_major(erev), index)


def prepare(p: CellTensors, rec_index: Tensor | None, sens_index: Tensor | None,
            implicit: bool) -> tuple[Neurons, Synapses, Synapses]:
    """Positive, masked, compressed parameters (differentiable w.r.t. the raw ones)."""
    def positive(param: Tensor) -> Tensor:
        return torch.nn.functional.softplus(param) if implicit else param

    neurons = Neurons(positive(p.gleak), p.vleak, positive(p.cm))
    recurrent = _layout(positive(p.w) * p.sparsity_mask, p.sigma, p.mu, p.erev, rec_index,
                        pre_major=rec_index is None)
    sensory = _layout(positive(p.sensory_w) * p.sensory_sparsity_mask, p.sensory_sigma, p.sensory_mu,
                      p.sensory_erev, sens_index, pre_major=sens_index is None)
    return neurons, recurrent, sensory


def _for_forward(syn: Synapses) -> Synapses:
    """The layout the forward pass runs fastest in: post-major (one fused pass computes the
    activations and both sums), whereas the backward pass is fastest pre-major."""
    if not syn.pre_major:
        return syn
    sigma, mu, w, we = (t.t().contiguous() for t in syn[:4])
    return Synapses(sigma, mu, w, we, None, False)


def _affine(x: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    if weight is not None:
        x = x * weight
    if bias is not None:
        x = x + bias
    return x


# ---------------------------------------------------------------------------- synapses
def _activation(pre: Tensor, syn: Synapses) -> tuple[Tensor, Tensor]:
    """Synapse activations ``sigmoid(sigma (v_pre - mu))`` and the pre-synaptic values they saw.

    ``(rows, pre, post)`` pre-major, ``(rows, post, pre)`` post-major dense, ``(rows, post, slots)`` sparse.
    """
    if syn.pre_major:
        pre_slots = pre.unsqueeze(-1)
    elif syn.index is None:
        pre_slots = pre.unsqueeze(1)
    else:
        pre_slots = pre.index_select(1, syn.index.flatten()).view(pre.shape[0], *syn.index.shape)
    return torch.sigmoid((pre_slots - syn.mu) * syn.sigma), pre_slots


def _per_post(g: Tensor, syn: Synapses) -> Tensor:
    """A ``(rows, post)`` tensor broadcast against the activations."""
    return g.unsqueeze(1) if syn.pre_major else g.unsqueeze(-1)


def _sums(s: Tensor, syn: Synapses) -> tuple[Tensor, Tensor]:
    """Per post-synaptic neuron: ``sum w s erev`` (numerator) and ``sum w s`` (conductance)."""
    dim = 1 if syn.pre_major else 2
    return (s * syn.we).sum(dim), (s * syn.w).sum(dim)


def synapse_sums(pre: Tensor, syn: Synapses) -> tuple[Tensor, Tensor]:
    """Summed synaptic currents' numerator and conductance of ``pre`` ``(rows, pre)`` onto every neuron."""
    return _sums(_activation(pre, syn)[0], syn)


def _activation_vjp(s: Tensor, pre_slots: Tensor, syn: Synapses, g_num: Tensor, g_cond: Tensor,
                    pre_size: int) -> tuple[Tensor, SynapseGrads]:
    """Gradients of ``_sums`` w.r.t. the pre-synaptic values and ``(sigma, mu, w, we)``."""
    g_num, g_cond = _per_post(g_num, syn), _per_post(g_cond, syn)
    g_z = (g_num * syn.we + g_cond * syn.w) * s * (1 - s)
    g_slots = g_z * syn.sigma
    if syn.pre_major:
        g_pre = g_slots.sum(2)
    elif syn.index is None:
        g_pre = g_slots.sum(1)
    else:
        rows = g_slots.shape[0]
        g_pre = g_slots.new_zeros(rows, pre_size).index_add_(1, syn.index.flatten(), g_slots.reshape(rows, -1))
    grads = ((g_z * (pre_slots - syn.mu)).sum(0), -g_slots.sum(0), (s * g_cond).sum(0), (s * g_num).sum(0))
    return g_pre, grads


# ---------------------------------------------------------------------------- one cell step
def _derivative(v: Tensor, num: Tensor, cond: Tensor, sn: Tensor, sc: Tensor, nrn: Neurons) -> Tensor:
    """dv/dt of the LTC ODE given the recurrent (num, cond) and sensory (sn, sc) synapse sums."""
    return (nrn.gleak * (nrn.vleak - v) + num + sn - (cond + sc) * v) / nrn.cm


def _fused_update(v: Tensor, num: Tensor, cond: Tensor, sn: Tensor, sc: Tensor, cm_t: Tensor, nrn: Neurons,
                  epsilon: float) -> tuple[Tensor, Tensor]:
    """The semi-implicit Euler update and its denominator."""
    bottom = cm_t + nrn.gleak + cond + sc + epsilon
    return (cm_t * v + nrn.gleak * nrn.vleak + num + sn) / bottom, bottom


def step(v: Tensor, sn: Tensor, sc: Tensor, h: Tensor, nrn: Neurons, syn: Synapses, *, solver: str,
         unfolds: int, epsilon: float, trace: bool) -> Tensor | tuple[Tensor, Tensor]:
    """One cell step: ``unfolds`` solver sub-steps of size ``h`` ``(batch, 1)`` from state ``v``.

    With ``trace`` also returns what the backward pass needs, ``(evaluations, 3, batch, units)``:
    for every evaluation of the recurrent synapses (one per unfold, four per RK4 unfold) the
    state it saw and the two synapse sums it produced.
    """
    saved = []

    def sums(u: Tensor) -> tuple[Tensor, Tensor]:
        num, cond = synapse_sums(u, syn)
        if trace:
            saved.append(torch.stack((u, num, cond)))
        return num, cond

    if solver == "fused":
        cm_t = nrn.cm / h
        for _ in range(unfolds):
            v = _fused_update(v, *sums(v), sn, sc, cm_t, nrn, epsilon)[0]
    elif solver == "euler":
        for _ in range(unfolds):
            v = v + h * _derivative(v, *sums(v), sn, sc, nrn)
    else:
        def f(u: Tensor) -> Tensor:
            return _derivative(u, *sums(u), sn, sc, nrn)

        for _ in range(unfolds):
            k1 = f(v)
            k2 = f(v + 0.5 * h * k1)
            k3 = f(v + 0.5 * h * k2)
            k4 = f(v + h * k3)
            v = v + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return (v, torch.stack(saved)) if trace else v


class _StepGrads(NamedTuple):
    """Gradients accumulated over the unfolds of one step (``(batch, units)`` until reduced)."""

    sn: Tensor
    sc: Tensor
    gleak: Tensor
    vleak: Tensor
    cm: Tensor
    syn: SynapseGrads

    def __add__(self, other: _StepGrads) -> _StepGrads:  # type: ignore[override]
        return _StepGrads(*(a + b for a, b in zip(self[:5], other[:5])),
                          tuple(a + b for a, b in zip(self.syn, other.syn)))


def _synapse_vjp(pre: Tensor, g_num: Tensor, g_cond: Tensor, syn: Synapses) -> tuple[Tensor, SynapseGrads]:
    """Gradients of :func:`synapse_sums` w.r.t. ``pre`` and the synapse parameters (activations recomputed)."""
    s, pre_slots = _activation(pre, syn)
    return _activation_vjp(s, pre_slots, syn, g_num, g_cond, pre.shape[1])


def _derivative_vjp(u: Tensor, num: Tensor, cond: Tensor, g_f: Tensor, sn: Tensor, sc: Tensor, nrn: Neurons,
                    syn: Synapses) -> tuple[Tensor, Tensor, _StepGrads]:
    """``f = dv/dt`` at ``u``, the gradient ``g_f^T df/du`` and the parameter gradients."""
    f = _derivative(u, num, cond, sn, sc, nrn)
    c = g_f / nrn.cm
    g_pre, g_syn = _synapse_vjp(u, c, -c * u, syn)
    g_u = g_pre - c * (nrn.gleak + cond + sc)
    return f, g_u, _StepGrads(c, -c * u, c * (nrn.vleak - u), c * nrn.gleak, -c * f, g_syn)


def _fused_vjp(v: Tensor, num: Tensor, cond: Tensor, g_out: Tensor, sn: Tensor, sc: Tensor, cm_t: Tensor,
               nrn: Neurons, syn: Synapses, epsilon: float) -> tuple[Tensor, _StepGrads]:
    """Gradient through one fused update from ``v``; the ``cm`` slot holds the gradient w.r.t. ``cm / h``."""
    v_out, bottom = _fused_update(v, num, cond, sn, sc, cm_t, nrn, epsilon)
    g_top = g_out / bottom
    g_bottom = -g_top * v_out
    g_pre, g_syn = _synapse_vjp(v, g_top, g_bottom, syn)
    grads = _StepGrads(g_top, g_bottom, g_top * nrn.vleak + g_bottom, g_top * nrn.gleak, g_top * v + g_bottom,
                       g_syn)
    return g_pre + g_top * cm_t, grads


def step_backward(trace: Tensor, g: Tensor, sn: Tensor, sc: Tensor, h: Tensor, nrn: Neurons, syn: Synapses,
                  acc: tuple[Tensor, ...], *, solver: str, unfolds: int,
                  epsilon: float) -> tuple[Tensor, Tensor, Tensor, Tensor, tuple[Tensor, ...]]:
    """Backward of :func:`step` given its ``trace`` and the gradient ``g`` w.r.t. the new state.

    Returns the gradients w.r.t. the old state, ``sn``, ``sc`` and ``h``, and ``acc`` (the running
    sums of the gradients w.r.t. ``gleak, vleak, cm, sigma, mu, w, we``) plus this step's share.
    """
    evaluations = [tuple(e.unbind(0)) for e in trace.unbind(0)]
    grads: _StepGrads | None = None
    g_h = torch.zeros_like(h)
    if solver == "fused":
        cm_t = nrn.cm / h
        for v, num, cond in reversed(evaluations):
            g, step_grads = _fused_vjp(v, num, cond, g, sn, sc, cm_t, nrn, syn, epsilon)
            grads = step_grads if grads is None else grads + step_grads
        assert grads is not None
        g_cm_t = grads.cm
        g_h = -(g_cm_t * cm_t / h).sum(1, keepdim=True)
        grads = grads._replace(cm=g_cm_t / h)
    elif solver == "euler":
        for v, num, cond in reversed(evaluations):
            f, g_v, step_grads = _derivative_vjp(v, num, cond, h * g, sn, sc, nrn, syn)
            g_h = g_h + (g * f).sum(1, keepdim=True)
            g = g + g_v
            grads = step_grads if grads is None else grads + step_grads
    else:
        # v' = v + h/6 (k1 + 2 k2 + 2 k3 + k4), k_i = f(u_i), u2 = v + h/2 k1, u3 = v + h/2 k2, u4 = v + h k3.
        # Walking the stages backwards, g_k is (grad w.r.t. k_i) / h, and dv'/dh collects g_k . k_i.
        for unfold in reversed(range(unfolds)):
            s1, s2, s3, s4 = evaluations[4 * unfold: 4 * unfold + 4]
            g_v, g_u = g, None
            for stage, weight, carry in ((s4, 1 / 6, 0.0), (s3, 1 / 3, 1.0), (s2, 1 / 3, 0.5), (s1, 1 / 6, 0.5)):
                g_k = g * weight if g_u is None else g * weight + carry * g_u
                k, g_u, step_grads = _derivative_vjp(*stage, h * g_k, sn, sc, nrn, syn)
                g_h = g_h + (g_k * k).sum(1, keepdim=True)
                g_v = g_v + g_u
                grads = step_grads if grads is None else grads + step_grads
            g = g_v
    assert grads is not None
    reduced = (grads.gleak.sum(0), grads.vleak.sum(0), grads.cm.sum(0), *grads.syn)
    return g, grads.sn, grads.sc, g_h, tuple(a + b for a, b in zip(acc, reduced))


# ---------------------------------------------------------------------------- autograd functions
def _threads(rows: int, syn: Synapses) -> int | None:
    """1 for problems too small to split across threads, None (all threads) otherwise."""
    return 1 if rows * syn.sigma.numel() < SINGLE_THREAD_ELEMENTS else None


def _rows_per_chunk(syn: Synapses) -> int:
    return max(1, _CHUNK_ELEMENTS // syn.sigma.numel())


def _chunks(rows_tensor: Tensor, rows: int) -> tuple[Tensor, ...]:
    """Row chunks, marked dynamic so that a shorter last chunk does not trigger a second compile."""
    chunks = rows_tensor.split(rows)
    for chunk in chunks:
        torch._dynamo.maybe_mark_dynamic(chunk, 0)
    return chunks


class _SynapseSums(torch.autograd.Function):
    """:func:`synapse_sums` over many rows (all time steps at once) in chunks, recomputed in backward."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, sigma: Tensor, mu: Tensor, w: Tensor, we: Tensor, index: Tensor | None,
                pre_major: bool) -> tuple[Tensor, Tensor]:
        syn = Synapses(sigma, mu, w, we, index, pre_major)
        ctx.pre_major = pre_major
        rows = _rows_per_chunk(syn)
        run = kernel(synapse_sums, _threads(min(rows, pre.shape[0]), syn))
        sums = [run(chunk, syn) for chunk in _chunks(pre, rows)]
        ctx.save_for_backward(pre, sigma, mu, w, we, index)
        return torch.cat([num for num, _ in sums]), torch.cat([cond for _, cond in sums])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_num: Tensor, g_cond: Tensor) -> tuple[Tensor | None, ...]:
        pre, sigma, mu, w, we, index = ctx.saved_tensors
        syn = Synapses(sigma, mu, w, we, index, ctx.pre_major)
        rows = _rows_per_chunk(syn)
        run = kernel(_synapse_vjp, _threads(min(rows, pre.shape[0]), syn))
        g_pre, totals = [], None
        for chunk, g_n, g_c in zip(_chunks(pre, rows), _chunks(g_num, rows), _chunks(g_cond, rows)):
            g_chunk, grads = run(chunk, g_n, g_c, syn)
            g_pre.append(g_chunk)
            totals = grads if totals is None else tuple(a + b for a, b in zip(totals, grads))
        assert totals is not None
        return (torch.cat(g_pre), *totals, None, None)


def _per_step(*sequences: Tensor) -> list[list[Tensor]]:
    """Each ``(time, ...)`` sequence as a list of separate per-step tensors.

    Compiled kernels specialise on their inputs' storage offsets; slices ``x[t]`` of one
    sequence tensor would make them recompile (twice) before settling on dynamic offsets.
    """
    return [[step_tensor.clone() for step_tensor in sequence.unbind(0)] for sequence in sequences]


class _Sequence(torch.autograd.Function):
    """The state trajectory ``(time, batch, units)`` of a sequence, with an analytic, recomputing backward.

    Saves only the states entering every unfold and the synapse sums they produced; nothing of
    size ``units**2`` per step.
    """

    @staticmethod
    def forward(ctx: Any, v: Tensor, sn: Tensor, sc: Tensor, h: Tensor, keep: Tensor | None, gleak: Tensor,
                vleak: Tensor, cm: Tensor, sigma: Tensor, mu: Tensor, w: Tensor, we: Tensor,
                index: Tensor | None, pre_major: bool, config: tuple[str, int, float]) -> Tensor:
        solver, unfolds, epsilon = config
        nrn, syn = Neurons(gleak, vleak, cm), _for_forward(Synapses(sigma, mu, w, we, index, pre_major))
        ctx.config, ctx.pre_major = config, pre_major
        run = kernel(step, _threads(v.shape[0], syn), solver=solver, unfolds=unfolds, epsilon=epsilon, trace=True)
        sn_t, sc_t, h_t = _per_step(sn, sc, h)
        v = v.clone()
        states, traces = [], []
        for t in range(len(sn_t)):
            if keep is not None:
                v = v * keep[t]
            v, trace = run(v, sn_t[t], sc_t[t], h_t[t], nrn, syn)
            states.append(v)
            traces.append(trace)
        ctx.steps = len(traces)
        ctx.save_for_backward(*traces, sn, sc, h, keep, gleak, vleak, cm, sigma, mu, w, we, index)
        return torch.stack(states)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_states: Tensor) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors
        traces, (sn, sc, h, keep, gleak, vleak, cm, sigma, mu, w, we, index) = saved[:ctx.steps], saved[ctx.steps:]
        solver, unfolds, epsilon = ctx.config
        nrn, syn = Neurons(gleak, vleak, cm), Synapses(sigma, mu, w, we, index, ctx.pre_major)
        run = kernel(step_backward, _threads(g_states.shape[1], syn), solver=solver, unfolds=unfolds,
                     epsilon=epsilon)
        sn_t, sc_t, h_t = _per_step(sn, sc, h)
        acc = tuple(torch.zeros_like(p) for p in (gleak, vleak, cm, sigma, mu, w, we))
        g = torch.zeros_like(g_states[0])
        g_sn, g_sc, g_h = [], [], []
        for t in reversed(range(ctx.steps)):
            g, g_sn_t, g_sc_t, g_h_t, acc = run(traces[t], g + g_states[t], sn_t[t], sc_t[t], h_t[t], nrn, syn, acc)
            g_sn.append(g_sn_t)
            g_sc.append(g_sc_t)
            g_h.append(g_h_t)
            if keep is not None:
                g = g * keep[t]
        grads = (torch.stack(g_sn[::-1]), torch.stack(g_sc[::-1]), torch.stack(g_h[::-1]))
        return (g, *grads, None, *acc, None, None, None)


class _NativeSequence(torch.autograd.Function):
    """:class:`_Sequence` for the fused solver on CPU, in the native kernel (:mod:`ltc_rl.kernels.native`).

    The recurrent synapses come as the ``(pre, post)`` block of the neurons that take part
    (see :func:`_native_block`).
    """

    @staticmethod
    def forward(ctx: Any, v: Tensor, sn: Tensor, sc: Tensor, h: Tensor, keep: Tensor | None, gleak: Tensor,
                vleak: Tensor, cm: Tensor, sigma: Tensor, mu: Tensor, w: Tensor, we: Tensor,
                pre_index: Tensor | None, post_index: Tensor | None, config: tuple[str, int, float]) -> Tensor:
        _, unfolds, epsilon = config
        ctx.unfolds = unfolds
        states, trace = native.native_kernel().forward(v, sn, sc, h, keep, gleak, vleak, cm, sigma, mu, w, we,
                                                       pre_index, post_index, unfolds, epsilon, True)
        ctx.save_for_backward(states, trace, h, keep, gleak, vleak, cm, sigma, mu, w, we, pre_index, post_index)
        return states

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_states: Tensor) -> tuple[Tensor | None, ...]:
        states, trace, h, keep, gleak, vleak, cm, *block, pre_index, post_index = ctx.saved_tensors
        g, g_sn, g_sc, g_h, *g_params = native.native_kernel().backward(
            g_states, states, trace, h, keep, gleak, vleak, cm, *block, pre_index, post_index, ctx.unfolds)
        return (g, g_sn, g_sc, g_h, None, *g_params, None, None, None)


class _NativeSensory(torch.autograd.Function):
    """:class:`_SynapseSums` of the sensory ``(pre, post)`` block in the native kernel, all time steps at once."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, sigma: Tensor, mu: Tensor, w: Tensor, we: Tensor, pre_index: Tensor | None,
                post_index: Tensor | None, neurons: int) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(x, sigma, mu, w, we, pre_index, post_index)
        num, cond = native.native_kernel().sensory_forward(x, sigma, mu, w, we, pre_index, post_index, neurons)
        return num, cond

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_num: Tensor, g_cond: Tensor) -> tuple[Tensor | None, ...]:
        x, *block, pre_index, post_index = ctx.saved_tensors
        g_x, *g_block = native.native_kernel().sensory_backward(x, g_num, g_cond, *block, pre_index, post_index)
        return (g_x, *g_block, None, None, None)


def _native_block(mask: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """The neurons with outgoing and those with incoming recurrent synapses (None: all of them)."""
    pre, post = (torch.nonzero(mask.ne(0).any(dim)).flatten() for dim in (1, 0))
    return (None if len(pre) == mask.shape[0] else pre), (None if len(post) == mask.shape[1] else post)


def _block(syn: Synapses, pre_index: Tensor | None, post_index: Tensor | None) -> tuple[Tensor, ...]:
    """The ``(pre, post)`` block of a pre-synaptic-major population (differentiable)."""
    def rows_and_columns(t: Tensor) -> Tensor:
        t = t if pre_index is None else t.index_select(0, pre_index)
        return t if post_index is None else t.index_select(1, post_index)

    return tuple(rows_and_columns(t) for t in syn[:4])


# ---------------------------------------------------------------------------- the cell API
class _Plan(NamedTuple):
    """What a cell's fast path needs besides its tensors, cached per sparsity mask (see :func:`_plan`)."""

    key: tuple
    rec_index: Tensor | None
    sens_index: Tensor | None
    synapses: int  # recurrent synapse slots (post x slots): the work of one batch row per unfold
    signature: tuple  # fields, shapes, dtypes and devices of the cell tensors
    inference: tuple[GraphKernel, GraphKernel]  # batch-1 inference without / with a dt argument
    native_blocks: tuple[tuple[Tensor | None, Tensor | None], ...]  # recurrent, sensory (see _native_block)


#: Plans by the recurrent sparsity mask tensor they were derived from (by identity, weakly: a
#: cell's mask lives as long as the cell, and is replaced when the cell changes device or dtype).
_plans: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _plan(spec: LTCSpec) -> _Plan:
    """A cell's synapse layouts and small-batch inference kernel, rebuilt when a mask or a setting changes.

    Parameters are never cached: they may change in place at any time (optimiser steps, Polyak
    updates through ``.data``), so every call prepares them afresh.
    """
    tensors = spec.tensors
    masks = (tensors.sparsity_mask, tensors.sensory_sparsity_mask)
    key = (*((m.device, m.dtype, m.data_ptr(), m._version) for m in masks), spec.solver, spec.ode_unfolds,
           spec.epsilon, spec.implicit_param_constraints)
    plan = _plans.get(masks[0])
    if plan is None or plan.key != key:
        with torch.inference_mode(False):  # a plan first built by a control step also serves training
            plan = _plans[masks[0]] = _build_plan(spec, key)
    return plan


def _build_plan(spec: LTCSpec, key: tuple) -> _Plan:
    """The :class:`_Plan` of ``spec``'s masks and settings (``key``: what :func:`_plan` caches it under)."""
    tensors = spec.tensors
    masks = (tensors.sparsity_mask, tensors.sensory_sparsity_mask)
    rec_index, sens_index = synapse_index(masks[0]), synapse_index(masks[1])
    present = tuple(name for name, t in zip(tensors._fields, tensors) if t is not None)
    signature = (present, *((t.shape, t.dtype, t.device) for t in tensors if t is not None),
                 *(None if i is None else i.shape for i in (rec_index, sens_index)))
    inference = tuple(graph_kernel(_inference_step, with_dt=with_dt, present=present,
                                   rec_sparse=rec_index is not None, sens_sparse=sens_index is not None,
                                   implicit=spec.implicit_param_constraints, solver=spec.solver,
                                   unfolds=spec.ode_unfolds, epsilon=spec.epsilon, output_size=spec.output_size)
                      for with_dt in (False, True))
    slots = spec.state_size if rec_index is None else rec_index.shape[1]
    return _Plan(key, rec_index, sens_index, spec.state_size * slots, signature, inference,
                 (_native_block(masks[0]), _native_block(masks[1])))


def _needs_grad(spec: LTCSpec, *tensors: Any) -> bool:
    return torch.is_grad_enabled() and (
        any(torch.is_tensor(t) and t.requires_grad for t in tensors)
        or any(t is not None and t.requires_grad for t in spec.tensors))


def _inference_step(x: Tensor, v: Tensor, *tensors: Tensor, with_dt: bool, present: tuple[str, ...],
                    rec_sparse: bool, sens_sparse: bool, implicit: bool, solver: str, unfolds: int,
                    epsilon: float, output_size: int) -> tuple[Tensor, Tensor]:
    """A whole cell step without autograd, parameter preparation included, on flat tensors.

    ``tensors``: ``dt`` ``(batch, 1)`` if ``with_dt`` (else dt = 1), the present
    :class:`CellTensors` fields, then the recurrent and the sensory synapse index where that
    layout is sparse.
    """
    dt, tensors = (tensors[0], tensors[1:]) if with_dt else (1.0, tensors)
    named = dict(zip(present, tensors))
    p = CellTensors(*(named.get(name) for name in CellTensors._fields))
    indices = list(tensors[len(present):])
    rec_index = indices.pop(0) if rec_sparse else None
    sens_index = indices.pop(0) if sens_sparse else None
    nrn, rec, sens = prepare(p, rec_index, sens_index, implicit)
    sn, sc = synapse_sums(_affine(x, p.input_w, p.input_b), sens)
    v = step(v, sn, sc, dt / unfolds, nrn, _for_forward(rec), solver=solver, unfolds=unfolds, epsilon=epsilon,
             trace=False)
    return _affine(v[:, :output_size], p.output_w, p.output_b), v


def cell_step(spec: LTCSpec, x: Tensor, state: Tensor, dt: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Fast :meth:`LTCCell.forward <ltc_rl.cells.LTCCell.forward>`: one step of the cell described by ``spec``.

    ``dt``: a ``(batch, 1)`` tensor of elapsed times, or None (1.0). Small inference calls (no
    gradient needed, e.g. batch-1 rollouts) run as one native call (fused solver on CPU) or one
    compiled graph; everything else goes through :func:`cell_sequence` with a single time step.
    """
    grad = _needs_grad(spec, x, state, dt)
    p = spec.tensors
    tracing = torch.jit.is_tracing()
    if (not grad and (tracing or x.shape[0] * spec.state_size ** 2 < SINGLE_THREAD_ELEMENTS)
            and native.applies(state, p.sigma, spec.solver)):  # first: latency-critical, needs no plan
        if tracing:  # recorded as the operator ltc_rl::inference (tracing cannot see into the Python binding)
            step, p = torch.ops.ltc_rl.inference, [x.new_empty(0) if t is None else t for t in p]  # empty: absent
        else:
            step = native.native_kernel().inference
        outputs, state = step(x, state, dt, p, spec.implicit_param_constraints, spec.ode_unfolds, spec.epsilon,
                              spec.output_size)
        return outputs, state
    plan = _plan(spec)
    if grad or x.shape[0] * plan.synapses >= SINGLE_THREAD_ELEMENTS:
        outputs, state = cell_sequence(spec, x.unsqueeze(1), state, dt)
        return outputs[:, 0], state
    tensors = [] if dt is None else [dt.contiguous()]
    tensors += [t if t.is_contiguous() else t.contiguous() for t in p if t is not None]
    tensors += [i for i in (plan.rec_index, plan.sens_index) if i is not None]
    signature = (x.shape, x.dtype, x.device, state.dtype, plan.signature, *[t.dtype for t in tensors])
    return plan.inference[dt is not None](signature, x.contiguous(), state.contiguous(), *tensors)


def cell_sequence(spec: LTCSpec, x: Tensor, state: Tensor | None = None, dt: Tensor | float | None = None,
                  resets: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Fast :meth:`LTCCell.forward_sequence <ltc_rl.cells.RecurrentCell.forward_sequence>` of the cell ``spec``.

    ``x`` ``(batch, time, inputs)``; ``dt`` ``(batch, time)``, a float or None; ``resets``
    ``(batch, time)`` bools (reset to the zero state before that step). Returns outputs
    ``(batch, time, output_size)`` and the final state.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be (batch, time, input_size), got shape {tuple(x.shape)}.")
    batch, steps = x.shape[0], x.shape[1]
    dt, resets = (v.squeeze(-1) if torch.is_tensor(v) and v.dim() == 3 else v for v in (dt, resets))
    for name, value in (("dt", dt), ("resets", resets)):
        if torch.is_tensor(value) and value.shape != (batch, steps):
            raise ValueError(f"{name} must have shape (batch, time) = {(batch, steps)}, got {tuple(value.shape)}.")
    if state is None:
        state = x.new_zeros(batch, spec.state_size)
    if dt is None or not torch.is_tensor(dt):
        dt = x.new_full((batch, steps), 1.0 if dt is None else float(dt))
    h = dt.to(device=x.device, dtype=x.dtype).t().unsqueeze(-1) / spec.ode_unfolds  # (time, batch, 1)
    keep = None if resets is None else (~resets.to(device=x.device, dtype=torch.bool)).t().unsqueeze(-1).to(x.dtype)

    plan = _plan(spec)
    p = spec.tensors
    use_native = native.applies(state, p.sigma, spec.solver)
    nrn, rec, sens = prepare(p, None if use_native else plan.rec_index, None if use_native else plan.sens_index,
                             spec.implicit_param_constraints)
    inputs = _affine(x.transpose(0, 1), p.input_w, p.input_b).reshape(steps * batch, -1)
    rec_block, sens_block = plan.native_blocks
    if use_native:
        sn, sc = _NativeSensory.apply(inputs, *_block(sens, *sens_block), *sens_block, spec.state_size)
    else:
        sn, sc = _SynapseSums.apply(inputs, *sens)
    sn, sc = sn.view(steps, batch, -1), sc.view(steps, batch, -1)
    config = (spec.solver, spec.ode_unfolds, spec.epsilon)
    grad = _needs_grad(spec, x, state, dt)
    if use_native:
        block = _block(rec, *rec_block)
        if grad:
            states = _NativeSequence.apply(state, sn, sc, h, keep, *nrn, *block, *rec_block, config)
        else:
            states, = native.native_kernel().forward(state, sn, sc, h, keep, *nrn, *block, *rec_block, config[1],
                                                     config[2], False)
    elif grad:
        states = _Sequence.apply(state, sn, sc, h, keep, *nrn, *rec, config)
    else:
        rec = _for_forward(rec)
        run = kernel(step, _threads(batch, rec), solver=config[0], unfolds=config[1], epsilon=config[2],
                     trace=False)
        trajectory = []
        state = state.clone()
        for sn_t, sc_t, h_t, t in zip(*_per_step(sn, sc, h), range(steps)):
            state = state if keep is None else state * keep[t]
            state = run(state, sn_t, sc_t, h_t, nrn, rec)
            trajectory.append(state)
        states = torch.stack(trajectory)
    outputs = _affine(states[..., : spec.output_size], p.output_w, p.output_b).transpose(0, 1)
    return outputs, states[-1]
