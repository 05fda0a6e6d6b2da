"""Leaky integrate-and-fire (``LIFNodes``): decay to ``rest_mv`` with ``tc_decay_ms``.

>>> import numpy as np
>>> from types import SimpleNamespace
>>> cfg = SimpleNamespace(thresh_mv=-52.0, rest_mv=-65.0, reset_mv=-60.0, refrac_ms=5.0,
...                       tc_decay_ms=100.0, dt=1.0)
>>> p = np.rec.array([tuple(kernel_params(cfg).values())], dtype=RECORD)[0]
>>> st = np.zeros((2, 1), np.float32)
>>> kernel_reset(p, st)
>>> [bool(kernel_step(p, st, None, 0, np.float32(5.0), True)) for _ in range(4)]
[False, False, True, False]
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.spec import Level, kernel_function
from stdp_bench.levels.units import decay

# No ordering of reset_mv and thresh_mv (unlike if): the leak pulls v from the reset
# toward rest before the next threshold test, so whether a reset above threshold fires
# again depends on dt and tc_decay_ms too; rest_mv at or above threshold is a neuron
# that fires at rest, which the kernel runs as such.
LEVEL = Level(axis="neuron", name="lif", module=__name__,
              doc="leaky integrate-and-fire (BindsNET LIFNodes)",
              uses=("thresh_mv", "rest_mv", "reset_mv", "refrac_ms", "tc_decay_ms"),
              state=("v", "refrac"),
              # (rest - rest) * decay + rest is rest again, exactly.
              rests=True)

RECORD = np.dtype([("thresh", np.float32), ("rest", np.float32), ("reset", np.float32),
                   ("refrac", np.float32), ("decay", np.float32), ("dt", np.float32)])


def kernel_params(cfg) -> dict[str, float]:
    """This level's fields of a replica's neuron record."""
    return {"thresh": cfg.thresh_mv, "rest": cfg.rest_mv, "reset": cfg.reset_mv,
            "refrac": cfg.refrac_ms, "decay": decay(cfg.dt, cfg.tc_decay_ms), "dt": cfg.dt}


@kernel_function
def kernel_reset(p, st):
    """State at the start of a presentation: v = rest, not refractory."""
    for j in range(st.shape[1]):
        st[0, j] = p.rest
        st[1, j] = np.float32(0.0)


@kernel_function
def kernel_step(p, st, theta, j, current, learning):
    """One step of neuron j (``LIFNodes.forward``'s order); True when it fires."""
    st[0, j] = (st[0, j] - p.rest) * p.decay + p.rest
    if st[1, j] <= np.float32(0.0):
        st[0, j] += current
    st[1, j] -= p.dt
    if st[0, j] >= p.thresh:
        st[1, j] = p.refrac
        st[0, j] = p.reset
        return True
    return False


@kernel_function
def _integrate(p, v, refrac, current):
    """One neuron's step up to the threshold test on its values: (v, refrac, margin)
    after it."""
    v = (v - p.rest) * p.decay + p.rest
    if refrac <= np.float32(0.0):
        v += current
    return v, refrac - p.dt, v - p.thresh


@kernel_function
def kernel_integrate_all(p, st, theta, current, margin, over, learning):
    """Every neuron's step up to the threshold test (:func:`kernel_step` split where maps'
    winners-take-all decides who fires): takes ``current`` and leaves it 0, writes
    ``margin`` (``v - threshold``) and ``over`` (margin >= 0). Why the state's rows go to
    the loop apart: :func:`stdp_bench.levels.neurons.adaptive.kernel_integrate_all`."""
    _integrate_rows(p, st[0], st[1], current, margin, over)


@kernel_function
def _integrate_rows(p, v, refrac, current, margin, over):
    for j in range(v.shape[0]):
        v[j], refrac[j], m = _integrate(p, v[j], refrac[j], current[j])
        current[j] = np.float32(0.0)
        margin[j] = m
        over[j] = m >= np.float32(0.0)


@kernel_function
def kernel_fire(p, st, theta, j, learning):
    """Neuron j fires: refractory, reset."""
    st[1, j] = p.refrac
    st[0, j] = p.reset


def stock_layer(cfg, n: int):
    """The same neurons as stock BindsNET ``LIFNodes`` (with spike traces)."""
    from bindsnet.network.nodes import LIFNodes

    return LIFNodes(n=n, traces=True, tc_trace=cfg.tc_trace_ms, thresh=cfg.thresh_mv,
                    rest=cfg.rest_mv, reset=cfg.reset_mv, refrac=int(cfg.refrac_ms),
                    tc_decay=cfg.tc_decay_ms)


def torch_reset(p, st) -> None:
    """Torch twin of :func:`kernel_reset`: ``st`` maps state names to ``[B, n]`` tensors,
    ``p`` parameter names to ``[B, 1]`` tensors (one row per batch row)."""
    st["v"] = p["rest"].expand_as(st["v"]).clone()
    st["refrac"] = st["refrac"].new_zeros(st["refrac"].shape)


def torch_step(p, st, x, learning: bool):
    """Torch twin of :func:`kernel_step` for a batch ``x`` ``[B, n]``; returns spikes."""
    import torch

    v = (st["v"] - p["rest"]) * p["decay"] + p["rest"]
    v = v + (st["refrac"] <= 0).float() * x
    refrac = st["refrac"] - p["dt"]
    s = v >= p["thresh"]
    st["refrac"] = torch.where(s, p["refrac"].expand_as(s), refrac)
    st["v"] = torch.where(s, p["reset"].expand_as(s), v)
    return s
