"""Izhikevich's simple model (2003), stepped as BindsNET's ``IzhikevichNodes`` steps it.

Per step: a neuron that spiked on the previous step is reset (``v = c``, ``u += d``);
then two half steps of ``v += dt/2 (0.04 v^2 + 5 v + 140 - u + I)``, then
``u += dt a (b v - u)``; it spikes when ``v >= izh_thresh_mv``. The membrane starts at
``rest_mv`` with ``u = b v``.

BindsNET draws ``c`` and ``d`` per neuron (``c = -65 + 15 r^2``, ``d = 8 - 6 r^2``) and
adds a random lateral excitation ``S``; this level is the homogeneous neuron (regular
spiking by default) without lateral input, as the Diehl & Cook layout's lateral
interaction is its inhibitory layer. :func:`stock_layer` sets a stock layer to the same.

>>> import numpy as np
>>> from types import SimpleNamespace
>>> cfg = SimpleNamespace(izh_a=0.02, izh_b=0.2, izh_c_mv=-65.0, izh_d=8.0,
...                       izh_thresh_mv=30.0, rest_mv=-65.0, dt=1.0)
>>> p = np.rec.array([tuple(kernel_params(cfg).values())], dtype=RECORD)[0]
>>> st = np.zeros((3, 1), np.float32)
>>> kernel_reset(p, st)
>>> spikes = [t for t in range(200) if kernel_step(p, st, None, 0, np.float32(10.0), True)]
>>> len(spikes) > 3, spikes[0] < 20
(True, True)
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.spec import Level, Param, kernel_function

LEVEL = Level(
    axis="neuron", name="izhikevich", module=__name__,
    doc="Izhikevich's simple model, regular spiking by default (BindsNET IzhikevichNodes)",
    # a is a rate (1 / time scale of u); b and d take either sign in Izhikevich's
    # (2004) neuron classes, and c and the cut-off are voltages: no bounds on those.
    params=(Param("izh_a", 0.02, low=0.0, doc="recovery time scale a (Izhikevich)"),
            Param("izh_b", 0.2, doc="recovery sensitivity b (Izhikevich)"),
            Param("izh_c_mv", -65.0, unit="mV", doc="reset potential c (Izhikevich)"),
            Param("izh_d", 8.0, doc="recovery jump after a spike d (Izhikevich)"),
            Param("izh_thresh_mv", 45.0, unit="mV",
                  doc="spike cut-off (BindsNET's default 45; Izhikevich uses 30)")),
    uses=("rest_mv",), state=("v", "u", "spiked"))

RECORD = np.dtype([("rest", np.float32), ("a", np.float32), ("b", np.float32),
                   ("c", np.float32), ("d", np.float32), ("thresh", np.float32),
                   ("half_dt", np.float32), ("dt_a", np.float32)])


def kernel_params(cfg) -> dict[str, float]:
    """This level's fields of a replica's neuron record (``dt`` products as BindsNET
    forms them in float32)."""
    f32 = np.float32
    return {"rest": cfg.rest_mv, "a": cfg.izh_a, "b": cfg.izh_b, "c": cfg.izh_c_mv,
            "d": cfg.izh_d, "thresh": cfg.izh_thresh_mv,
            "half_dt": float(f32(cfg.dt) * f32(0.5)),
            "dt_a": float(f32(cfg.dt) * f32(cfg.izh_a))}


@kernel_function
def kernel_reset(p, st):
    """State at the start of a presentation: v = rest, u = b v, no spike pending."""
    for j in range(st.shape[1]):
        st[0, j] = p.rest
        st[1, j] = p.b * p.rest
        st[2, j] = np.float32(0.0)


@kernel_function
def kernel_step(p, st, theta, j, current, learning):
    """One step of neuron j (``IzhikevichNodes.forward``'s order); True when it fires."""
    if st[2, j] != np.float32(0.0):
        st[0, j] = p.c
        st[1, j] = st[1, j] + p.d
    v = st[0, j]
    u = st[1, j]
    v = v + p.half_dt * ((((np.float32(0.04) * (v * v)) + np.float32(5.0) * v)
                          + np.float32(140.0)) - u + current)
    v = v + p.half_dt * ((((np.float32(0.04) * (v * v)) + np.float32(5.0) * v)
                          + np.float32(140.0)) - u + current)
    u = u + p.dt_a * (p.b * v - u)
    st[0, j] = v
    st[1, j] = u
    fire = v >= p.thresh
    st[2, j] = np.float32(1.0) if fire else np.float32(0.0)
    return fire


def torch_reset(p, st) -> None:
    """Torch twin of :func:`kernel_reset` (``st``: state name -> ``[B, n]``)."""
    st["v"] = p["rest"].expand_as(st["v"]).clone()
    st["u"] = p["b"] * st["v"]
    st["spiked"] = st["spiked"].new_zeros(st["spiked"].shape)


def torch_step(p, st, x, learning: bool):
    """Torch twin of :func:`kernel_step` for a batch ``x`` ``[B, n]``; returns spikes."""
    import torch

    spiked = st["spiked"] != 0
    v = torch.where(spiked, p["c"].expand_as(st["v"]), st["v"])
    u = torch.where(spiked, st["u"] + p["d"], st["u"])
    v = v + p["half_dt"] * ((((0.04 * (v * v)) + 5.0 * v) + 140.0) - u + x)
    v = v + p["half_dt"] * ((((0.04 * (v * v)) + 5.0 * v) + 140.0) - u + x)
    u = u + p["dt_a"] * (p["b"] * v - u)
    s = v >= p["thresh"]
    st["v"], st["u"], st["spiked"] = v, u, s.float()
    return s


def stock_layer(cfg, n: int):
    """Stock BindsNET ``IzhikevichNodes`` set to this level's homogeneous neuron (with
    spike traces): ``a``, ``b``, ``c``, ``d`` for every neuron, no lateral ``S``."""
    import torch
    from bindsnet.network.nodes import IzhikevichNodes

    layer = IzhikevichNodes(n=n, traces=True, tc_trace=cfg.tc_trace_ms, excitatory=1.0,
                            thresh=cfg.izh_thresh_mv, rest=cfg.rest_mv)
    for name, value in (("a", cfg.izh_a), ("b", cfg.izh_b), ("c", cfg.izh_c_mv),
                        ("d", cfg.izh_d)):
        setattr(layer, name, torch.full((n,), value))
    layer.S = torch.zeros(n, n)
    layer.u = layer.b * layer.v
    return layer
