"""Kheradpisheh et al. (2018)'s multiplicative STDP: when neuron j fires, every input
weight moves by ``w (1 - w)``, up (``nu_post``, their a+) for an input that has fired by
then, down (``nu_pre``, their a-) for one that has not:

    w <- w + nu_post * w (1 - w)   if input i fired at or before j's spike
    w <- w - nu_pre  * w (1 - w)   otherwise

Only the order of the two spikes counts, not their distance, and an input spike after the
post spike changes nothing: their neurons fire once per image and their inputs once
(a latency code), so "has not fired yet" is "fires after, or never", which they
depress. The factor ``w (1 - w)`` keeps weights in [0, 1] without a clamp and moves them
fastest at 0.5, so filters converge to nearly binary weights. Whether an input has fired
is read from its trace (positive once it has fired in this presentation; inputs are
reset between images). In conv / local layers with first-spike learning this is the
update a map's first spike applies to its field; in a Diehl & Cook network it applies
at every excitatory spike.

>>> import numpy as np
>>> p = np.rec.array([(0.003, 0.004)], dtype=RECORD)[0]
>>> W = np.full((2, 1), 0.5, np.float32)
>>> xin = np.array([0.7, 0.0], np.float32)  # input 0 fired before, input 1 has not
>>> one = np.array([0])  # neuron 0 fired
>>> kernel_update(p, W, xin, None, None, None, np.zeros(0, np.int64), 0, 0, one, 1, one,
...               1, -1, 10, None)
>>> [round(float(w), 6) for w in W[:, 0]]  # 0.5 + 0.004 * 0.25, 0.5 - 0.003 * 0.25
[0.501, 0.49925]
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.spec import Level, kernel_function

LEVEL = Level(axis="rule", name="multiplicative", module=__name__,
              doc="Kheradpisheh's multiplicative STDP: +nu_post w(1-w) for inputs that "
                  "fired before the post spike, -nu_pre w(1-w) for the others",
              uses=("nu_pre", "nu_post", "wmin", "wmax", "norm"))

RECORD = np.dtype([("nu_pre", np.float32), ("nu_post", np.float32)])

__all__ = ["LEVEL", "RECORD", "kernel_params", "kernel_update", "torch_update"]


def kernel_params(cfg) -> dict[str, float]:
    """a- (``nu_pre``) and a+ (``nu_post``)."""
    return {"nu_pre": cfg.nu_pre, "nu_post": cfg.nu_post}


@kernel_function
def kernel_update(p, W, xin, xe, aux, spiked, idx, lo, hi, fired, nfire, active, nact,
                  label, n_classes, scratch):
    """At each spike of a neuron in ``fired[:nfire]``: its column of ``W`` (n_in, n) moves
    by ``w (1 - w)``, up where the input's trace ``xin`` is positive, down elsewhere."""
    n_in = W.shape[0]
    one = np.float32(1.0)
    for q in range(nfire):
        j = fired[q]
        for i in range(n_in):
            w = W[i, j]
            if xin[i] > np.float32(0.0):
                W[i, j] = w + p.nu_post * (w * (one - w))
            else:
                W[i, j] = w - p.nu_pre * (w * (one - w))


def torch_update(p, W, rows, s_in, x_in, s_out, x_out, aux, labels, n_classes: int) -> None:
    """Torch twin of :func:`kernel_update` for batch rows of replicas ``rows``
    (``W`` ``[R, n_in, n]``, ``x_in`` ``[B, n_in]``, ``s_out`` ``[B, n]``)."""
    import torch

    b, j = s_out.nonzero(as_tuple=True)
    if len(b):
        r = rows[b]
        w = W[r, :, j]  # [k, n_in]
        soft = w * (1 - w)
        up = p["nu_post"][b].unsqueeze(1) * soft
        down = p["nu_pre"][b].unsqueeze(1) * soft
        W[r, :, j] = torch.where(x_in[b] > 0, w + up, w - down)
