"""The one random number generator of every engine: counter-based splitmix64.

A presentation's stream is seeded from (replica seed, phase, sample position, retry
attempt) alone, so a draw never depends on scheduling, chunking or the other replicas.
The functions are kernel code (:func:`~stdp_bench.levels.spec.kernel_function`): the
fused kernel compiles them, the torch engines take their input spikes and tie-break
draws from them (:func:`stdp_bench.engine.kernel_build.encode_dense`,
:func:`stdp_bench.engine.numba_support.tie_draws`), and Python can run them directly:

>>> import numpy as np
>>> with np.errstate(over="ignore"):  # uint64 wrap-around is the point
...     a = uniform(np.array([stream_seed(7, 0, 3, 0)], np.uint64))
...     b = uniform(np.array([stream_seed(7, 0, 3, 0)], np.uint64))
>>> 0.0 <= a < 1.0, a == b
(True, True)
"""

from __future__ import annotations

import math

import numpy as np

from stdp_bench.levels.spec import kernel_function

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@kernel_function
def mix(z):
    """splitmix64's finaliser."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@kernel_function
def stream_seed(seed, phase, index, attempt):
    """Counter-based seed for one presentation: independent of scheduling and chunking."""
    z = mix(np.uint64(seed) * _GOLDEN + np.uint64(1))
    z = mix(z ^ (np.uint64(phase) * _GOLDEN))
    z = mix(z ^ (np.uint64(index) * _M1))
    return mix(z ^ (np.uint64(attempt) * _M2))


@kernel_function
def uniform(state):
    """Advance ``state[0]`` by one splitmix64 step; returns u in [0, 1)."""
    s = state[0] + _GOLDEN
    state[0] = s
    return float(mix(s) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@kernel_function
def poisson(state, lam):
    """Poisson(lam) draw: inversion for small lam, Hoermann's PTRS otherwise."""
    if lam < 10.0:
        # Sequential search of the CDF.
        u = uniform(state)
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
    c = ptrs_constants(lam)
    return poisson_ptrs(state, c[0], c[1], c[2], c[3], c[4], c[5])


# Encoders draw many intervals at one lam (a pixel's), so they prepare once per lam what
# `poisson` computes at every draw; the draws are the same numbers.
POISSON_TABLE = 1001  # the inversion's CDF, k = 0..1000 (`poisson` gives up after 1000)


@kernel_function
def poisson_prepare(lam, table):
    """Prepare draws at ``lam`` in ``table`` (length :data:`POISSON_TABLE`); returns n.

    lam < 10: ``table[:n]`` is the CDF that :func:`poisson`'s inversion walks, built by
    the same float operations in the same order, up to the entry after which it no
    longer changes, and :func:`poisson_walk` draws from it. lam >= 10: ``table[:6]`` are
    PTRS's constants for :func:`poisson_ptrs`, and n is 0.

    >>> import numpy as np
    >>> table = np.zeros(POISSON_TABLE)
    >>> def same_draws(lam):
    ...     a, b = np.array([5], np.uint64), np.array([5], np.uint64)
    ...     n = poisson_prepare(lam, table)
    ...     with np.errstate(over="ignore"):
    ...         ours = [poisson_walk(b, table, n) if n else poisson_ptrs(b, *table[:6])
    ...                 for _ in range(50)]
    ...         return n, ours == [poisson(a, lam) for _ in range(50)]
    >>> same_draws(3.5), same_draws(40.0)
    ((24, True), (0, True))
    """
    if lam >= 10.0:
        constants = ptrs_constants(lam)
        for i in range(6):
            table[i] = constants[i]
        return 0
    p = math.exp(-lam)
    c = p
    table[0] = c
    for k in range(1, POISSON_TABLE):
        p *= lam / k
        nxt = c + p
        # Past the mode p only shrinks, so once adding it leaves c as it was, every
        # later entry equals this one: a draw above it walks on to 1001.
        if nxt == c and k > lam:
            return k
        c = nxt
        table[k] = c
    return POISSON_TABLE


@kernel_function
def poisson_walk(state, table, n):
    """:func:`poisson`'s draw from ``state`` for lam < 10, on the CDF ``table[:n]`` that
    :func:`poisson_prepare` built. Small, so that callers' loops inline it: on this
    project's machine 12 ns a draw at lam 3.9, against 30 ns for :func:`poisson`."""
    u = uniform(state)
    for k in range(n):
        if u <= table[k]:
            return k
    return POISSON_TABLE


@kernel_function
def ptrs_constants(lam):
    """PTRS's constants at ``lam``: (lam, log lam, b, a, 1 / alpha, v_r)."""
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    return (lam, loglam, b, a, invalpha, vr)


@kernel_function
def poisson_ptrs(state, lam, loglam, b, a, invalpha, vr):
    """Hoermann's PTRS draw at ``lam`` with its constants (:func:`ptrs_constants`)."""
    while True:
        u = uniform(state) - 0.5
        v = uniform(state)
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return int(k)
        if k < 0 or (us < 0.013 and v > us):
            continue
        if (math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b)
                <= -lam + k * loglam - math.lgamma(k + 1.0)):
            return int(k)
