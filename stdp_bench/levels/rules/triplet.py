"""Triplet STDP as in Diehl & Cook's released code (Pfister & Gerstner's minimal rule).

Traces: the pre trace ``x_pre`` (``tc_trace_ms``), the first post trace ``x_post1``
(``tc_trace_ms``) and a second, slower post trace ``x_post2`` (``tc_post2_ms``); each
decays every step and is set to 1 at its neuron's spike. Per step, after this step's
spikes have set ``x_pre`` and ``x_post1`` (BindsNET's order, as for pair STDP):

* a pre spike of input i: ``w[i, j] -= nu_pre * x_post1[j]`` for every neuron j;
* a post spike of neuron j: ``w[i, j] += nu_post * x_pre[i] * x_post2[j]``, with
  ``x_post2`` read before this spike sets it to 1 (decayed to this step);

then ``x_post2[j] = 1`` for the neurons that fired. A lone post spike (``x_post2 = 0``)
does not potentiate: potentiation needs a post-pre-post triplet. The kernel clamps the
touched weights to ``[wmin, wmax]`` afterwards.

>>> import numpy as np
>>> p = np.rec.array([(0.01, 0.1, 0.5)], dtype=RECORD)[0]
>>> W = np.full((1, 1), 0.5, np.float32)
>>> xin, xe = np.ones(1, np.float32), np.ones(1, np.float32)
>>> aux = np.ones((1, 1), np.float32)  # x_post2 = 1, decays to 0.5 this step
>>> one = np.zeros(1, np.int64)  # neuron 0 fired and is the one active neuron
>>> kernel_update(p, W, xin, xe, aux, xe > 0, np.zeros(1, np.int32), 0, 0, one, 1, one, 1,
...               -1, 10, None)
>>> round(float(W[0, 0]), 6), float(aux[0, 0])  # 0.5 + 0.1 * 1 * 0.5
(0.55, 1.0)
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.spec import Level, Param, kernel_function
from stdp_bench.levels.units import decay

LEVEL = Level(axis="rule", name="triplet", module=__name__,
              doc="triplet STDP of Diehl & Cook's code (pre, post 20 ms, post 40 ms traces)",
              # A time constant: exp(-dt / tc) needs tc > 0.
              params=(Param("tc_post2_ms", 40.0, unit="ms", low=0.0, low_open=True,
                            doc="decay of the second post trace (triplet)"),),
              uses=("nu_pre", "nu_post", "tc_trace_ms", "wmin", "wmax", "norm"),
              traces=("x_post2",))

RECORD = np.dtype([("nu_pre", np.float32), ("nu_post", np.float32),
                   ("post2_decay", np.float32)])


def kernel_params(cfg) -> dict[str, float]:
    """Learning rates and the second post trace's per-step decay."""
    return {"nu_pre": cfg.nu_pre, "nu_post": cfg.nu_post,
            "post2_decay": decay(cfg.dt, cfg.tc_post2_ms)}


@kernel_function
def kernel_update(p, W, xin, xe, aux, spiked, idx, lo, hi, fired, nfire, active, nact,
                  label, n_classes, scratch):
    """One step on ``W`` (n_in, n); ``aux[0]`` is ``x_post2``. Both post traces are zero
    outside ``active[:nact]`` (the neurons that have fired in this presentation)."""
    n_in = W.shape[0]
    for q in range(nact):
        aux[0, active[q]] *= p.post2_decay
    for e in range(lo, hi):
        i = idx[e]
        for q in range(nact):
            j = active[q]
            W[i, j] -= p.nu_pre * xe[j]
    for q in range(nfire):
        j = fired[q]
        for i in range(n_in):
            W[i, j] += p.nu_post * xin[i] * aux[0, j]
    for q in range(nfire):
        aux[0, fired[q]] = np.float32(1.0)


def torch_update(p, W, rows, s_in, x_in, s_out, x_out, aux, labels, n_classes: int) -> None:
    """Torch twin of :func:`kernel_update` for batch rows of replicas ``rows``;
    ``aux`` ``[B, 1, n]`` holds ``x_post2`` and is updated in place."""
    import torch

    post2 = aux[:, 0] * p["post2_decay"].unsqueeze(1)
    b, i = s_in.nonzero(as_tuple=True)
    if len(b):
        r = rows[b]
        W[r, i] = W[r, i] - p["nu_pre"][b].unsqueeze(1) * x_out[b]
    b2, j = s_out.nonzero(as_tuple=True)
    if len(b2):
        r2 = rows[b2]
        W[r2, :, j] = W[r2, :, j] + (p["nu_post"][b2].unsqueeze(1) * x_in[b2]
                                     * post2[b2, j].unsqueeze(1))
    aux[:, 0] = torch.where(s_out, torch.ones_like(post2), post2)
