"""Weight-dependent pair STDP (BindsNET ``WeightDependentPostPre``): depression scales
with ``w - wmin``, potentiation with ``wmax - w``, both from the weights before the step.

>>> import numpy as np
>>> p = np.rec.array([(0.1, 0.5, 0.0, 1.0)], dtype=RECORD)[0]
>>> W = np.full((1, 1), 0.5, np.float32)
>>> xin, xe = np.array([1.0], np.float32), np.array([1.0], np.float32)
>>> scratch = np.zeros(1, np.bool_)
>>> one = np.array([0])  # input 0 fired; neuron 0 fired and is the one active neuron
>>> kernel_update(p, W, xin, xe, None, xe > 0, one, 0, 1, one, 1, one, 1, -1, 10, scratch)
>>> round(float(W[0, 0]), 6)  # 0.5 - 0.1 * 0.5 + 0.5 * 0.5
0.7
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.spec import Level, kernel_function

LEVEL = Level(axis="rule", name="weight_dependent", module=__name__,
              doc="pair STDP soft-bounded by the weight (BindsNET WeightDependentPostPre)",
              uses=("nu_pre", "nu_post", "tc_trace_ms", "wmin", "wmax", "norm"))

RECORD = np.dtype([("nu_pre", np.float32), ("nu_post", np.float32), ("wmin", np.float32),
                   ("wmax", np.float32)])


def kernel_params(cfg) -> dict[str, float]:
    """Learning rates and the soft bounds."""
    return {"nu_pre": cfg.nu_pre, "nu_post": cfg.nu_post, "wmin": cfg.wmin,
            "wmax": cfg.wmax}


@kernel_function
def kernel_update(p, W, xin, xe, aux, spiked, idx, lo, hi, fired, nfire, active, nact,
                  label, n_classes, scratch):
    """One step on ``W`` (n_in, n); ``scratch`` is an all-False bool array of n_in.

    Outside ``active[:nact]`` the post trace is zero and no neuron fired: no change."""
    n_in = W.shape[0]
    for e in range(lo, hi):
        i = idx[e]
        for q in range(nact):
            j = active[q]
            w = W[i, j]
            upd = -((p.nu_pre * xe[j]) * (w - p.wmin))
            if spiked[j]:
                upd = upd + (p.nu_post * xin[i]) * (p.wmax - w)
            W[i, j] = w + upd
    for e in range(lo, hi):
        scratch[idx[e]] = True
    for q in range(nfire):
        j = fired[q]
        for i in range(n_in):
            # Rows of inputs that fired were updated above.
            if scratch[i]:
                continue
            w = W[i, j]
            W[i, j] = w + (p.nu_post * xin[i]) * (p.wmax - w)
    for e in range(lo, hi):
        scratch[idx[e]] = False


def stock_rule():
    """The stock BindsNET rule class."""
    from bindsnet.learning import WeightDependentPostPre

    return WeightDependentPostPre


def torch_update(p, W, rows, s_in, x_in, s_out, x_out, aux, labels, n_classes: int) -> None:
    """Torch twin of :func:`kernel_update` for batch rows of replicas ``rows``."""
    import torch

    b, i = s_in.nonzero(as_tuple=True)
    if len(b):
        r = rows[b]
        w = W[r, i]  # [k, n]
        nu_pre = p["nu_pre"][b].unsqueeze(1)
        nu_post = p["nu_post"][b].unsqueeze(1)
        # Both terms from the weights before this step's update.
        upd = -((nu_pre * x_out[b]) * (w - p["wmin"][b].unsqueeze(1)))
        upd = torch.where(s_out[b], upd + (nu_post * x_in[b, i].unsqueeze(1))
                          * (p["wmax"][b].unsqueeze(1) - w), upd)
        W[r, i] = w + upd
    b2, j = s_out.nonzero(as_tuple=True)
    if len(b2):
        r2 = rows[b2]
        w = W[r2, :, j]  # [k, n_in]
        nu_post = p["nu_post"][b2].unsqueeze(1)
        # Rows of inputs that fired were updated above.
        W[r2, :, j] = torch.where(s_in[b2], w, w + (nu_post * x_in[b2])
                                  * (p["wmax"][b2].unsqueeze(1) - w))
