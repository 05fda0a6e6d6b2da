"""Integrate-and-fire: no leak, fixed threshold, reset and refractory period (``IFNodes``).

The membrane starts at (and returns to) ``reset_mv``.

>>> import numpy as np
>>> p = np.rec.array(np.zeros(1, RECORD))[0]
>>> p["thresh"], p["reset"], p["refrac"], p["dt"] = -52.0, -60.0, 5.0, 1.0
>>> st = np.zeros((2, 1), np.float32)
>>> kernel_reset(p, st)
>>> [bool(kernel_step(p, st, None, 0, np.float32(3.0), True)) for _ in range(4)]
[False, False, True, False]
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.spec import Level, kernel_function

LEVEL = Level(axis="neuron", name="if", module=__name__,
              doc="integrate-and-fire without leak (BindsNET IFNodes)",
              uses=("thresh_mv", "reset_mv", "refrac_ms"), state=("v", "refrac"),
              # kernel_step tests the threshold on every step, refractory or not, and
              # only input moves v: a reset at or above threshold fires again on the next
              # step, and while refractory (no input) on every step for good.
              orderings=(("reset_mv", "thresh_mv",
                          "without leak, a reset at or above threshold fires on every "
                          "step"),),
              # Only input moves v (v + 0.0 is v).
              rests=True)

RECORD = np.dtype([("thresh", np.float32), ("reset", np.float32), ("refrac", np.float32),
                   ("dt", np.float32)])


def kernel_params(cfg) -> dict[str, float]:
    """This level's fields of a replica's neuron record."""
    return {"thresh": cfg.thresh_mv, "reset": cfg.reset_mv, "refrac": cfg.refrac_ms,
            "dt": cfg.dt}


@kernel_function
def kernel_reset(p, st):
    """State at the start of a presentation: v = reset, not refractory."""
    for j in range(st.shape[1]):
        st[0, j] = p.reset
        st[1, j] = np.float32(0.0)


@kernel_function
def kernel_step(p, st, theta, j, current, learning):
    """One step of neuron j (``IFNodes.forward``'s order); True when it fires."""
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
    """The same neurons as stock BindsNET ``IFNodes`` (with spike traces)."""
    from bindsnet.network.nodes import IFNodes

    return IFNodes(n=n, traces=True, tc_trace=cfg.tc_trace_ms, thresh=cfg.thresh_mv,
                   reset=cfg.reset_mv, refrac=int(cfg.refrac_ms))


def torch_reset(p, st) -> None:
    """Torch twin of :func:`kernel_reset`: ``st`` maps state names to ``[B, n]`` tensors,
    ``p`` parameter names to ``[B, 1]`` tensors (one row per batch row)."""
    st["v"] = p["reset"].expand_as(st["v"]).clone()
    st["refrac"] = st["refrac"].new_zeros(st["refrac"].shape)


def torch_step(p, st, x, learning: bool):
    """Torch twin of :func:`kernel_step` for a batch ``x`` ``[B, n]``; returns spikes."""
    import torch

    v = st["v"] + (st["refrac"] <= 0).float() * x
    refrac = st["refrac"] - p["dt"]
    s = v >= p["thresh"]
    st["refrac"] = torch.where(s, p["refrac"].expand_as(s), refrac)
    st["v"] = torch.where(s, p["reset"].expand_as(s), v)
    return s
