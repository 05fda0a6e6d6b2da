"""Fused, event-driven simulation of one Diehl & Cook network (numba), composed from
the levels' kernel steps.

This file is a template: :mod:`stdp_bench.engine.kernel_build` copies it once per
combination of (encoder, neuron, rule), replacing the block between the ``levels``
markers with that combination's steps, and numba compiles and caches each copy. Each
copy is specialised to its levels: no branch on a level remains in the inner loop.
As written here (with the Diehl & Cook defaults bound) the module imports and runs, which
keeps it lintable and readable.

One step follows BindsNET's ``Network.run`` exactly (see tests/test_parity.py):
1. currents from the *previous* step's spikes (synchronous update): input->exc through W,
   inh->exc all-but-self, exc->inh one-to-one;
2. layers in order X, Ae, Ai: input traces; the neuron level's step per excitatory neuron
   (spike clamps applied before the traces, as ``Nodes.forward`` does); the inhibitory
   LIF layer;
3. the rule level's update of X->Ae and the [wmin, wmax] clamp; weights are normalised
   per target neuron after each presentation.
The event-driven part: input currents add the rows of W of inputs that fired, and the
rules touch only rows of fired inputs and columns of fired excitatory neurons.

Every replica owns its weights, thresholds, parameter records and random stream; the
functions here see one replica at a time, so a replica's trajectory cannot depend on any
other (the engine runs replicas on threads: everything is ``nogil``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from stdp_bench.levels import random

# --- levels: begin (kernel_build replaces this block) ---
from stdp_bench.levels.encoders.poisson import kernel_encode as encode
from stdp_bench.levels.neurons.adaptive import kernel_reset as neuron_reset
from stdp_bench.levels.neurons.adaptive import kernel_step as neuron_step
from stdp_bench.levels.rules.stdp import kernel_update as rule_update
from stdp_bench.engine.numba_support import no_drive as rule_drive  # also: compiles levels

NEURON_STATE = 2  # rows of per-neuron state (row 0 is the membrane potential)
NEURON_ONE_SPIKE = True  # the level may keep one of several simultaneous spikes
RULE_PLASTIC = True
RULE_SUPERVISED = False
RULE_TRACES = 0  # rows of extra per-neuron traces the rule keeps
# --- levels: end ---


@nb.njit(cache=True, nogil=True)
def gen_events(x, rate_hz, T, dt, state, ev_t, ev_i, ptr, idx):
    """Encode one image ``x`` (values in [0, 1]) as spike events bucketed by step.

    Fills ``ptr`` (T + 1,) and ``idx``: inputs firing at step t are
    ``idx[ptr[t]:ptr[t + 1]]`` in increasing index order. Returns the spike count.
    ``ev_t``/``ev_i`` are scratch buffers of at least T * len(x) entries.
    """
    m = encode(x, rate_hz, T, dt, state, ev_t, ev_i)
    # Counting sort by step; stable, so indices stay increasing within a step.
    for t in range(T + 1):
        ptr[t] = 0
    for e in range(m):
        ptr[ev_t[e] + 1] += 1
    for t in range(T):
        ptr[t + 1] += ptr[t]
    fill = ptr[:T].copy()
    for e in range(m):
        t = ev_t[e]
        idx[fill[t]] = ev_i[e]
        fill[t] += 1
    return m


@nb.njit(cache=True, nogil=True)
def present(W, theta, net, pn, pr, ptr, idx, T, learning, adapt, label, state,
            counts, ev_buf, n_ev, full_clamp, tie_log, tie_n):
    """Run one presentation of T steps for one replica; returns the excitatory spike count.

    ``learning`` turns on plasticity (and a teacher's drive), ``adapt`` the neuron
    level's own adaptation (adaptive thresholds): training sets both, responses
    neither, and settling (:func:`respond_replica` with ``adapt``) ``adapt`` alone.

    ``net``/``pn``/``pr`` are this replica's network, neuron and rule records. ``counts``
    (n,) receives spike counts; ``ev_buf`` (cap, 2) receives (step, neuron) of spikes in
    order, ``n_ev[0]`` their total. ``full_clamp[0]`` asks for a clamp of all of W at the
    first update (BindsNET clamps the whole matrix every step; W only leaves [wmin, wmax]
    through normalisation). ``tie_log`` records the one-spike choices when it has room
    (parity tests replay them).

    Work per step that does not follow spikes is the input current (a row of W per
    input spike) and the excitatory neuron step; the rest runs over the neurons that have
    fired in this presentation (``active``). Every other neuron has a zero post trace,
    an inhibitory partner at rest that has never been driven, and so receives rule
    updates of exactly zero; skipping them leaves every number as it was.
    """
    n_in = W.shape[0]
    n = W.shape[1]
    f32 = np.float32
    gain = net.gain
    exc = net.exc
    inh = net.inh
    ithresh = net.ithresh
    irest = net.irest
    ireset = net.ireset
    irefrac_p = net.irefrac
    idecay = net.idecay
    tr_decay = net.trace_decay
    wmin = net.wmin
    wmax = net.wmax
    dt = net.dt
    n_classes = net.n_classes
    plastic = RULE_PLASTIC and learning
    teach_label = label if (RULE_SUPERVISED and learning) else -1
    one_spike = NEURON_ONE_SPIKE and net.one_spike != 0

    st = np.zeros((NEURON_STATE, n), dtype=np.float32)
    neuron_reset(pn, st)
    s = np.zeros(n, dtype=np.bool_)
    xe = np.zeros(n, dtype=np.float32)
    aux = np.zeros((max(RULE_TRACES, 1), n), dtype=np.float32)
    vi = np.full(n, irest, dtype=np.float32)
    irefrac = np.zeros(n, dtype=np.float32)
    si = np.zeros(n, dtype=np.bool_)
    xin = np.zeros(n_in, dtype=np.float32)
    scratch = np.zeros(n_in, dtype=np.bool_)
    cur = np.zeros(n, dtype=np.float32)
    curi = np.zeros(n, dtype=np.float32)
    fired_e = np.zeros(n, dtype=np.int64)
    # Neurons that have fired in this presentation, in order of their first spike.
    active = np.zeros(n, dtype=np.int64)
    is_active = np.zeros(n, dtype=np.bool_)
    nact = 0
    if not irest < ithresh:
        # Inhibitory neurons would fire at rest: every one is live from the start.
        for j in range(n):
            active[j] = j
            is_active[j] = True
        nact = n
    cap = ev_buf.shape[0]

    total = 0
    prev_lo = 0
    prev_hi = 0
    for t in range(T):
        # 1. Currents from last step's spikes; inhibitory spikes and the excitatory
        # spikes that drive them only come from active neurons.
        for j in range(n):
            cur[j] = f32(0.0)
        for e in range(prev_lo, prev_hi):
            i = idx[e]
            for j in range(n):
                cur[j] += W[i, j]
        ninh = 0
        for q in range(nact):
            j = active[q]
            if si[j]:
                ninh += 1
            curi[j] = exc if s[j] else f32(0.0)
        # The all-but-self inhibition a neuron gets: ninh spikes, or ninh - 1 when its
        # own partner is one of them.
        inh_all = (-inh) * f32(ninh)
        inh_but_self = (-inh) * f32(ninh - 1)
        # 2a. Input layer: spikes and traces.
        lo = ptr[t]
        hi = ptr[t + 1]
        for i in range(n_in):
            xin[i] *= tr_decay
        for e in range(lo, hi):
            xin[idx[e]] = f32(1.0)
        # 2b. Excitatory layer.
        nfire = 0
        for j in range(n):
            ff = cur[j] * gain if gain != f32(1.0) else cur[j]
            current = ff + (inh_but_self if si[j] else inh_all)
            if teach_label >= 0:
                # BindsNET's injects_v: added to v before the layer's step.
                st[0, j] += rule_drive(pr, j, teach_label, n_classes)
            fire = neuron_step(pn, st, theta, j, current, adapt)
            s[j] = fire
            if fire:
                fired_e[nfire] = j
                nfire += 1
        if one_spike and nfire > 1:
            u = random.uniform(state)
            pick = int(u * nfire)
            if pick >= nfire:
                pick = nfire - 1
            keep = fired_e[pick]
            if tie_n[0] < tie_log.shape[0]:
                tie_log[tie_n[0]] = keep
                tie_n[0] += 1
            for q in range(nfire):
                s[fired_e[q]] = False
            s[keep] = True
            fired_e[0] = keep
            nfire = 1
        for q in range(nact):
            xe[active[q]] *= tr_decay
        for q in range(nfire):
            j = fired_e[q]
            xe[j] = f32(1.0)
            counts[j] += 1
            if n_ev[0] < cap:
                ev_buf[n_ev[0], 0] = t
                ev_buf[n_ev[0], 1] = j
            n_ev[0] += 1
            if not is_active[j]:
                is_active[j] = True
                active[nact] = j
                nact += 1
        total += nfire
        # 2c. Inhibitory layer (the others stay at rest: v = rest is a fixed point).
        for q in range(nact):
            j = active[q]
            vi[j] = (vi[j] - irest) * idecay + irest
            inp = curi[j] if irefrac[j] <= f32(0.0) else f32(0.0)
            irefrac[j] -= dt
            vi[j] += inp
            fi = vi[j] >= ithresh
            si[j] = fi
            if fi:
                irefrac[j] = irefrac_p
                vi[j] = ireset
        # 3. Plasticity of X -> Ae.
        if plastic:
            if full_clamp[0]:
                for i in range(n_in):
                    for j in range(n):
                        w = W[i, j]
                        W[i, j] = wmin if w < wmin else (wmax if w > wmax else w)
                full_clamp[0] = False
            rule_update(pr, W, xin, xe, aux, s, idx, lo, hi, fired_e, nfire, active, nact,
                        teach_label, n_classes, scratch)
            # Only active columns of the rows of inputs that fired (and the columns of
            # neurons that fired) can have changed; the rest of W is within bounds.
            for e in range(lo, hi):
                i = idx[e]
                for q in range(nact):
                    j = active[q]
                    w = W[i, j]
                    W[i, j] = wmin if w < wmin else (wmax if w > wmax else w)
            for q in range(nfire):
                j = fired_e[q]
                for i in range(n_in):
                    w = W[i, j]
                    W[i, j] = wmin if w < wmin else (wmax if w > wmax else w)
        prev_lo = lo
        prev_hi = hi
    return total


@nb.njit(cache=True, nogil=True)
def normalize(W, norm, wmin=-np.inf, wmax=np.inf):
    """Scale each target neuron's weights to sum ``norm`` (BindsNET ``normalize``), then
    clamp them to [wmin, wmax] (the default bounds clamp nothing).

    The clamp stands in for the whole-matrix clamp of the next learning step, which
    BindsNET does before W is next read. Returns False when a column sum is not finite
    (the cell diverged); such columns are left as they are.
    """
    n_in, n = W.shape
    # Row by row (W is row-major), each column summed in the same order as before.
    acc = np.zeros(n, dtype=np.float64)
    for i in range(n_in):
        for j in range(n):
            acc[j] += abs(W[i, j])
    scale = np.ones(n, dtype=np.float32)
    finite = np.ones(n, dtype=np.bool_)
    for j in range(n):
        sj = np.float32(acc[j])
        # A float32 sum of inf would scale the column to zero and hide the blow-up.
        if not np.isfinite(acc[j]) or not np.isfinite(sj):
            finite[j] = False
            continue
        if sj == np.float32(0.0):
            sj = np.float32(1.0)
        scale[j] = norm / sj
    for i in range(n_in):
        for j in range(n):
            if finite[j]:
                w = W[i, j] * scale[j]
                W[i, j] = wmin if w < wmin else (wmax if w > wmax else w)
    return finite.all()


@nb.njit(cache=True, nogil=True)
def train_replica(X, Y, order, start, W, theta, net, pn, pr, T, phase,
                  exc_spikes, in_spikes, retries, diverged, full_clamp):
    """Train one replica on its samples ``X[order[k]]`` (global positions start + k).

    Writes per-sample excitatory and input spike counts and retries; ``diverged[0]`` is
    set to the 1-based position of the first non-finite weight or threshold.
    ``full_clamp[0]`` (the replica's, kept between calls) says that W has been
    normalised since it was last clamped.
    """
    n_in = W.shape[0]
    n = W.shape[1]
    K = order.shape[0]
    if diverged[0] > 0:
        return
    ev_t = np.empty(n_in * T + 1, dtype=np.int32)
    ev_i = np.empty(n_in * T + 1, dtype=np.int32)
    idx = np.empty(n_in * T + 1, dtype=np.int32)
    ptr = np.empty(T + 1, dtype=np.int64)
    counts = np.zeros(n, dtype=np.int64)
    ev_buf = np.zeros((1, 2), dtype=np.int32)
    n_ev = np.zeros(1, dtype=np.int64)
    tie_log = np.zeros(0, dtype=np.int64)
    tie_n = np.zeros(1, dtype=np.int64)
    state = np.zeros(1, dtype=np.uint64)
    for k in range(K):
        s_idx = order[k]
        x = X[s_idx]
        rate = net.rate
        attempt = 0
        while True:
            state[0] = random.stream_seed(net.seed, phase, start + k, attempt)
            m = gen_events(x, rate, T, net.dt, state, ev_t, ev_i, ptr, idx)
            in_spikes[k] += m
            n_ev[0] = 0
            spk = present(W, theta, net, pn, pr, ptr, idx, T, True, True, Y[s_idx],
                          state, counts, ev_buf, n_ev, full_clamp, tie_log, tie_n)
            exc_spikes[k] = spk
            again = spk < net.min_spikes and attempt < net.max_retries
            if RULE_PLASTIC and (again or k < K - 1):
                # A learning presentation follows in this call: its first update would
                # clamp all of W before reading it, so clamp in the same pass.
                ok = normalize(W, net.norm, net.wmin, net.wmax)
                full_clamp[0] = False
            else:
                ok = normalize(W, net.norm)
                full_clamp[0] = True
            for j in range(n):
                if not np.isfinite(theta[j]):
                    ok = False
            if not ok:
                diverged[0] = start + k + 1
                return
            if not again:
                break
            attempt += 1
            retries[k] += 1
            rate += net.retry_step


@nb.njit(cache=True, nogil=True)
def respond_replica(X, order, start, W, theta, net, pn, pr, T, phase, adapt, counts, ev_out,
                    n_ev_out, in_spikes):
    """Frozen-weight responses of one replica to its samples ``X[order[k]]``, with the
    neuron level's adaptation on when ``adapt`` (settling: thresholds move, presentation
    by presentation, and nothing else does; no retries, no teacher).

    Fills spike ``counts`` (K, n), the first ``ev_out.shape[1]`` spike events per sample
    and their total in ``n_ev_out``. Each sample's stream is keyed by its global position
    ``start + k``, so the result does not depend on how samples are split into calls.
    """
    n_in = W.shape[0]
    K = order.shape[0]
    ev_t = np.empty(n_in * T + 1, dtype=np.int32)
    ev_i = np.empty(n_in * T + 1, dtype=np.int32)
    idx = np.empty(n_in * T + 1, dtype=np.int32)
    ptr = np.empty(T + 1, dtype=np.int64)
    n_ev = np.zeros(1, dtype=np.int64)
    full_clamp = np.zeros(1, dtype=np.bool_)
    tie_log = np.zeros(0, dtype=np.int64)
    tie_n = np.zeros(1, dtype=np.int64)
    state = np.zeros(1, dtype=np.uint64)
    for k in range(K):
        state[0] = random.stream_seed(net.seed, phase, start + k, 0)
        m = gen_events(X[order[k]], net.rate, T, net.dt, state, ev_t, ev_i, ptr, idx)
        in_spikes[k] = m
        n_ev[0] = 0
        # A literal flag in each branch: with adapt passed through to present, evaluation
        # (this loop's hot use) measured 5,749 samples/s against 14,653 (stdp-bench bench),
        # presumably because the constant no longer folds into the inlined neuron step.
        if adapt:
            present(W, theta, net, pn, pr, ptr, idx, T, False, True, -1, state,
                    counts[k], ev_out[k], n_ev, full_clamp, tie_log, tie_n)
        else:
            present(W, theta, net, pn, pr, ptr, idx, T, False, False, -1, state,
                    counts[k], ev_out[k], n_ev, full_clamp, tie_log, tie_n)
        n_ev_out[k] = n_ev[0]


@nb.njit(cache=True, nogil=True)
def encode_dense(X, samples, keys, rates, seeds, dts, T, phase, out, in_spikes):
    """Dense input trains ``out[T, B, n_in]`` for batch rows b = 0..B-1.

    Row b encodes image ``X[samples[b]]`` at rate ``rates[b]`` from the stream of seed
    ``seeds[b]`` that ``train_replica``/``respond_replica`` use (``keys[b]`` is the
    sample position; ``keys`` shifted by 40 bits carry the retry attempt), so the torch
    engines see the kernel's spike trains.
    """
    B = samples.shape[0]
    n_in = out.shape[2]
    ev_t = np.empty(n_in * T + 1, dtype=np.int32)
    ev_i = np.empty(n_in * T + 1, dtype=np.int32)
    idx = np.empty(n_in * T + 1, dtype=np.int32)
    ptr = np.empty(T + 1, dtype=np.int64)
    state = np.zeros(1, dtype=np.uint64)
    for b in range(B):
        state[0] = random.stream_seed(seeds[b], phase, keys[b] & ((1 << 40) - 1),
                                      keys[b] >> 40)
        m = gen_events(X[samples[b]], rates[b], T, dts[b], state, ev_t, ev_i, ptr, idx)
        in_spikes[b] = m
        for t in range(T):
            for e in range(ptr[t], ptr[t + 1]):
                out[t, b, idx[e]] = True
