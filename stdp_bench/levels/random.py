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
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
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
