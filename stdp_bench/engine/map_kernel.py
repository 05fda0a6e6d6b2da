"""Fused, event-driven simulation of one convolutional or locally connected STDP layer
(numba), composed from the levels' kernel steps.

A template, like :mod:`stdp_bench.engine.kernel`: :func:`~stdp_bench.engine.kernel_build.kernel_for`
(``template="maps"``) copies it per (encoder, neuron, rule) with that combination's
steps between the ``levels`` markers; as written it imports and runs with the defaults.

The layer is ``F`` feature maps on an ``h x w`` grid of places over ``(C, H, W)`` inputs
(``k x k`` fields, stride ``s``, no padding). Weights are ``L[n_w, C*k*k, F]``: one
``[field, F]`` matrix shared by every place (conv, ``n_w = 1``) or one per place (local,
``n_w = h*w``), so a rule level's ``kernel_update`` sees the matrix of one place as its
``W`` (inputs = the field, neurons = the maps there). Neurons are numbered place-major
inside (``j = place * F + f``); counts and events leave in BindsNET's map-major order
(``f * h * w + place``).

One step follows ``Network.run`` on :func:`stdp_bench.networks.conv.build_feature_network`
(tests/test_map_parity.py):
1. currents from the previous step's spikes: each input spike adds its column of the
   field matrix at every place whose field holds it (its fan-out, nothing else); then
   each map spike inhibits the other maps at its place by ``inh``;
2. the step of each input's last spike (learning reads a field's traces from it by
   age, where it needs them); every neuron's level step up to the threshold test
   (``kernel_integrate_all``: its margin over threshold), at most ``winners`` maps per
   place fire (largest margin first, ties to the lower map), and fire (``kernel_fire``);
3. learning. First-spike (``first_spike``): the step's spikes whose map has not learned
   this image (conv) and whose place is free, best-matching first, at most ``kwta`` an
   image (when above 0), each claims the places within ``claim_r`` and applies the
   rule's update for one post spike on its field's traces; every-spike (local only): the rule's update at every place with
   activity, on that place's matrix. Each updated entry is clamped to [wmin, wmax].
Weights are normalised per presentation by :func:`normalize_maps`.

Evaluation steps only the places input has reached (:func:`rest_is_quiet`): a place's
neurons stay in their reset state, exactly, until its first input current, and under
threshold there, so they cannot fire before it. In the shipped conv cell on MNIST about
half the place-steps are left out; the spikes are the same.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from stdp_bench.levels import random

# --- levels: begin (kernel_build replaces this block) ---
from stdp_bench.engine.kernel import gen_events
from stdp_bench.levels.neurons.adaptive import kernel_reset as neuron_reset
from stdp_bench.levels.neurons.adaptive import kernel_integrate_all as neuron_integrate_all
from stdp_bench.levels.neurons.adaptive import kernel_fire as neuron_fire
from stdp_bench.levels.rules.stdp import kernel_update as rule_update

NEURON_STATE = 2  # rows of per-neuron state (row 0 is the membrane potential)
NEURON_RESTS = True  # the reset state is fixed without current (Level.rests)
RULE_PLASTIC = True
RULE_TRACES = 0  # rows of extra per-neuron traces the rule keeps
# --- levels: end ---

# geo: the layer's integers.
G_C, G_H, G_W, G_K, G_S, G_F, G_h, G_w, G_SHARED, G_FIRST, G_WIN, G_CLAIM, G_KWTA = range(13)
# fp: its numbers (float32).
P_TRACE, P_WMIN, P_WMAX, P_INH, P_NORM, P_GAIN = range(6)


@nb.njit(cache=True, nogil=True)
def _clamp(w, lo, hi):
    return lo if w < lo else (hi if w > hi else w)


@nb.njit(cache=True, nogil=True)
def _field(last, trace_at, t, oy, ox, geo, out):
    """The input traces at step t under place (oy, ox), in field order (channel, row,
    column): 1 at a spike, times the decay each step after (``trace_at[age]``), 0 for an
    input that has not fired. Only the fields learning reads are computed."""
    H, W, k, s = geo[G_H], geo[G_W], geo[G_K], geo[G_S]
    p = 0
    for c in range(geo[G_C]):
        for dy in range(k):
            row = c * H * W + (oy * s + dy) * W + ox * s
            for dx in range(k):
                i = last[row + dx]
                out[p] = trace_at[t - i] if i >= 0 else np.float32(0.0)
                p += 1


@nb.njit(cache=True, nogil=True)
def fan_out(geo):
    """Where each input's spike goes, worked out once per geometry: input ``i`` adds the
    weight row at offset ``fan_w[q]`` of the flat ``L`` to the currents of the maps at
    place ``fan_place[q]``, for ``q`` in ``fan_ptr[i]:fan_ptr[i + 1]``, one ``q`` per
    place whose field holds it (none for an input no field covers).

    The weight offsets are unsigned (and so are the current offsets made from them)
    because numba tests a signed index for wraparound (a negative index counts from the
    end), and that test kept the add loop of 32 maps scalar: with unsigned offsets it
    runs on SIMD lanes, about 3x faster in a micro-benchmark of the fan-out. The table
    also saves the five integer divisions that placed each input spike.

    A conv layer of 2 maps with 2x2 fields at stride 1 on a 3x3 input: the centre
    (input 4) is in all four fields, at the field's last, ..., first entry; the corner
    (input 0) only in the first place's field, at its first entry:

    >>> geo = np.array([1, 3, 3, 2, 1, 2, 2, 2, 1, 1, 2, 0, 0], np.int64)
    >>> ptr, place, w = fan_out(geo)
    >>> ptr[4:6].tolist(), place[ptr[4]:ptr[5]].tolist(), w[ptr[4]:ptr[5]].tolist()
    ([6, 10], [0, 1, 2, 3], [6, 4, 2, 0])
    >>> ptr[:2].tolist(), place[:1].tolist(), w[:1].tolist()
    ([0, 1], [0], [0])
    """
    C, H, W, k, s = geo[G_C], geo[G_H], geo[G_W], geo[G_K], geo[G_S]
    F, h, w = geo[G_F], geo[G_h], geo[G_w]
    shared = geo[G_SHARED] != 0
    kk = k * k
    nf = C * kk
    n_in = C * H * W
    fan_ptr = np.zeros(n_in + 1, dtype=np.int64)
    for fill in range(2):
        if fill == 1:
            fan_place = np.empty(fan_ptr[n_in], dtype=np.int64)
            fan_w = np.empty(fan_ptr[n_in], dtype=np.uint64)
        q = 0
        for i in range(n_in):
            c = i // (H * W)
            y = (i // W) % H
            x = i % W
            oy0 = 0 if y < k else (y - k) // s + 1
            ox0 = 0 if x < k else (x - k) // s + 1
            oy1 = min(h - 1, y // s)
            ox1 = min(w - 1, x // s)
            for oy in range(oy0, oy1 + 1):
                for ox in range(ox0, ox1 + 1):
                    if fill == 1:
                        place = oy * w + ox
                        p = c * kk + (y - oy * s) * k + (x - ox * s)
                        m = 0 if shared else place
                        fan_place[q] = place
                        fan_w[q] = (m * nf + p) * F
                    q += 1
            fan_ptr[i + 1] = q
    return fan_ptr, fan_place, fan_w


@nb.njit(cache=True, nogil=True)
def rest_is_quiet(pn, theta):
    """Whether evaluation may leave the places no input has reached out of the neurons'
    step: the neuron level declares its reset state fixed without current
    (``NEURON_RESTS``), and one step of it there, at these (frozen) thresholds, puts
    every neuron under threshold (a negative margin; a NaN one says no)."""
    if not NEURON_RESTS:
        return False
    n = theta.shape[0]
    st = np.empty((NEURON_STATE, n), dtype=np.float32)
    neuron_reset(pn, st)
    cur = np.zeros(n, dtype=np.float32)
    marg = np.zeros(n, dtype=np.float32)
    over = np.zeros(n, dtype=np.bool_)
    neuron_integrate_all(pn, st, theta, cur, marg, over, False)
    for j in range(n):
        if not marg[j] < np.float32(0.0):
            return False
    return True


@nb.njit(cache=True, nogil=True)
def present_maps(L, theta, geo, fp, pn, pr, ptr, idx, T, learning, counts, ev_buf, n_ev,
                 full_clamp, claims, fan_ptr, fan_place, fan_w, compact):
    """One presentation of T steps; returns the layer's spike count.

    ``fan_ptr``, ``fan_place``, ``fan_w`` are :func:`fan_out` of ``geo``. ``compact``
    (evaluation only; see :func:`rest_is_quiet`) leaves each place out of the neurons'
    step until input first reaches it.

    ``counts`` (F*h*w, map-major) receives spike counts; ``ev_buf`` (cap, 2) the
    (step, neuron) of spikes in step order (map-major index increasing within a step),
    ``n_ev[0]`` their total. ``full_clamp[0]`` asks the first every-spike update to clamp
    all of L first (normalisation may have left it outside [wmin, wmax], which
    BindsNET's every-step clamp would undo). ``claims`` (cap, 3) logs first-spike
    updates as (map, row, column) while it has room; ``claims[0, 0]`` is -1 if none.
    """
    f32 = np.float32
    C, H, W, k = geo[G_C], geo[G_H], geo[G_W], geo[G_K]
    F, h, w = geo[G_F], geo[G_h], geo[G_w]
    shared = geo[G_SHARED] != 0
    first_spike = geo[G_FIRST] != 0
    winners = geo[G_WIN]
    claim_r = geo[G_CLAIM]
    kwta = geo[G_KWTA]
    tr_decay = fp[P_TRACE]
    wmin = fp[P_WMIN]
    wmax = fp[P_WMAX]
    inh = fp[P_INH]
    gain = fp[P_GAIN]
    hw = h * w
    n = hw * F
    n_in = C * H * W
    kk = k * k
    nf = C * kk
    plastic = RULE_PLASTIC and learning
    # Every-spike learning updates each place's own matrix: local layers only (a conv
    # layer has one matrix; MapReplicaSet refuses that combination before this runs).
    every_spike = plastic and not first_spike and not shared
    Lflat = L.reshape(L.size)
    Fu = np.uint64(F)

    # Neurons are numbered by slot: slot * F + map. With `compact` a place gets the next
    # slot when input first reaches it, and the neurons' step runs over the slots given
    # so far; until then its neurons sit in their reset state, which the neuron level
    # declares fixed without current (NEURON_RESTS) and rest_is_quiet has found under
    # threshold, so leaving them out changes no spike. Without it (always while
    # learning, whose code reads neuron numbers as places) slot = place from the start.
    compact = compact and not learning
    slot = np.empty(hw, dtype=np.int64)
    act = np.empty(hw, dtype=np.int64)  # the place in each slot
    n_act = 0
    if compact:
        slot[:] = -1
    else:
        for place in range(hw):
            slot[place] = place
            act[place] = place
        n_act = hw
    nn = n_act * F
    # The state's rows are laid out end to end at their current length (nn), so the
    # level's step sees contiguous rows; new slots move them apart.
    st_flat = np.empty(NEURON_STATE * n, dtype=np.float32)
    st = st_flat[:NEURON_STATE * nn].reshape((NEURON_STATE, nn))
    fresh = np.empty((NEURON_STATE, n if compact else 1), dtype=np.float32)
    if compact:
        neuron_reset(pn, fresh)
        theta_s = np.empty(n, dtype=np.float32)
    else:
        neuron_reset(pn, st)
        theta_s = theta
    last = np.full(n_in, -1, dtype=np.int64)
    trace_at = np.ones(T + 1, dtype=np.float32)
    for a in range(1, T + 1):
        trace_at[a] = trace_at[a - 1] * tr_decay
    s_now = np.zeros(n, dtype=np.bool_)
    cur = np.zeros(n, dtype=np.float32)
    # Arrays that are written before they are read come from np.empty: zeroing them
    # (about 300 KB a sample here) bought nothing.
    fired = np.empty(n, dtype=np.int64)
    prev = np.empty(n, dtype=np.int64)
    # The slots of this step's and last step's spikes, kept as they fire: dividing by a
    # map count known only at run time is an integer division a spike.
    fired_slot = np.empty(n, dtype=np.int64)
    prev_slot = np.empty(n, dtype=np.int64)
    nprev = 0
    loc_count = np.zeros(hw, dtype=np.int64)
    over_f = np.zeros(F, dtype=np.int64)
    over_m = np.zeros(F, dtype=np.float32)
    marg = np.empty(n, dtype=np.float32)
    # Neurons over threshold, as bytes read 8 at a time: a step's few spikes are found
    # without a branch per neuron.
    over = np.zeros((n + 7) // 8 * 8, dtype=np.bool_)
    over_words = over.view(np.uint64)
    over_j = np.empty(n, dtype=np.int64)
    order = np.empty(n, dtype=np.int64)
    # First-spike learning: maps that learned and places claimed this image.
    learned = np.zeros(F, dtype=np.bool_)
    claimed = np.zeros(hw, dtype=np.bool_)
    n_cand = n if plastic and first_spike else 1
    cand = np.empty(n_cand, dtype=np.int64)
    match = np.empty(n_cand, dtype=np.float32)
    pre = np.zeros(nf, dtype=np.float32)
    # Every-spike learning: post traces, the rule's own traces, per-place scratch.
    xe = np.zeros(n if every_spike else 1, dtype=np.float32)
    aux = np.zeros((max(RULE_TRACES, 1), F), dtype=np.float32)
    active = np.arange(F)
    one = np.zeros(1, dtype=np.int64)
    no_trace = np.zeros(F, dtype=np.float32)
    spiked = np.zeros(F, dtype=np.bool_)
    fired_here = np.zeros(F, dtype=np.int64)
    pidx = np.zeros(nf, dtype=np.int32)
    scratch = np.zeros(nf, dtype=np.bool_)
    pre_on = np.zeros(n_in, dtype=np.bool_)
    touched = np.zeros(hw, dtype=np.bool_)
    n_claims = 0
    n_learned = 0  # first-spike updates this image (at most kwta when kwta > 0)
    if claims.shape[0] > 0:
        claims[0, 0] = -1
    cap = ev_buf.shape[0]

    total = 0
    prev_lo = 0
    prev_hi = 0
    for t in range(T):
        # 1. Currents: the fan-out of last step's input spikes, then the inhibition of
        # last step's map spikes (BindsNET adds X->Ae, then Ae->Ae). `cur` is zero here:
        # it is zeroed after the neurons' step.
        for e in range(prev_lo, prev_hi):
            i = idx[e]
            for q in range(fan_ptr[i], fan_ptr[i + 1]):
                place = fan_place[q]
                sl = slot[place]
                if sl < 0:
                    sl = n_act
                    slot[place] = sl
                    act[sl] = place
                    n_act += 1
                at = np.uint64(sl) * Fu
                row = fan_w[q]
                for f in range(Fu):
                    cur[at + f] += Lflat[row + f]
        if n_act * F > nn:
            # New slots: each row moves to its new start (the last row first, each from
            # its end: they only move right) and the new columns take their neurons'
            # reset state.
            nn1 = n_act * F
            for r in range(NEURON_STATE - 1, 0, -1):
                for j in range(nn - 1, -1, -1):
                    st_flat[r * nn1 + j] = st_flat[r * nn + j]
            for sl in range(nn // F, n_act):
                base = act[sl] * F
                for f in range(F):
                    for r in range(NEURON_STATE):
                        st_flat[r * nn1 + sl * F + f] = fresh[r, base + f]
                    theta_s[sl * F + f] = theta[base + f]
            nn = nn1
            st = st_flat[:NEURON_STATE * nn].reshape((NEURON_STATE, nn))
        if gain != f32(1.0):
            for j in range(nn):
                cur[j] = cur[j] * gain
        for q in range(nprev):
            loc_count[prev_slot[q]] += 1
        for q in range(nprev):
            place = prev_slot[q]
            if loc_count[place] > 0:
                here = cur[place * F:place * F + F]
                fired_now = s_now[place * F:place * F + F]
                for f in range(F):
                    own = f32(1.0) if fired_now[f] else f32(0.0)
                    here[f] += (-inh) * (f32(loc_count[place]) - own)
                loc_count[place] = 0
        # 2a. Input spikes and traces: a trace is its value `age` steps after a spike,
        # which is the same sequence of float32 multiplications whenever it starts.
        lo = ptr[t]
        hi = ptr[t + 1]
        for e in range(lo, hi):
            last[idx[e]] = t
        # 2b. The maps: integrate, at most `winners` per place, fire.
        for q in range(nprev):
            s_now[prev[q]] = False
        # Every neuron of a slot steps (as BindsNET's do), in one loop over all of them:
        # on SIMD lanes that measured faster than skipping the places with no current
        # at this step. It leaves `cur` zero and marks `over`.
        neuron_integrate_all(pn, st, theta_s[:nn], cur[:nn], marg[:nn], over[:nn],
                             learning)
        n_over = 0
        for word in range((nn + 7) // 8):
            if over_words[word] != 0:
                for j in range(word * 8, min(nn, word * 8 + 8)):
                    if over[j]:
                        over_j[n_over] = j
                        n_over += 1
        # At most `winners` maps per place fire: the neurons over threshold come in
        # slot-major order, a place's together (`place` below is its slot).
        nfire = 0
        a = 0
        while a < n_over:
            place = over_j[a] // F
            base = place * F
            nover = 0
            while a < n_over and over_j[a] < base + F:
                over_f[nover] = over_j[a] - base
                over_m[nover] = marg[over_j[a]]
                nover += 1
                a += 1
            if nover > winners:
                # Keep the `winners` largest margins (ties: the lower map), in map order.
                for a2 in range(winners):
                    best = a2
                    for b in range(a2 + 1, nover):
                        if over_m[b] > over_m[best] or (over_m[b] == over_m[best]
                                                        and over_f[b] < over_f[best]):
                            best = b
                    over_f[a2], over_f[best] = over_f[best], over_f[a2]
                    over_m[a2], over_m[best] = over_m[best], over_m[a2]
                nover = winners
                over_f[:nover].sort()
            for q in range(nover):
                j = base + over_f[q]
                neuron_fire(pn, st, theta_s, j, learning)
                s_now[j] = True
                fired[nfire] = j
                fired_slot[nfire] = place
                order[nfire] = over_f[q] * hw + act[place]  # map-major
                nfire += 1
        # Counts, and events in map-major order. Only the events need the order, and
        # only while they have room; a step's few spikes sort by insertion (numba's
        # sort of a slice measured 8% of an evaluation sample).
        if n_ev[0] < cap:
            for q in range(1, nfire):
                key = order[q]
                z = q - 1
                while z >= 0 and order[z] > key:
                    order[z + 1] = order[z]
                    z -= 1
                order[z + 1] = key
        for q in range(nfire):
            counts[order[q]] += 1
            if n_ev[0] < cap:
                ev_buf[n_ev[0], 0] = t
                ev_buf[n_ev[0], 1] = order[q]
            n_ev[0] += 1
        total += nfire
        # 3. Learning.
        if plastic and first_spike and nfire > 0:
            nc = 0
            for q in range(nfire):
                j = fired[q]
                place = j // F
                f = j % F
                if claimed[place] or (shared and learned[f]):
                    continue
                _field(last, trace_at, t, place // w, place % w, geo, pre)
                acc = f32(0.0)
                m = 0 if shared else place
                for p in range(nf):
                    acc += L[m, p, f] * pre[p]
                cand[nc] = f * hw + place  # map-major: BindsNET's candidate order
                match[nc] = acc
                nc += 1
            # Best match first; equal matches in map-major order (a stable sort).
            for a in range(1, nc):
                cj = cand[a]
                cm = match[a]
                b = a - 1
                while b >= 0 and match[b] < cm:
                    cand[b + 1] = cand[b]
                    match[b + 1] = match[b]
                    b -= 1
                cand[b + 1] = cj
                match[b + 1] = cm
            for a in range(nc):
                if kwta > 0 and n_learned >= kwta:
                    break
                f = cand[a] // hw
                place = cand[a] % hw
                if claimed[place] or (shared and learned[f]):
                    continue
                oy = place // w
                ox = place % w
                r = claim_r
                n_learned += 1
                for yy in range(max(0, oy - r), min(h, oy + r + 1)):
                    for xx in range(max(0, ox - r), min(w, ox + r + 1)):
                        claimed[yy * w + xx] = True
                learned[f] = True
                _field(last, trace_at, t, oy, ox, geo, pre)
                m = 0 if shared else place
                one[0] = f
                # The rule's update for one post spike (map f) and no pre spike.
                rule_update(pr, L[m], pre, no_trace, aux, spiked, pidx, 0, 0, one, 1,
                            one, 1, -1, F, scratch)
                for p in range(nf):
                    L[m, p, f] = _clamp(L[m, p, f], wmin, wmax)
                if n_claims < claims.shape[0]:
                    claims[n_claims, 0] = f
                    claims[n_claims, 1] = oy
                    claims[n_claims, 2] = ox
                    n_claims += 1
                    if n_claims < claims.shape[0]:
                        claims[n_claims, 0] = -1
        if every_spike:
            _every_spike(L, last, trace_at, t, xe, aux, s_now, fired, nfire, idx, lo, hi,
                         geo, pr, wmin, wmax, tr_decay, full_clamp, active, spiked,
                         fired_here, pidx, scratch, pre, pre_on, touched)
        for q in range(nfire):
            prev[q] = fired[q]
            prev_slot[q] = fired_slot[q]
        nprev = nfire
        prev_lo = lo
        prev_hi = hi
    return total


@nb.njit(cache=True, nogil=True)
def _every_spike(L, last, trace_at, t, xe, aux, s_now, fired, nfire, idx, lo, hi, geo, pr,
                 wmin, wmax, tr_decay, full_clamp, active, spiked, fired_here, pidx,
                 scratch, pre, pre_on, touched):
    """Every-spike learning of a local layer: at each place with an input spike in its
    field or a map spike, the rule's update on that place's matrix (its inputs the field,
    its neurons the maps there), then the clamp of the rows of fired inputs and the
    columns of fired maps."""
    C, H, W, k, s = geo[G_C], geo[G_H], geo[G_W], geo[G_K], geo[G_S]
    F, h, w = geo[G_F], geo[G_h], geo[G_w]
    kk = k * k
    nf = C * kk
    n = h * w * F
    if full_clamp[0]:
        for m in range(L.shape[0]):
            for p in range(nf):
                for f in range(F):
                    L[m, p, f] = _clamp(L[m, p, f], wmin, wmax)
        full_clamp[0] = False
    # Post traces (Nodes.forward: decay, then 1 where the map fired).
    for j in range(n):
        xe[j] *= tr_decay
    for q in range(nfire):
        xe[fired[q]] = np.float32(1.0)
    for e in range(lo, hi):
        pre_on[idx[e]] = True
    for e in range(lo, hi):
        i = idx[e]
        y = (i // W) % H
        x = i % W
        for oy in range(0 if y < k else (y - k) // s + 1, min(h - 1, y // s) + 1):
            for ox in range(0 if x < k else (x - k) // s + 1, min(w - 1, x // s) + 1):
                touched[oy * w + ox] = True
    for q in range(nfire):
        touched[fired[q] // F] = True
    for place in range(h * w):
        if not touched[place]:
            continue
        touched[place] = False
        oy = place // w
        ox = place % w
        base = place * F
        _field(last, trace_at, t, oy, ox, geo, pre)
        npre = 0
        p = 0
        for c in range(C):
            for dy in range(k):
                row = c * H * W + (oy * s + dy) * W + ox * s
                for dx in range(k):
                    if pre_on[row + dx]:
                        pidx[npre] = p
                        npre += 1
                    p += 1
        nfh = 0
        for f in range(F):
            spiked[f] = s_now[base + f]
            if spiked[f]:
                fired_here[nfh] = f
                nfh += 1
        Lp = L[place]
        rule_update(pr, Lp, pre, xe[base:base + F], aux, spiked, pidx, 0, npre,
                    fired_here, nfh, active, F, -1, F, scratch)
        for a in range(npre):
            p = pidx[a]
            for f in range(F):
                Lp[p, f] = _clamp(Lp[p, f], wmin, wmax)
        for a in range(nfh):
            f = fired_here[a]
            for p in range(nf):
                Lp[p, f] = _clamp(Lp[p, f], wmin, wmax)
        for f in range(F):
            spiked[f] = False
    for e in range(lo, hi):
        pre_on[idx[e]] = False


@nb.njit(cache=True, nogil=True)
def normalize_maps(L, geo, norm):
    """BindsNET's normalisation of the layer, in place; False when a sum is not finite.

    Conv (``Conv2dConnection.normalize``): every channel of every filter to a plain sum
    of ``norm``. Local (``LocalConnection.normalize``): every neuron's field, all
    channels together, to a plain sum of ``norm``. Sums in float64, scales in float32.
    """
    C, k, F = geo[G_C], geo[G_K], geo[G_F]
    kk = k * k
    ok = True
    for m in range(L.shape[0]):
        for f in range(F):
            parts = C if geo[G_SHARED] != 0 else 1
            size = (C * kk) // parts
            for c in range(parts):
                acc = 0.0
                for p in range(c * size, (c + 1) * size):
                    acc += L[m, p, f]
                scale = norm / np.float32(acc)
                if not np.isfinite(scale):
                    ok = False
                for p in range(c * size, (c + 1) * size):
                    L[m, p, f] = L[m, p, f] * scale
    return ok


@nb.njit(cache=True, nogil=True)
def train_maps(X, order, start, L, theta, geo, fp, net, pn, pr, T, phase, exc_spikes,
               in_spikes, diverged, full_clamp):
    """Train on ``X[order[k]]`` (global positions start + k), normalising after each
    presentation; ``diverged[0]`` becomes the 1-based position of the first non-finite
    weight sum or threshold."""
    n_in = X.shape[1]
    K = order.shape[0]
    if diverged[0] > 0:
        return
    ev_t = np.empty(n_in * T + 1, dtype=np.int32)
    ev_i = np.empty(n_in * T + 1, dtype=np.int32)
    idx = np.empty(n_in * T + 1, dtype=np.int32)
    ptr = np.empty(T + 1, dtype=np.int64)
    counts = np.zeros(theta.shape[0], dtype=np.int64)
    ev_buf = np.zeros((0, 2), dtype=np.int32)
    n_ev = np.zeros(1, dtype=np.int64)
    claims = np.zeros((0, 3), dtype=np.int64)
    state = np.zeros(1, dtype=np.uint64)
    fan_ptr, fan_place, fan_w = fan_out(geo)
    for k in range(K):
        state[0] = random.stream_seed(net.seed, phase, start + k, 0)
        in_spikes[k] = gen_events(X[order[k]], net.rate, T, net.dt, state, ev_t, ev_i,
                                  ptr, idx)
        exc_spikes[k] = present_maps(L, theta, geo, fp, pn, pr, ptr, idx, T, True, counts,
                                     ev_buf, n_ev, full_clamp, claims, fan_ptr, fan_place,
                                     fan_w, False)
        ok = normalize_maps(L, geo, fp[P_NORM])
        full_clamp[0] = True
        for j in range(theta.shape[0]):
            if not np.isfinite(theta[j]):
                ok = False
        if not ok:
            diverged[0] = start + k + 1
            return


@nb.njit(cache=True, nogil=True)
def respond_maps(X, order, start, L, theta, geo, fp, net, pn, pr, T, phase, counts,
                 ev_out, n_ev_out, in_spikes):
    """Frozen responses to ``X[order[k]]``, each keyed by its position ``start + k``."""
    n_in = X.shape[1]
    K = order.shape[0]
    ev_t = np.empty(n_in * T + 1, dtype=np.int32)
    ev_i = np.empty(n_in * T + 1, dtype=np.int32)
    idx = np.empty(n_in * T + 1, dtype=np.int32)
    ptr = np.empty(T + 1, dtype=np.int64)
    n_ev = np.zeros(1, dtype=np.int64)
    full_clamp = np.zeros(1, dtype=np.bool_)
    claims = np.zeros((0, 3), dtype=np.int64)
    state = np.zeros(1, dtype=np.uint64)
    fan_ptr, fan_place, fan_w = fan_out(geo)
    compact = rest_is_quiet(pn, theta)
    for k in range(K):
        state[0] = random.stream_seed(net.seed, phase, start + k, 0)
        in_spikes[k] = gen_events(X[order[k]], net.rate, T, net.dt, state, ev_t, ev_i,
                                  ptr, idx)
        n_ev[0] = 0
        present_maps(L, theta, geo, fp, pn, pr, ptr, idx, T, False, counts[k], ev_out[k],
                     n_ev, full_clamp, claims, fan_ptr, fan_place, fan_w, compact)
        n_ev_out[k] = n_ev[0]
