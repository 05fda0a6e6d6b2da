"""Anti-Hebbian rule: coincident activity depresses, scaled by ``anti_scale``."""

import numpy as np

from stdp_bench.levels.spec import Level, Param, kernel_function

LEVEL = Level(axis="rule", name="anti_hebbian", module=__name__,
              doc="coincident activity depresses (demo plugin)",
              params=(Param("anti_scale", 1.0, low=0.0, doc="scale of the depression"),),
              uses=("nu_pre", "nu_post"))

RECORD = np.dtype([("nu_pre", np.float32), ("nu_post", np.float32)])


def kernel_params(cfg):
    return {"nu_pre": cfg.nu_pre * cfg.anti_scale, "nu_post": cfg.nu_post * cfg.anti_scale}


@kernel_function
def kernel_update(p, W, xin, xe, aux, spiked, idx, lo, hi, fired, nfire, active, nact,
                  label, n_classes, scratch):
    # The post trace xe is zero outside the neurons active in this presentation.
    for e in range(lo, hi):
        i = idx[e]
        for q in range(nact):
            j = active[q]
            W[i, j] -= p.nu_pre * xe[j]
    for q in range(nfire):
        j = fired[q]
        for i in range(W.shape[0]):
            W[i, j] -= p.nu_post * xin[i]


def torch_update(p, W, rows, s_in, x_in, s_out, x_out, aux, labels, n_classes):
    b, i = s_in.nonzero(as_tuple=True)
    if len(b):
        W[rows[b], i] = W[rows[b], i] - p["nu_pre"][b].unsqueeze(1) * x_out[b]
    b2, j = s_out.nonzero(as_tuple=True)
    if len(b2):
        W[rows[b2], :, j] = W[rows[b2], :, j] - p["nu_post"][b2].unsqueeze(1) * x_in[b2]
