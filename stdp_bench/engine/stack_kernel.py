"""Event-driven simulation of a layer stack (numba): SpykeTorch's one-spike networks
(Kheradpisheh et al. 2018) computed from first-spike times.

A template, like :mod:`stdp_bench.engine.map_kernel`: :func:`~stdp_bench.engine.kernel_build.kernel_for`
(``template="stack"``) copies it per (encoder, rule) with the encoder's events and the
rule's update between the ``levels`` markers.

Every neuron of a stack is a non-leaky integrate-and-fire map unit that fires at most
once per image, when its potential first exceeds the layer's threshold; an input adds its
weight from its spike on. So a layer is a function from its inputs' first-spike steps to
its units' (no delay between layers, as SpykeTorch's spike waves have none), and a
layer's work is its input spikes' fan-out: each spike adds one row of ``F`` weights at
each place whose field holds it, and only those places are tested against the threshold.
Times live in one int32 buffer, layer after layer (``off``), ``T`` meaning "never".

Learning one conv layer on an image (:func:`train_stack`), as SpykeTorch's training pass:
1. the layers below run with no competition; if the layer has ``inhibit_input``, only
   the earliest map at each input place keeps its spike (ties: the lower map);
2. pointwise inhibition of the layer's output: at each place only the earliest map
   fires (ties: the larger potential at that step, then the lower map);
3. k winners: repeatedly the earliest spike (ties: larger potential, then the lower
   (map, row, column) index), which removes its map and every map within ``radius``
   places from the candidates, at most ``winners`` times;
4. each winner's field learns by the rule's update for one post spike, with "fired
   before" meaning an input step at or before the winner's (padding never fires), then
   the clamp to [wmin, wmax] (the whole kernel's at the layer's first image).

A layer with ``fire_at_end`` has no threshold: every unit whose potential is positive
after the last step fires on it (SpykeTorch's ``fire`` with threshold None), so its
winner is the largest potential and "fired before" is "fired at all". A ``decide``
layer (the last) assigns its maps to the classes in equal blocks: the winner's block is
the image's decision, which training reports per image and the rule reads against the
label (R-STDP), and which the frozen responses return.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from stdp_bench.levels import random

# --- levels: begin (kernel_build replaces this block) ---
from stdp_bench.engine.kernel import gen_events
from stdp_bench.levels.rules.multiplicative import kernel_update as rule_update

RULE_PLASTIC = True
# --- levels: end ---

# geo[l]: one layer's integers.
(L_KIND, L_C, L_H, L_W, L_F, L_h, L_w, L_K, L_S, L_PAD, L_WIN, L_RAD, L_WOFF,
 L_INHIB, L_END, L_DECIDE) = range(16)
KIND_CONV, KIND_POOL = 0, 1


@nb.njit(cache=True, nogil=True)
def input_times(x, net, T, state, ev_t, ev_i, ptr, idx, tin):
    """The first spike step of every input of image ``x`` (``T``: none); returns the
    encoder's spike count."""
    m = gen_events(x, net.rate, T, net.dt, state, ev_t, ev_i, ptr, idx)
    tin[:] = T
    for t in range(T - 1, -1, -1):
        for e in range(ptr[t], ptr[t + 1]):
            tin[idx[e]] = t
    return m


@nb.njit(cache=True, nogil=True)
def conv_layer(tin, tout, vout, g, Wm, thr, T, pot, done, touched, tlist, cnt, order,
               ops, flist):
    """One conv layer: ``tout`` (F*h*w, map-major) gets each unit's first step over
    ``thr`` and ``vout`` its potential then; returns the number of units that fired,
    listed in ``flist`` in the order they fired, and adds its synaptic operations
    (weights added) to ``ops[0]``. ``pot`` and ``done`` (h*w*F, place-major),
    ``touched`` (h*w) and the rest are scratch."""
    C, H, W, F, h, w = g[L_C], g[L_H], g[L_W], g[L_F], g[L_h], g[L_w]
    k, s, pad = g[L_K], g[L_S], g[L_PAD]
    at_end = g[L_END] != 0
    hw = h * w
    kk = k * k
    n_in = C * H * W
    # Inputs by step (a counting sort).
    for t in range(T + 1):
        cnt[t] = 0
    for i in range(n_in):
        if tin[i] < T:
            cnt[tin[i] + 1] += 1
    for t in range(T):
        cnt[t + 1] += cnt[t]
    for i in range(n_in):
        if tin[i] < T:
            order[cnt[tin[i]]] = i
            cnt[tin[i]] += 1
    # cnt[t] is now the end of step t's inputs.
    pot[:hw * F] = 0.0
    done[:hw * F] = False
    tout[:F * hw] = T
    nfired = 0
    lo = 0
    for t in range(T):
        hi = cnt[t]
        nt = 0
        for e in range(lo, hi):
            i = order[e]
            c = i // (H * W)
            y = (i // W) % H + pad
            x = i % W + pad
            oy0 = 0 if y < k else (y - k) // s + 1
            ox0 = 0 if x < k else (x - k) // s + 1
            oy1 = min(h - 1, y // s)
            ox1 = min(w - 1, x // s)
            if oy1 >= oy0 and ox1 >= ox0:
                ops[0] += (oy1 - oy0 + 1) * (ox1 - ox0 + 1) * F
            for oy in range(oy0, oy1 + 1):
                for ox in range(ox0, ox1 + 1):
                    place = oy * w + ox
                    row = Wm[c * kk + (y - oy * s) * k + (x - ox * s)]
                    here = pot[place * F:place * F + F]
                    for f in range(F):
                        here[f] += row[f]
                    if not touched[place]:
                        touched[place] = True
                        tlist[nt] = place
                        nt += 1
        lo = hi
        if at_end:
            for q in range(nt):
                touched[tlist[q]] = False
            continue
        for q in range(nt):
            place = tlist[q]
            touched[place] = False
            here = pot[place * F:place * F + F]
            done_here = done[place * F:place * F + F]
            # A branch-free test over the place's maps first (SIMD lanes): most places
            # touched at a step have no new unit over threshold.
            new = 0
            for f in range(F):
                new += (here[f] > thr) & (not done_here[f])
            if new == 0:
                continue
            for f in range(F):
                if here[f] > thr and not done_here[f]:
                    done_here[f] = True
                    j = f * hw + place
                    tout[j] = t
                    vout[j] = here[f]
                    flist[nfired] = j
                    nfired += 1
    if at_end:
        # No threshold: whatever ends positive fires on the last step (SpykeTorch's
        # fire with threshold None), listed place by place.
        for place in range(hw):
            here = pot[place * F:place * F + F]
            for f in range(F):
                if here[f] > 0.0:
                    j = f * hw + place
                    tout[j] = T - 1
                    vout[j] = here[f]
                    flist[nfired] = j
                    nfired += 1
    return nfired


@nb.njit(cache=True, nogil=True)
def pool_layer(tin, tout, g, T):
    """Spike max-pooling: each window passes its earliest spike (padding never fires)."""
    C, H, W, h, w = g[L_C], g[L_H], g[L_W], g[L_h], g[L_w]
    k, s, pad = g[L_K], g[L_S], g[L_PAD]
    for c in range(C):
        for oy in range(h):
            for ox in range(w):
                best = T
                for dy in range(k):
                    y = oy * s - pad + dy
                    if y < 0 or y >= H:
                        continue
                    for dx in range(k):
                        x = ox * s - pad + dx
                        if 0 <= x < W:
                            v = tin[c * H * W + y * W + x]
                            if v < best:
                                best = v
                tout[c * h * w + oy * w + ox] = best


@nb.njit(cache=True, nogil=True)
def pointwise(times, C, hw, T):
    """At each place only the earliest of the C maps keeps its spike (ties: the lower
    map): SpykeTorch's pointwise inhibition of a spike wave."""
    for place in range(hw):
        best = -1
        bt = T
        for c in range(C):
            t = times[c * hw + place]
            if t < bt:
                best = c
                bt = t
        for c in range(C):
            if c != best:
                times[c * hw + place] = T


@nb.njit(cache=True, nogil=True)
def earliest_per_place(flist, nfired, times, vals, hw, best, cand):
    """Pointwise inhibition of a layer's output, from the list of its ``nfired`` units:
    at each place the unit that fired first, ties to the larger potential then, then the
    lower map, written to ``cand``; returns how many places fired. ``best`` (hw) is
    scratch, left all -1."""
    nc = 0
    for q in range(nfired):
        j = flist[q]
        place = j % hw
        b = best[place]
        if b < 0:
            best[place] = j
            cand[nc] = place
            nc += 1
        elif times[j] < times[b] or (times[j] == times[b] and (
                vals[j] > vals[b] or (vals[j] == vals[b] and j < b))):
            best[place] = j
    for q in range(nc):
        place = cand[q]
        cand[q] = best[place]
        best[place] = -1
    return nc


@nb.njit(cache=True, nogil=True)
def k_winners(times, vals, cand, nc, F, h, w, kwta, radius, T, out, map_off, place_off):
    """Up to ``kwta`` winners among the units ``cand[:nc]`` (flat map-major indices, into
    ``out``): the earliest spike, then the larger potential, then the lower index; each
    removes its map and every map within ``radius`` places. Returns how many."""
    hw = h * w
    map_off[:F] = False
    place_off[:hw] = False
    n = 0
    for _ in range(kwta):
        best = -1
        bt = T
        bv = np.float32(0.0)
        for q in range(nc):
            j = cand[q]
            t = times[j]
            if t > bt or map_off[j // hw] or place_off[j % hw]:
                continue
            if t < bt or vals[j] > bv or (vals[j] == bv and j < best):
                best = j
                bt = t
                bv = vals[j]
        if best < 0:
            break
        out[n] = best
        n += 1
        f = best // hw
        oy = (best % hw) // w
        ox = best % w
        map_off[f] = True
        for yy in range(max(0, oy - radius), min(h, oy + radius + 1)):
            for xx in range(max(0, ox - radius), min(w, ox + radius + 1)):
                place_off[yy * w + xx] = True
    return n


@nb.njit(cache=True, nogil=True)
def learn(tin, tout, winners, nwin, g, Wm, pr, wmin, wmax, label, n_classes, pre,
          no_trace, aux, spiked, pidx, one, scratch):
    """Each winner's field learns by the rule's update for one post spike (``label``:
    the image's class, for a rule that learns from a decision)."""
    C, H, W, h, w = g[L_C], g[L_H], g[L_W], g[L_h], g[L_w]
    k, s, pad = g[L_K], g[L_S], g[L_PAD]
    hw = h * w
    nf = C * k * k
    for q in range(nwin):
        j = winners[q]
        f = j // hw
        oy = (j % hw) // w
        ox = j % w
        tpost = tout[j]
        p = 0
        for c in range(C):
            for dy in range(k):
                y = oy * s + dy - pad
                for dx in range(k):
                    x = ox * s + dx - pad
                    fired = (0 <= y < H and 0 <= x < W
                             and tin[c * H * W + y * W + x] <= tpost)
                    pre[p] = np.float32(1.0) if fired else np.float32(0.0)
                    p += 1
        one[0] = f
        rule_update(pr, Wm, pre, no_trace, aux, spiked, pidx, 0, 0, one, 1, one, 1, label,
                    n_classes, scratch)
        for p in range(nf):
            v = Wm[p, f]
            Wm[p, f] = wmin if v < wmin else (wmax if v > wmax else v)


@nb.njit(cache=True, nogil=True)
def _forward(tbuf, vbuf, off, geo, Wflat, thr, T, first, upto, trained, pot, done,
             touched, tlist, cnt, order, ops, flist):
    """Layers first .. upto-1 of one image, layer ``first``'s inputs already in
    ``tbuf[off[first]:]``; the trained layer (``trained``, -1: none) sees its input
    inhibited when it asks. Returns the spike count of the last layer run."""
    fired = 0
    for l in range(first, upto):
        g = geo[l]
        a, b = off[l], off[l + 1]
        n_out = off[l + 2] - b
        if l == trained and g[L_INHIB] != 0:
            pointwise(tbuf[a:b], g[L_C], g[L_H] * g[L_W], T)
        if g[L_KIND] == KIND_CONV:
            nf = g[L_C] * g[L_K] * g[L_K]
            Wm = Wflat[g[L_WOFF]:g[L_WOFF] + nf * g[L_F]].reshape((nf, g[L_F]))
            fired = conv_layer(tbuf[a:b], tbuf[b:b + n_out], vbuf[b:b + n_out], g, Wm,
                               thr[l], T, pot, done, touched, tlist, cnt, order, ops,
                               flist)
        else:
            pool_layer(tbuf[a:b], tbuf[b:b + n_out], g, T)
            fired = 0
            for j in range(b, b + n_out):
                if tbuf[j] < T:
                    fired += 1
    return fired


@nb.njit(cache=True, nogil=True)
def _scratch(off, geo, T):
    n_max = 0
    pot_max = 1
    for seg in range(off.shape[0] - 1):
        n_max = max(n_max, off[seg + 1] - off[seg])
    for l in range(geo.shape[0]):
        if geo[l, L_KIND] == KIND_CONV:
            pot_max = max(pot_max, geo[l, L_F] * geo[l, L_h] * geo[l, L_w])
    return n_max, pot_max


@nb.njit(cache=True, nogil=True)
def _buffers(n_in, off, geo, T):
    """The per-call buffers of :func:`train_stack` and :func:`respond_stack`: the time
    and potential buffers of every segment, the encoder's events, and the conv layers'
    scratch (sized for the largest)."""
    n_max, pot_max = _scratch(off, geo, T)
    return (np.empty(off[-1], np.int32), np.zeros(off[-1], np.float32),
            np.empty(n_in * T + 1, np.int32), np.empty(n_in * T + 1, np.int32),
            np.empty(n_in * T + 1, np.int32), np.empty(T + 1, np.int64),
            np.zeros(pot_max, np.float32), np.zeros(pot_max, np.bool_),
            np.zeros(pot_max, np.int64), np.zeros(pot_max, np.bool_),
            np.zeros(pot_max, np.int64), np.zeros(T + 1, np.int64),
            np.zeros(n_max, np.int64))


@nb.njit(cache=True, nogil=True)
def _load(X, Xc, row, first, net, T, state, ev_t, ev_i, ptr, idx, tbuf, off):
    """Image ``row``'s input to layer ``first``: the encoder's spikes of ``X[row]``
    (``first`` 0), else the kept times ``Xc[row]``; returns the spikes it holds."""
    if first == 0:
        return input_times(X[row], net, T, state, ev_t, ev_i, ptr, idx, tbuf[:off[1]])
    seg = tbuf[off[first]:off[first + 1]]
    kept = Xc[row]
    m = 0
    for i in range(seg.shape[0]):
        seg[i] = kept[i]
        if kept[i] < T:
            m += 1
    return m


@nb.njit(cache=True, nogil=True)
def _class_of(unit, F, hw, n_classes):
    """The class whose block of ``F // n_classes`` maps holds a decision layer's
    ``unit`` (map-major)."""
    return (unit // hw) // (F // n_classes)


@nb.njit(cache=True, nogil=True)
def train_stack(X, Xc, first, order, start, layer_start, layer, Wflat, geo, off, thr, fp,
                net, pr, T, phase, Y, n_classes, out_spikes, in_spikes, outcome):
    """Train conv layer ``layer`` on images ``order[k]`` (positions ``start + k``),
    from the encoder's spikes of ``X`` (``first`` 0) or from layer ``first``'s kept
    input times ``Xc`` (the frozen layers below already run; :func:`stack_times`).
    ``out_spikes[k]`` gets the number of the layer's units that fired (before
    competition), ``in_spikes[k]`` the spikes it started from (the encoder's, or the
    kept input's); on a decision layer ``outcome[k]`` gets 1 for a right decision, 0 for
    a wrong one, -1 for none (elsewhere it is left alone). At the layer's first image
    (position ``layer_start``) its whole kernel is clamped to ``fp`` after learning, as
    SpykeTorch clamps the whole weight tensor at every update (later updates move only
    the winners' fields, which ``learn`` clamps)."""
    n_in = X.shape[1]
    (tbuf, vbuf, ev_t, ev_i, idx, ptr, pot, done, flist, touched, tlist, cnt,
     sorder) = _buffers(n_in, off, geo, T)
    g = geo[layer]
    F = g[L_F]
    nf = g[L_C] * g[L_K] * g[L_K]
    Wm = Wflat[g[L_WOFF]:g[L_WOFF] + nf * F].reshape((nf, F))
    hw = g[L_h] * g[L_w]
    decide = g[L_DECIDE] != 0
    winners = np.zeros(max(1, g[L_WIN]), np.int64)
    map_off = np.zeros(F, np.bool_)
    place_off = np.zeros(hw, np.bool_)
    cand = np.zeros(hw, np.int64)
    best = np.full(hw, -1, np.int64)
    pre = np.zeros(nf, np.float32)
    no_trace = np.zeros(F, np.float32)
    aux = np.zeros((1, F), np.float32)
    spiked = np.zeros(F, np.bool_)
    pidx = np.zeros(nf, np.int32)
    one = np.zeros(1, np.int64)
    scratch = np.zeros(nf, np.bool_)
    state = np.zeros(1, np.uint64)
    ops = np.zeros(1, np.int64)
    a, b = off[layer + 1], off[layer + 2]
    for k in range(order.shape[0]):
        state[0] = random.stream_seed(net.seed, phase, start + k, 0)
        in_spikes[k] = _load(X, Xc, order[k], first, net, T, state, ev_t, ev_i, ptr, idx,
                             tbuf, off)
        out_spikes[k] = _forward(tbuf, vbuf, off, geo, Wflat, thr, T, first, layer + 1,
                                 layer, pot, done, touched, tlist, cnt, sorder, ops, flist)
        if not RULE_PLASTIC and not decide:
            continue
        nc = earliest_per_place(flist, out_spikes[k], tbuf[a:b], vbuf[a:b], hw, best, cand)
        nwin = k_winners(tbuf[a:b], vbuf[a:b], cand, nc, F, g[L_h], g[L_w], g[L_WIN],
                         g[L_RAD], T, winners, map_off, place_off)
        label = Y[order[k]]
        if decide:
            outcome[k] = -1 if nwin == 0 else (
                1 if _class_of(winners[0], F, hw, n_classes) == label else 0)
        if not RULE_PLASTIC:
            continue
        learn(tbuf[off[layer]:a], tbuf[a:b], winners, nwin, g, Wm, pr, fp[0], fp[1],
              label, n_classes, pre, no_trace, aux, spiked, pidx, one, scratch)
        if start + k == layer_start:
            for p in range(nf):
                for f in range(F):
                    v = Wm[p, f]
                    Wm[p, f] = fp[0] if v < fp[0] else (fp[1] if v > fp[1] else v)


@nb.njit(cache=True, nogil=True)
def stack_times(X, order, start, Wflat, geo, off, thr, net, T, phase, upto, out):
    """What the frozen layers 0 .. upto-1 make of images ``order[k]``: ``out[k]`` gets
    layer ``upto``'s input times (``T``: never), the input a trained layer ``upto``
    reads (no competition below it, as in :func:`train_stack`)."""
    n_in = X.shape[1]
    (tbuf, vbuf, ev_t, ev_i, idx, ptr, pot, done, flist, touched, tlist, cnt,
     sorder) = _buffers(n_in, off, geo, T)
    state = np.zeros(1, np.uint64)
    ops = np.zeros(1, np.int64)
    a, b = off[upto], off[upto + 1]
    for k in range(order.shape[0]):
        state[0] = random.stream_seed(net.seed, phase, start + k, 0)
        input_times(X[order[k]], net, T, state, ev_t, ev_i, ptr, idx, tbuf[:off[1]])
        _forward(tbuf, vbuf, off, geo, Wflat, thr, T, 0, upto, -1, pot, done, touched,
                 tlist, cnt, sorder, ops, flist)
        for i in range(b - a):
            out[k, i] = tbuf[a + i]


@nb.njit(cache=True, nogil=True)
def respond_stack(X, order, start, Wflat, geo, off, thr, net, T, phase, n_classes,
                  counts, events, n_events, in_spikes, synops, decisions):
    """Frozen responses of the whole stack: ``counts[k]`` is 1 where a unit of the last
    layer fired; ``events[k]`` its first spikes as (step, unit) in step order (units
    increasing within a step), ``n_events[k]`` how many fired, ``synops[k]`` the weights
    all layers added; ``decisions[k]`` the decision layer's class (-1: silent; left
    alone when the last layer does not decide)."""
    n_in = X.shape[1]
    (tbuf, vbuf, ev_t, ev_i, idx, ptr, pot, done, flist, touched, tlist, cnt,
     sorder) = _buffers(n_in, off, geo, T)
    L = geo.shape[0]
    a = off[L]
    n_out = off[L + 1] - a
    g = geo[L - 1]
    decide = g[L_DECIDE] != 0
    hw = g[L_h] * g[L_w]
    # A decision layer's winner: the training pass's k winners, one, no radius.
    win = np.zeros(1, np.int64)
    map_off = np.zeros(g[L_F], np.bool_)
    place_off = np.zeros(hw, np.bool_)
    cap = events.shape[1]
    per = np.zeros(T + 1, np.int64)
    state = np.zeros(1, np.uint64)
    ops = np.zeros(1, np.int64)
    for k in range(order.shape[0]):
        state[0] = random.stream_seed(net.seed, phase, start + k, 0)
        in_spikes[k] = input_times(X[order[k]], net, T, state, ev_t, ev_i, ptr, idx,
                                   tbuf[:off[1]])
        ops[0] = 0
        nfired = _forward(tbuf, vbuf, off, geo, Wflat, thr, T, 0, L, -1, pot, done,
                          touched, tlist, cnt, sorder, ops, flist)
        synops[k] = ops[0]
        out = tbuf[a:a + n_out]
        if decide:
            nwin = k_winners(out, vbuf[a:a + n_out], flist, nfired, g[L_F], g[L_h],
                             g[L_w], 1, 0, T, win, map_off, place_off)
            decisions[k] = -1 if nwin == 0 else _class_of(win[0], g[L_F], hw, n_classes)
        per[:] = 0
        total = 0
        for j in range(n_out):
            if out[j] < T:
                counts[k, j] = 1
                per[out[j] + 1] += 1
                total += 1
        n_events[k] = total
        for t in range(T):
            per[t + 1] += per[t]
        for j in range(n_out):
            t = out[j]
            if t < T:
                e = per[t]
                per[t] += 1
                if e < cap:
                    events[k, e, 0] = t
                    events[k, e, 1] = j
