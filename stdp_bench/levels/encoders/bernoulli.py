"""Bernoulli rate code: one trial per step with ``p = intensity * rate dt / 1000``.

The same mean rate as the Poisson code; unlike BindsNET 0.3.4's ``bernoulli`` the rate
is in Hz and the caller's tensor is left alone.

>>> import numpy as np
>>> ev_t, ev_i = np.zeros(100, np.int32), np.zeros(100, np.int32)
>>> state = np.array([1], np.uint64)
>>> kernel_encode(np.array([1.0]), 1000.0, 50, 1.0, state, ev_t, ev_i)  # p = 1
50
"""

from __future__ import annotations

import math

from stdp_bench.levels import random
from stdp_bench.levels.spec import Level, kernel_function

LEVEL = Level(axis="encoder", name="bernoulli", module=__name__,
              doc="Bernoulli trial per step, same mean rate as Poisson",
              uses=("intensity_hz", "dt", "time"))


@kernel_function
def kernel_encode(x, rate_hz, T, dt, state, ev_t, ev_i):
    """Spike events of image ``x`` in [0, 1]; returns their count.

    Gaps between spikes are drawn geometrically, so the cost follows the spikes.
    """
    m = 0
    for i in range(x.shape[0]):
        p = x[i] * rate_hz * dt / 1000.0
        if p <= 0.0:
            continue
        if p >= 1.0:
            for t in range(T):
                ev_t[m] = t
                ev_i[m] = i
                m += 1
            continue
        lq = math.log1p(-p)
        t = -1
        while True:
            u = 1.0 - random.uniform(state)  # (0, 1]
            t += int(math.floor(math.log(u) / lq)) + 1
            if t >= T:
                break
            ev_t[m] = t
            ev_i[m] = i
            m += 1
    return m


def dense_encoder(time: int, dt: float, rate_hz: float):
    """BindsNET's Bernoulli encoder with the rate in Hz (``levels.encoders.dense``)."""
    from stdp_bench.levels.encoders.dense import BernoulliEncoder

    return BernoulliEncoder(time=time, dt=dt, rate_hz=rate_hz)


def torch_encode_batch(x, time_steps: int, rate_hz: float, dt: float, gen=None):
    """``[T, B, n]`` Bernoulli trains of images ``x`` ``[B, n]`` (surrogate baselines)."""
    import torch

    p = (x * (rate_hz * dt / 1000.0)).clamp(max=1.0)
    u = torch.rand((time_steps, *x.shape), generator=gen, device=x.device)
    return (u < p).float()
