"""Poisson rate code: BindsNET's ``poisson`` encoding at ``intensity_hz`` for a white pixel.

Inter-spike intervals are Poisson-distributed with mean ``1000 / (rate dt)`` steps, zero
intervals raised to one, as BindsNET draws them.

>>> import numpy as np
>>> ev_t, ev_i = np.zeros(1000, np.int32), np.zeros(1000, np.int32)
>>> state = np.array([12345], np.uint64)
>>> with np.errstate(over="ignore"):
...     m = kernel_encode(np.array([1.0, 0.0]), 500.0, 100, 1.0, state, ev_t, ev_i)
>>> 30 < m < 70, set(ev_i[:m].tolist())
(True, {0})
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels import random
from stdp_bench.levels.spec import Level, kernel_function

LEVEL = Level(axis="encoder", name="poisson", module=__name__,
              doc="Poisson spike trains, rate proportional to intensity (BindsNET poisson)",
              uses=("intensity_hz", "dt", "time"))


@kernel_function
def kernel_encode(x, rate_hz, T, dt, state, ev_t, ev_i):
    """Spike events (step ``ev_t``, input ``ev_i``) of image ``x`` in [0, 1]; returns their count."""
    m = 0
    # A pixel's intervals are all drawn at its lam: what a draw needs is prepared once.
    table = np.empty(random.POISSON_TABLE)
    for i in range(x.shape[0]):
        r = x[i] * rate_hz
        if r <= 0.0:
            continue
        lam = 1000.0 / (r * dt)
        n = random.poisson_prepare(lam, table)
        cum = 0
        while True:
            if n > 0:
                k = random.poisson_walk(state, table, n)
            else:
                k = random.poisson_ptrs(state, table[0], table[1], table[2], table[3],
                                        table[4], table[5])
            if k == 0:
                k = 1
            cum += k
            if cum > T:
                break
            ev_t[m] = cum - 1
            ev_i[m] = i
            m += 1
    return m


def dense_encoder(time: int, dt: float, rate_hz: float):
    """BindsNET's ``PoissonEncoder`` fed ``datum * rate_hz`` (datum in [0, 1])."""
    from stdp_bench.levels.encoders.dense import ScaledPoissonEncoder

    return ScaledPoissonEncoder(time=time, dt=dt, rate_hz=rate_hz)


def torch_encode_batch(x, time_steps: int, rate_hz: float, dt: float, gen=None):
    """``[T, B, n]`` Poisson trains of images ``x`` ``[B, n]`` (surrogate baselines)."""
    import torch

    T = time_steps
    rate = x * rate_hz
    lam = torch.where(rate > 0, 1000.0 / (rate * dt).clamp(min=1e-12), torch.zeros_like(rate))
    # At most T intervals can fall inside the window (each is at least one step).
    draws = torch.poisson(lam.unsqueeze(0).expand(T, *x.shape).contiguous(),
                          generator=gen).clamp(min=1)
    t_spike = torch.cumsum(draws, 0) - 1  # 0-based step of each spike
    valid = (t_spike < T) & (rate > 0).unsqueeze(0)
    out = torch.zeros((T, *x.shape), device=x.device)
    idx = t_spike.clamp(max=T - 1).long()
    # Spike times of a pixel strictly increase, so adding never stacks two spikes; the
    # clamped out-of-window ones add 0.
    out.scatter_add_(0, idx, valid.float())
    return out
