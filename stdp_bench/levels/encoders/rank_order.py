"""Rank-order code: one spike per nonzero pixel, brighter pixels first.

Spike step of pixel i is ``ceil((max / x_i) * T / max_j(max / x_j)) - 1``, so the
dimmest nonzero pixel fires on the last step (BindsNET 0.3.4 drops it). One spike per
pixel carries far less current than a rate code, so the input gain defaults to the ratio
of the Poisson code's mean spike count to this code's (:func:`input_gain`).

>>> import numpy as np
>>> ev_t, ev_i = np.zeros(8, np.int32), np.zeros(8, np.int32)
>>> m = kernel_encode(np.array([1.0, 0.5, 0.0, 0.25]), 0.0, 4, 1.0, None, ev_t, ev_i)
>>> ev_t[:m].tolist(), ev_i[:m].tolist()
([0, 1, 3], [0, 1, 3])
"""

from __future__ import annotations

import math

import numpy as np

from stdp_bench.levels.spec import Level, kernel_function

LEVEL = Level(axis="encoder", name="rank_order", module=__name__,
              doc="one spike per pixel, brightest first (time-to-first-spike)",
              uses=("time", "dt", "input_gain"), deterministic=True)


@kernel_function
def kernel_encode(x, rate_hz, T, dt, state, ev_t, ev_i):
    """Spike events of image ``x`` in [0, 1]; returns their count (no random draws)."""
    n = x.shape[0]
    m = 0
    xmax = 0.0
    for i in range(n):
        if x[i] > xmax:
            xmax = x[i]
    if xmax <= 0.0:
        return 0
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
    return m


def input_gain(x_train: np.ndarray, rate_hz: float, time: int, dt: float) -> float:
    """Gain giving this code the Poisson code's mean input volume (at least 1)."""
    sample = x_train[: min(len(x_train), 5000)]
    rate_volume = float(sample.sum(1).mean()) * rate_hz * time / 1000.0
    spikes = float((sample > 0).sum(1).mean())
    return max(1.0, rate_volume / max(spikes, 1.0))


def dense_encoder(time: int, dt: float, rate_hz: float):
    """BindsNET's rank-order encoder, fixed (``levels.encoders.dense``)."""
    from stdp_bench.levels.encoders.dense import RankOrderEncoder

    return RankOrderEncoder(time=time, dt=dt)


def torch_encode_batch(x, time_steps: int, rate_hz: float, dt: float, gen=None):
    """``[T, B, n]`` rank-order trains of images ``x`` ``[B, n]`` (surrogate baselines)."""
    import torch

    T = time_steps
    xmax = x.max(1, keepdim=True).values
    nz = x > 0
    rel = torch.where(nz, xmax / x.clamp(min=1e-12), torch.zeros_like(x))
    tmax = rel.max(1, keepdim=True).values.clamp(min=1e-12)
    t = torch.ceil(rel * T / tmax).clamp(1, T).long() - 1
    out = torch.zeros((T, *x.shape), device=x.device)
    out.scatter_(0, t.unsqueeze(0), nz.float().unsqueeze(0))
    return out
