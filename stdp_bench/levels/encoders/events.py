"""Event input: a recording's own events, binned at ``dt``, for event datasets (N-MNIST).

Each (polarity, pixel) is one input neuron. A sample reaches the encoder packed into
one float32 row (:func:`pack_events`): its event count, then (time in us, input index)
pairs in time order. An input spikes at step ``floor(t / dt)`` when any of its events
falls in that bin (several events in one bin make one spike); events at or after the
presentation's end are dropped. No random draws: the code is the recording.

>>> import numpy as np
>>> row = pack_events([np.array([100, 900, 1500, 2600])], [np.array([3, 3, 0, 1])])[0]
>>> ev_t, ev_i = np.zeros(8, np.int32), np.zeros(8, np.int32)
>>> m = kernel_encode(row, 0.0, 2, 1.0, None, ev_t, ev_i)
>>> ev_t[:m].tolist(), ev_i[:m].tolist()
([0, 1], [3, 0])
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from stdp_bench.levels.spec import Level, kernel_function

LEVEL = Level(axis="encoder", name="events", module=__name__, events=True,
              doc="a recording's own events binned at dt (event datasets: nmnist)",
              uses=("time", "dt"))

# An event's key while binning: step * _STEP_KEY + input (inputs stay below 2 ** 32).
_STEP_KEY = 1 << 32


def pack_events(times_us: Sequence[np.ndarray], inputs: Sequence[np.ndarray]) -> np.ndarray:
    """Rows ``[count, t_0, i_0, t_1, i_1, ...]`` (float32, zero-padded) of recordings.

    Times are whole microseconds, exact in float32 up to 16.7 s.

    >>> pack_events([np.array([5, 7])], [np.array([1, 0])]).tolist()
    [[2.0, 5.0, 1.0, 7.0, 0.0]]
    """
    longest = max((len(t) for t in times_us), default=0)
    out = np.zeros((len(times_us), 1 + 2 * longest), np.float32)
    for k, (t, i) in enumerate(zip(times_us, inputs)):
        if len(t) and float(np.max(t)) >= 2 ** 24:
            raise ValueError(f"recording {k} lasts {np.max(t)} us; float32 rows hold "
                             "times below 2 ** 24 us (16.7 s)")
        out[k, 0] = len(t)
        out[k, 1:1 + 2 * len(t):2] = t
        out[k, 2:2 + 2 * len(t):2] = i
    return out


def frames(times_us: Sequence[np.ndarray], inputs: Sequence[np.ndarray],
           n_input: int) -> np.ndarray:
    """Event counts per input, scaled to [0, 1] per recording (frame images for baselines).

    >>> frames([np.array([1, 2, 3])], [np.array([0, 0, 2])], 3).tolist()
    [[1.0, 0.0, 0.5]]
    """
    out = np.zeros((len(inputs), n_input), np.float32)
    for k, i in enumerate(inputs):
        np.add.at(out[k], np.asarray(i, np.int64), 1.0)
        top = out[k].max()
        if top > 0:
            out[k] /= top
    return out


@kernel_function
def kernel_encode(x, rate_hz, T, dt, state, ev_t, ev_i):
    """Spike events of packed recording ``x``, one per (step, input), sorted by step then
    input; returns their count."""
    m = int(x[0])
    keys = np.empty(m, np.int64)
    k = 0
    bin_us = 1000.0 * dt
    for e in range(m):
        step = int(math.floor(x[1 + 2 * e] / bin_us))
        if step >= T:
            break  # time order: the rest are later still
        keys[k] = step * _STEP_KEY + int(x[2 + 2 * e])
        k += 1
    if k == 0:
        return 0
    unique = np.unique(keys[:k])
    for e in range(unique.shape[0]):
        ev_t[e] = unique[e] // _STEP_KEY
        ev_i[e] = unique[e] % _STEP_KEY
    return unique.shape[0]
