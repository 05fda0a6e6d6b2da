"""Diehl & Cook's adaptive-threshold LIF (``DiehlAndCookNodes``).

Each spike raises the neuron's threshold by ``theta_plus``; theta decays with
``tc_theta_decay_ms`` and both happen only while learning (theta is frozen for
labelling and testing). With ``one_spike`` the kernel keeps one of several neurons that
cross threshold on the same step.

>>> import numpy as np
>>> from types import SimpleNamespace
>>> cfg = SimpleNamespace(thresh_mv=-52.0, rest_mv=-65.0, reset_mv=-60.0, refrac_ms=5.0,
...                       tc_decay_ms=100.0, theta_plus=1.0, tc_theta_decay_ms=1e7, dt=1.0)
>>> p = np.rec.array([tuple(kernel_params(cfg).values())], dtype=RECORD)[0]
>>> st, theta = np.zeros((2, 1), np.float32), np.zeros(1, np.float32)
>>> kernel_reset(p, st)
>>> fired = [bool(kernel_step(p, st, theta, 0, np.float32(5.0), True)) for _ in range(10)]
>>> fired.count(True), float(theta[0]) > 1.99
(2, True)
"""

from __future__ import annotations

import numpy as np

# The state at the start of a presentation is LIF's (v = rest, not refractory); theta
# persists across presentations.
from stdp_bench.levels.neurons.lif import kernel_reset, torch_reset
from stdp_bench.levels.spec import Level, kernel_function
from stdp_bench.levels.units import decay

__all__ = ["LEVEL", "RECORD", "kernel_params", "kernel_reset", "kernel_step",
           "kernel_integrate_all", "kernel_fire", "torch_reset",
           "torch_step", "stock_layer"]

LEVEL = Level(axis="neuron", name="adaptive", module=__name__,
              doc="LIF with adaptive threshold theta (BindsNET DiehlAndCookNodes)",
              uses=("thresh_mv", "rest_mv", "reset_mv", "refrac_ms", "tc_decay_ms",
                    "theta_plus", "tc_theta_decay_ms", "one_spike"),
              state=("v", "refrac"), one_spike=True,
              # v = rest stays rest, and frozen theta only moves while learning.
              rests=True)

RECORD = np.dtype([("thresh", np.float32), ("rest", np.float32), ("reset", np.float32),
                   ("refrac", np.float32), ("decay", np.float32),
                   ("theta_plus", np.float32), ("theta_decay", np.float32),
                   ("dt", np.float32)])


def kernel_params(cfg) -> dict[str, float]:
    """This level's fields of a replica's neuron record."""
    return {"thresh": cfg.thresh_mv, "rest": cfg.rest_mv, "reset": cfg.reset_mv,
            "refrac": cfg.refrac_ms, "decay": decay(cfg.dt, cfg.tc_decay_ms),
            "theta_plus": cfg.theta_plus,
            "theta_decay": decay(cfg.dt, cfg.tc_theta_decay_ms), "dt": cfg.dt}


@kernel_function
def kernel_step(p, st, theta, j, current, learning):
    """One step of neuron j (``DiehlAndCookNodes.forward``'s order); True when it fires."""
    st[0, j] = (st[0, j] - p.rest) * p.decay + p.rest
    if learning:
        theta[j] *= p.theta_decay
    if st[1, j] <= np.float32(0.0):
        st[0, j] += current
    st[1, j] -= p.dt
    if st[0, j] >= p.thresh + theta[j]:
        st[1, j] = p.refrac
        st[0, j] = p.reset
        if learning:
            theta[j] += p.theta_plus
        return True
    return False


@kernel_function
def _integrate(p, v, refrac, th, current, learning):
    """One neuron's step up to the threshold test on its values: (v, refrac, theta,
    margin) after it."""
    v = (v - p.rest) * p.decay + p.rest
    if learning:
        th *= p.theta_decay
    if refrac <= np.float32(0.0):
        v += current
    return v, refrac - p.dt, th, v - (p.thresh + th)


@kernel_function
def kernel_integrate_all(p, st, theta, current, margin, over, learning):
    """Every neuron's step up to the threshold test: neuron j takes ``current[j]`` and
    leaves it 0 for the next step's input; its margin over threshold (``v -
    threshold``, at least 0 when it would fire) goes to ``margin[j]`` and whether it is
    at least 0 to ``over[j]``. With :func:`kernel_fire` it is :func:`kernel_step` split
    where feature maps' winners-take-all decides who fires. The state's rows go to the
    loop as separate arrays: indexing the 2-D ``st`` inside it kept numba's loop scalar
    (about 2-3 ns a neuron-step on this project's machine), separate rows let it run on
    SIMD lanes (about 0.3 ns). Clearing the current and marking ``over`` here, not in a
    pass of the caller's, saves reading every margin again."""
    _integrate_rows(p, st[0], st[1], theta, current, margin, over, learning)


@kernel_function
def _integrate_rows(p, v, refrac, theta, current, margin, over, learning):
    for j in range(v.shape[0]):
        v[j], refrac[j], th, m = _integrate(p, v[j], refrac[j], theta[j], current[j],
                                            learning)
        current[j] = np.float32(0.0)
        margin[j] = m
        over[j] = m >= np.float32(0.0)
        # Frozen thresholds are never written: evaluation runs blocks of one network's
        # samples on several threads, all reading the same theta.
        if learning:
            theta[j] = th


@kernel_function
def kernel_fire(p, st, theta, j, learning):
    """Neuron j fires: refractory, reset, threshold raised (learning)."""
    st[1, j] = p.refrac
    st[0, j] = p.reset
    if learning:
        theta[j] += p.theta_plus


def stock_layer(cfg, n: int):
    """The same neurons as stock BindsNET ``DiehlAndCookNodes`` (with spike traces)."""
    from bindsnet.network.nodes import DiehlAndCookNodes

    return DiehlAndCookNodes(n=n, traces=True, tc_trace=cfg.tc_trace_ms,
                             thresh=cfg.thresh_mv, rest=cfg.rest_mv, reset=cfg.reset_mv,
                             refrac=int(cfg.refrac_ms), tc_decay=cfg.tc_decay_ms,
                             theta_plus=cfg.theta_plus,
                             tc_theta_decay=cfg.tc_theta_decay_ms, one_spike=cfg.one_spike)


def torch_step(p, st, x, learning: bool):
    """Torch twin of :func:`kernel_step` for a batch ``x`` ``[B, n]``; returns spikes.

    ``st["theta"]`` holds the rows' thresholds; the caller keeps it when learning.
    """
    import torch

    v = (st["v"] - p["rest"]) * p["decay"] + p["rest"]
    theta = st["theta"] * p["theta_decay"] if learning else st["theta"]
    v = v + (st["refrac"] <= 0).float() * x
    refrac = st["refrac"] - p["dt"]
    s = v >= p["thresh"] + theta
    st["refrac"] = torch.where(s, p["refrac"].expand_as(s), refrac)
    st["v"] = torch.where(s, p["reset"].expand_as(s), v)
    if learning:
        st["theta"] = theta + p["theta_plus"] * s.float()
    return s
