"""Intensity-to-latency code: one spike per nonzero input, spread over the steps by rank.

The code of Kheradpisheh et al. 2018 and Mozafari et al. 2019 as their SpykeTorch
reimplementation runs it (``utils.Intensity2Latency``): the nonzero inputs are ranked by
value, largest first, and the ranks are cut into T bins of equal count; bin t fires on
step t. Here the ``n`` inputs with ``x_i > 0`` are ranked ``k = 0 .. n-1`` (largest value
first; equal values by lower input index first, so the code is deterministic) and input
of rank ``k`` fires once, on step ``floor(k * T / n)``. Zeros (and negative values) never
fire. Every step then holds ``floor(n / T)`` or ``ceil(n / T)`` spikes, and a brighter
input never fires after a dimmer one.

How this differs from ``rank_order`` (:mod:`stdp_bench.levels.encoders.rank_order`):
both fire each nonzero input once, brightest first, but rank_order's step,
``ceil((max / x_i) * T / max_j(max / x_j)) - 1``, is a function of the value ratio
``max / x_i`` alone. Equal values therefore share one step and the spikes per step follow
the image's value histogram: the many MNIST pixels at exactly 1.0 all fire on step 0,
and steps whose ratio range holds no pixel stay empty. Here the step depends only on the
rank, not on how far apart the values are: every step gets about the same number of
spikes, and equal values may be split across two steps (by input index).

Remainder: when T does not divide n, SpykeTorch's bins hold ``n // T`` ranks each and
the ``n % T`` dimmest nonzero inputs never fire (it fails outright when ``n < T``: its
bin size is 0). This code fires them all: ``floor(k * T / n)`` is SpykeTorch's step
``k // (n / T)`` whenever T divides n, and otherwise hands out the ``n % T`` extra spikes
one per bin, spread evenly over the window starting with bin 0 (so bin 0 always holds
``ceil(n / T)``). No input fires later than SpykeTorch fires the same rank.
With ``n < T`` the inputs are spread over the whole window (brightest on step 0), as
rank_order spreads its latencies over the whole window. SpykeTorch emits cumulative
spike waves (an input that fired at step t is present at every later step), which a
non-leaky integrate-and-fire layer turns into the same potentials as one spike at t;
the kernel takes single events, so each input fires once, at its first step.

One spike per input carries far less current than a rate code, so the input gain
defaults to the ratio of the Poisson code's mean spike count to this code's. This code
fires exactly as many spikes as rank_order (one per input with ``x > 0``), so
:func:`input_gain` is rank_order's, imported.

Four nonzero values over 2 steps: two spikes on each step (the tie at 1.0 goes to the
lower index first), where rank_order puts three on step 0:

>>> import numpy as np
>>> from stdp_bench.levels.encoders import rank_order
>>> x = np.array([0.5, 1.0, 0.0, 1.0, 0.25])
>>> ev_t, ev_i = np.zeros(5, np.int32), np.zeros(5, np.int32)
>>> m = kernel_encode(x, 0.0, 2, 1.0, None, ev_t, ev_i)
>>> ev_t[:m].tolist(), ev_i[:m].tolist()
([1, 0, 0, 1], [0, 1, 3, 4])
>>> m = rank_order.kernel_encode(x, 0.0, 2, 1.0, None, ev_t, ev_i)
>>> ev_t[:m].tolist(), ev_i[:m].tolist()
([0, 0, 0, 1], [0, 1, 3, 4])
"""

from __future__ import annotations

import numpy as np

# The same gain as rank_order: both codes fire one spike per input with x > 0.
from stdp_bench.levels.encoders.rank_order import input_gain as input_gain
from stdp_bench.levels.spec import Level, kernel_function

LEVEL = Level(axis="encoder", name="latency", module=__name__,
              doc="one spike per pixel, ranked brightest first, equal spikes per step "
                  "(SpykeTorch Intensity2Latency)",
              uses=("time", "dt", "input_gain"), deterministic=True)


@kernel_function
def kernel_encode(x, rate_hz, T, dt, state, ev_t, ev_i):
    """Spike events of image ``x``; returns their count (one per ``x_i > 0``, no draws).

    Events are written in increasing input order: ``gen_events`` buckets them by step
    with a stable sort, and the kernel's layout wants increasing inputs within a step.
    """
    n_in = x.shape[0]
    n = 0
    for i in range(n_in):
        if x[i] > 0.0:
            n += 1
    if n == 0:
        return 0
    which = np.empty(n, np.int64)  # the nonzero inputs, in index order
    neg = np.empty(n, np.float64)  # their values negated: ascending = brightest first
    k = 0
    for i in range(n_in):
        if x[i] > 0.0:
            which[k] = i
            neg[k] = -x[i]
            k += 1
    # Mergesort is stable (numba honours kind="mergesort"): equal values keep index order.
    order = np.argsort(neg, kind="mergesort")
    step = np.empty(n, np.int64)
    for r in range(n):
        # Rank r of n onto T steps: floor(r T / n), exact in integers.
        step[order[r]] = (r * T) // n
    for j in range(n):
        ev_t[j] = step[j]
        ev_i[j] = which[j]
    return n
