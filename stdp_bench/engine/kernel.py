"""Fused, event-driven simulation of R independent Diehl & Cook networks (numba).

Every replica owns its weights ``W[r]`` (n_input, n_neurons), thresholds ``theta[r]``,
parameters (rows of ``P``/``IP``) and random stream, and the outer loop over replicas is
the only place they meet, so replica r's trajectory cannot depend on any other.

One step follows BindsNET's ``Network.run`` exactly (see tests/test_parity.py):
1. currents from the *previous* step's spikes (synchronous update): input->exc through W,
   inh->exc all-but-self, exc->inh one-to-one;
2. layers in order X, Ae, Ai (``Input``, ``IFNodes``/``LIFNodes``/``DiehlAndCookNodes``,
   ``LIFNodes``), spike clamps applied before the traces, as ``Nodes.forward`` does;
3. the X->Ae learning rule (``PostPre``, ``WeightDependentPostPre``, ``Hebbian``) and the
   [wmin, wmax] clamp; weights are normalised per target neuron after each presentation.
The event-driven part: input currents add the rows of W of inputs that fired, and the
rules touch only rows of fired inputs and columns of fired excitatory neurons.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

# Columns of the float32 parameter matrix P[R, N_FLOAT].
(F_RATE, F_GAIN, F_THRESH, F_REST, F_RESET, F_REFRAC, F_DECAY, F_THETA_PLUS,
 F_THETA_DECAY, F_TRACE_DECAY, F_IN_TRACE_DECAY, F_EXC, F_INH, F_ITHRESH, F_IREST,
 F_IRESET, F_IREFRAC, F_IDECAY, F_NU_PRE, F_NU_POST, F_WMIN, F_WMAX, F_NORM, F_DT,
 F_RETRY_STEP, F_VINIT, F_TEACHER_DRIVE) = range(27)
N_FLOAT = 27
# Columns of the int64 parameter matrix IP[R, N_INT].
(I_ENCODER, I_LEAKY, I_ADAPTIVE, I_ONE_SPIKE, I_RULE, I_MIN_SPIKES, I_MAX_RETRIES,
 I_SEED, I_N_CLASSES) = range(9)
N_INT = 9

ENC_POISSON, ENC_BERNOULLI, ENC_RANK_ORDER = 0, 1, 2
RULE_NONE, RULE_STDP, RULE_WEIGHT_DEPENDENT, RULE_HEBBIAN, RULE_TEACHER = 0, 1, 2, 3, 4

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@nb.njit(cache=True, inline="always")
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@nb.njit(cache=True)
def stream_seed(seed, phase, index, attempt):
    """Counter-based seed for one presentation: independent of scheduling and chunking."""
    z = _mix(np.uint64(seed) * _GOLDEN + np.uint64(1))
    z = _mix(z ^ (np.uint64(phase) * _GOLDEN))
    z = _mix(z ^ (np.uint64(index) * _M1))
    return _mix(z ^ (np.uint64(attempt) * _M2))


@nb.njit(cache=True, inline="always")
def _uniform(state):
    """splitmix64 step; returns (new_state, u in [0, 1))."""
    s = state[0] + _GOLDEN
    state[0] = s
    return float(_mix(s) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@nb.njit(cache=True)
def _poisson(state, lam):
    """Poisson(lam) draw: inversion for small lam, Hoermann's PTRS otherwise."""
    if lam < 10.0:
        # Sequential search of the CDF.
        u = _uniform(state)
        k = 0
        p = math.exp(-lam)
        c = p
        while u > c:
            k += 1
            p *= lam / k
            c += p
            if k > 1000:
                break
        return k
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u = _uniform(state) - 0.5
        v = _uniform(state)
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return int(k)
        if k < 0 or (us < 0.013 and v > us):
            continue
        if (math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b)
                <= -lam + k * loglam - math.lgamma(k + 1.0)):
            return int(k)


@nb.njit(cache=True)
def gen_events(x, enc, rate_hz, T, dt, state, ev_t, ev_i, ptr, idx):
    """Encode one image ``x`` (values in [0, 1]) as spike events bucketed by step.

    Fills ``ptr`` (T + 1,) and ``idx``: inputs firing at step t are
    ``idx[ptr[t]:ptr[t + 1]]`` in increasing index order. Returns the spike count.
    ``ev_t``/``ev_i`` are scratch buffers of at least T * len(x) entries.
    poisson: BindsNET's ``poisson`` encoding (Poisson-distributed inter-spike intervals of
    mean 1000 / (rate dt), zero intervals raised to one). bernoulli: one Bernoulli trial
    per step with p = rate dt / 1000 (the same mean rate). rank_order: one spike per
    nonzero pixel, earlier for brighter pixels, over the whole window; unlike BindsNET
    0.3.4 the dimmest pixel keeps its spike (it lands on the last step).
    """
    n = x.shape[0]
    m = 0
    if enc == ENC_RANK_ORDER:
        xmax = 0.0
        for i in range(n):
            if x[i] > xmax:
                xmax = x[i]
        if xmax > 0.0:
            tmax = 0.0
            for i in range(n):
                if x[i] > 0.0:
                    ti = xmax / x[i]
                    if ti > tmax:
                        tmax = ti
            for i in range(n):
                if x[i] > 0.0:
                    t = int(math.ceil((xmax / x[i]) * T / tmax))
                    if t < 1:
                        t = 1
                    if t > T:
                        t = T
                    ev_t[m] = t - 1
                    ev_i[m] = i
                    m += 1
    else:
        for i in range(n):
            r = x[i] * rate_hz
            if r <= 0.0:
                continue
            if enc == ENC_POISSON:
                lam = 1000.0 / (r * dt)
                cum = 0
                while True:
                    k = _poisson(state, lam)
                    if k == 0:
                        k = 1
                    cum += k
                    if cum > T:
                        break
                    ev_t[m] = cum - 1
                    ev_i[m] = i
                    m += 1
            else:
                p = r * dt / 1000.0
                if p >= 1.0:
                    for t in range(T):
                        ev_t[m] = t
                        ev_i[m] = i
                        m += 1
                    continue
                lq = math.log1p(-p)
                t = -1
                while True:
                    u = 1.0 - _uniform(state)  # (0, 1]
                    t += int(math.floor(math.log(u) / lq)) + 1
                    if t >= T:
                        break
                    ev_t[m] = t
                    ev_i[m] = i
                    m += 1
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


@nb.njit(cache=True)
def present(W, theta, P, IP, ptr, idx, T, learning, label, state,
            counts, ev_buf, n_ev, full_clamp, tie_log, tie_n):
    """Run one presentation of T steps for one replica; returns the excitatory spike count.

    ``P``/``IP`` are this replica's parameter rows. ``counts`` (n,) receives spike counts;
    ``ev_buf`` (cap, 2) receives (step, neuron) of spikes in order, ``n_ev[0]`` their total.
    ``full_clamp[0]`` asks for a clamp of all of W at the first update (BindsNET clamps the
    whole matrix every step; W only leaves [wmin, wmax] through normalisation).
    ``tie_log`` records the one-spike choices when it has room (parity tests replay them).
    """
    n_in = W.shape[0]
    n = W.shape[1]
    f32 = np.float32
    gain = P[F_GAIN]
    thresh = P[F_THRESH]
    rest = P[F_REST]
    reset = P[F_RESET]
    refrac_p = P[F_REFRAC]
    decay = P[F_DECAY]
    theta_plus = P[F_THETA_PLUS]
    theta_decay = P[F_THETA_DECAY]
    tr_decay = P[F_TRACE_DECAY]
    in_tr_decay = P[F_IN_TRACE_DECAY]
    exc = P[F_EXC]
    inh = P[F_INH]
    ithresh = P[F_ITHRESH]
    irest = P[F_IREST]
    ireset = P[F_IRESET]
    irefrac_p = P[F_IREFRAC]
    idecay = P[F_IDECAY]
    nu_pre = P[F_NU_PRE]
    nu_post = P[F_NU_POST]
    wmin = P[F_WMIN]
    wmax = P[F_WMAX]
    dt = P[F_DT]
    leaky = IP[I_LEAKY] != 0
    adaptive = IP[I_ADAPTIVE] != 0
    one_spike = IP[I_ONE_SPIKE] != 0
    rule = IP[I_RULE]
    plastic = learning and rule != RULE_NONE
    teach = learning and rule == RULE_TEACHER
    n_classes = IP[I_N_CLASSES]
    drive = P[F_TEACHER_DRIVE]

    v = np.full(n, P[F_VINIT], dtype=np.float32)
    refrac = np.zeros(n, dtype=np.float32)
    s = np.zeros(n, dtype=np.bool_)
    xe = np.zeros(n, dtype=np.float32)
    vi = np.full(n, irest, dtype=np.float32)
    irefrac = np.zeros(n, dtype=np.float32)
    si = np.zeros(n, dtype=np.bool_)
    xin = np.zeros(n_in, dtype=np.float32)
    in_fired = np.zeros(n_in, dtype=np.bool_)
    cur = np.zeros(n, dtype=np.float32)
    curi = np.zeros(n, dtype=np.float32)
    fired_e = np.zeros(n, dtype=np.int64)
    cap = ev_buf.shape[0]

    total = 0
    prev_lo = 0
    prev_hi = 0
    for t in range(T):
        # 1. Currents from last step's spikes.
        for j in range(n):
            cur[j] = f32(0.0)
        for e in range(prev_lo, prev_hi):
            i = idx[e]
            for j in range(n):
                cur[j] += W[i, j]
        ninh = 0
        for j in range(n):
            if si[j]:
                ninh += 1
        for j in range(n):
            ff = cur[j] * gain if gain != f32(1.0) else cur[j]
            k = ninh - (1 if si[j] else 0)
            cur[j] = ff + (-inh) * f32(k)
            curi[j] = exc if s[j] else f32(0.0)
        # 2a. Input layer: spikes and traces.
        lo = ptr[t]
        hi = ptr[t + 1]
        for i in range(n_in):
            xin[i] *= in_tr_decay
        for e in range(lo, hi):
            xin[idx[e]] = f32(1.0)
        # 2b. Excitatory layer.
        nfire = 0
        for j in range(n):
            if teach and j % n_classes == label:
                # BindsNET's injects_v: added to v before the layer's step.
                v[j] += drive
            if leaky:
                v[j] = (v[j] - rest) * decay + rest
            if adaptive and learning:
                theta[j] *= theta_decay
            if refrac[j] <= f32(0.0):
                v[j] += cur[j]
            refrac[j] -= dt
            th = thresh + theta[j] if adaptive else thresh
            fire = v[j] >= th
            s[j] = fire
            if fire:
                refrac[j] = refrac_p
                v[j] = reset
                if adaptive and learning:
                    theta[j] += theta_plus
                fired_e[nfire] = j
                nfire += 1
        if one_spike and nfire > 1:
            u = _uniform(state)
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
        nfire = 0
        for j in range(n):
            xe[j] *= tr_decay
            if s[j]:
                xe[j] = f32(1.0)
                fired_e[nfire] = j
                nfire += 1
                counts[j] += 1
                if n_ev[0] < cap:
                    ev_buf[n_ev[0], 0] = t
                    ev_buf[n_ev[0], 1] = j
                n_ev[0] += 1
        total += nfire
        # 2c. Inhibitory layer.
        for j in range(n):
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
            if rule == RULE_WEIGHT_DEPENDENT:
                # Both terms from the weights before this step's update.
                for e in range(lo, hi):
                    i = idx[e]
                    for j in range(n):
                        w = W[i, j]
                        upd = -((nu_pre * xe[j]) * (w - wmin))
                        if s[j]:
                            upd = upd + (nu_post * xin[i]) * (wmax - w)
                        W[i, j] = w + upd
                for e in range(lo, hi):
                    in_fired[idx[e]] = True
                for q in range(nfire):
                    j = fired_e[q]
                    for i in range(n_in):
                        # Rows of inputs that fired were updated above.
                        if in_fired[i]:
                            continue
                        w = W[i, j]
                        W[i, j] = w + (nu_post * xin[i]) * (wmax - w)
                for e in range(lo, hi):
                    in_fired[idx[e]] = False
            else:
                sign = f32(1.0) if rule == RULE_HEBBIAN else f32(-1.0)
                if nu_pre != f32(0.0):
                    for e in range(lo, hi):
                        i = idx[e]
                        for j in range(n):
                            # The teacher gates plasticity: only neurons of the
                            # sample's class learn from it.
                            if teach and j % n_classes != label:
                                continue
                            W[i, j] += sign * (xe[j] * nu_pre)
                if nu_post != f32(0.0):
                    for q in range(nfire):
                        j = fired_e[q]
                        if teach and j % n_classes != label:
                            continue
                        for i in range(n_in):
                            W[i, j] += xin[i] * nu_post
            for e in range(lo, hi):
                i = idx[e]
                for j in range(n):
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


@nb.njit(cache=True)
def normalize(W, norm):
    """Scale each target neuron's weights to sum ``norm`` (BindsNET ``normalize``).

    Returns False when a column sum is not finite (the cell diverged).
    """
    n_in, n = W.shape
    ok = True
    for j in range(n):
        acc = 0.0
        for i in range(n_in):
            acc += abs(W[i, j])
        sj = np.float32(acc)
        # A float32 sum of inf would scale the column to zero and hide the blow-up.
        if not np.isfinite(acc) or not np.isfinite(sj):
            ok = False
            continue
        if sj == np.float32(0.0):
            sj = np.float32(1.0)
        scale = norm / sj
        for i in range(n_in):
            W[i, j] *= scale
    return ok


@nb.njit(cache=True, parallel=True)
def train_chunk(X, Y, order, start, W, theta, P, IP, T, phase,
                exc_spikes, in_spikes, retries, diverged):
    """Train every replica on its samples ``order[r, :]`` (global positions start + k).

    Writes per-sample excitatory and input spike counts and retries; ``diverged[r]`` is
    set to the 1-based position of the first non-finite weight or threshold.
    """
    R = W.shape[0]
    n_in = W.shape[1]
    n = W.shape[2]
    K = order.shape[1]
    for r in nb.prange(R):
        if diverged[r] > 0:
            continue
        ev_t = np.empty(n_in * T + 1, dtype=np.int32)
        ev_i = np.empty(n_in * T + 1, dtype=np.int32)
        idx = np.empty(n_in * T + 1, dtype=np.int32)
        ptr = np.empty(T + 1, dtype=np.int64)
        counts = np.zeros(n, dtype=np.int64)
        ev_buf = np.zeros((1, 2), dtype=np.int32)
        n_ev = np.zeros(1, dtype=np.int64)
        full_clamp = np.zeros(1, dtype=np.bool_)
        tie_log = np.zeros(0, dtype=np.int64)
        tie_n = np.zeros(1, dtype=np.int64)
        state = np.zeros(1, dtype=np.uint64)
        Pr = P[r]
        IPr = IP[r]
        for k in range(K):
            s_idx = order[r, k]
            x = X[s_idx]
            rate = Pr[F_RATE]
            attempt = 0
            while True:
                state[0] = stream_seed(IPr[I_SEED], phase, start + k, attempt)
                m = gen_events(x, IPr[I_ENCODER], rate, T, Pr[F_DT], state,
                               ev_t, ev_i, ptr, idx)
                in_spikes[r, k] += m
                n_ev[0] = 0
                spk = present(W[r], theta[r], Pr, IPr, ptr, idx, T, True, Y[s_idx],
                              state, counts, ev_buf, n_ev, full_clamp, tie_log, tie_n)
                exc_spikes[r, k] = spk
                ok = normalize(W[r], Pr[F_NORM])
                # The next presentation's first update clamps all of W, as BindsNET's
                # per-step clamp would.
                full_clamp[0] = True
                for j in range(n):
                    if not np.isfinite(theta[r, j]):
                        ok = False
                if not ok:
                    diverged[r] = start + k + 1
                    break
                if spk >= IPr[I_MIN_SPIKES] or attempt >= IPr[I_MAX_RETRIES]:
                    break
                attempt += 1
                retries[r, k] += 1
                rate += Pr[F_RETRY_STEP]
            if diverged[r] > 0:
                break


@nb.njit(cache=True, parallel=True)
def eval_chunk(X, order, start, W, theta, P, IP, T, phase, counts, ev_out, n_ev_out,
               in_spikes):
    """Frozen-weight responses of every replica to its samples ``order[r, :]``.

    Samples are independent here (no plasticity, thresholds frozen), so all
    (replica, sample) pairs run in parallel. Fills spike ``counts`` (R, K, n), the first
    ``ev_out.shape[2]`` spike events per sample and their total in ``n_ev_out``.
    """
    R = W.shape[0]
    n_in = W.shape[1]
    K = order.shape[1]
    total = R * K
    # Blocks amortise the scratch buffers; each pair's random stream is seeded by its
    # position alone, so the result does not depend on the blocking.
    n_blocks = min(total, 256)
    for b in nb.prange(n_blocks):
        ev_t = np.empty(n_in * T + 1, dtype=np.int32)
        ev_i = np.empty(n_in * T + 1, dtype=np.int32)
        idx = np.empty(n_in * T + 1, dtype=np.int32)
        ptr = np.empty(T + 1, dtype=np.int64)
        n_ev = np.zeros(1, dtype=np.int64)
        full_clamp = np.zeros(1, dtype=np.bool_)
        tie_log = np.zeros(0, dtype=np.int64)
        tie_n = np.zeros(1, dtype=np.int64)
        state = np.zeros(1, dtype=np.uint64)
        lo_rk = (total * b) // n_blocks
        hi_rk = (total * (b + 1)) // n_blocks
        for rk in range(lo_rk, hi_rk):
            r = rk // K
            k = rk % K
            state[0] = stream_seed(IP[r, I_SEED], phase, start + k, 0)
            x = X[order[r, k]]
            m = gen_events(x, IP[r, I_ENCODER], P[r, F_RATE], T, P[r, F_DT], state,
                           ev_t, ev_i, ptr, idx)
            in_spikes[r, k] = m
            n_ev[0] = 0
            present(W[r], theta[r], P[r], IP[r], ptr, idx, T, False, -1, state,
                    counts[r, k], ev_out[r, k], n_ev, full_clamp, tie_log, tie_n)
            n_ev_out[r, k] = n_ev[0]


@nb.njit(cache=True, parallel=True)
def encode_dense(X, samples, reps, keys, rates, P, IP, T, phase, out, in_spikes):
    """Dense input trains ``out[T, B, n_in]`` for batch rows b = 0..B-1.

    Row b encodes image ``X[samples[b]]`` with replica ``reps[b]``'s encoder at rate
    ``rates[b]``, from the same counter-based stream as ``train_chunk``/``eval_chunk``
    (``keys[b]`` is the sample position, ``keys`` shifted by 40 bits carry the retry
    attempt), so the torch engine sees the kernel's spike trains.
    """
    B = samples.shape[0]
    n_in = X.shape[1]
    for b in nb.prange(B):
        ev_t = np.empty(n_in * T + 1, dtype=np.int32)
        ev_i = np.empty(n_in * T + 1, dtype=np.int32)
        idx = np.empty(n_in * T + 1, dtype=np.int32)
        ptr = np.empty(T + 1, dtype=np.int64)
        state = np.zeros(1, dtype=np.uint64)
        r = reps[b]
        state[0] = stream_seed(IP[r, I_SEED], phase, keys[b] & ((1 << 40) - 1), keys[b] >> 40)
        m = gen_events(X[samples[b]], IP[r, I_ENCODER], rates[b], T, P[r, F_DT], state,
                       ev_t, ev_i, ptr, idx)
        in_spikes[b] = m
        for t in range(T):
            for e in range(ptr[t], ptr[t + 1]):
                out[t, b, idx[e]] = True
