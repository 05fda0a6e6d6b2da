"""A leaky integrate-and-fire neuron with a torch step only (runs on the torch engine)."""

import numpy as np

from stdp_bench.levels.spec import Level

LEVEL = Level(axis="neuron", name="torch_lif", module=__name__, kernel=False,
              doc="LIF with a torch step only (demo plugin)",
              uses=("thresh_mv", "rest_mv", "reset_mv"), state=("v",))


def kernel_params(cfg):
    return {"thresh": cfg.thresh_mv, "rest": cfg.rest_mv, "reset": cfg.reset_mv,
            "decay": float(np.exp(-cfg.dt / cfg.tc_decay_ms))}


def torch_reset(p, st):
    st["v"] = p["rest"].expand_as(st["v"]).clone()


def torch_step(p, st, x, learning):
    import torch

    v = (st["v"] - p["rest"]) * p["decay"] + p["rest"] + x
    s = v >= p["thresh"]
    st["v"] = torch.where(s, p["reset"].expand_as(v), v)
    return s
