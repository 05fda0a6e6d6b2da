"""The Diehl & Cook (2015) network assembled from stock BindsNET classes only.

This is the reference the fused kernel (``stdp_bench.engine.kernel``) must match: for the
same input spikes, parameters and initial weights, ``kernel.present`` followed by
``kernel.normalize`` gives the excitatory spikes, X -> Ae weights and adaptive thresholds
that ``run_stock_presentation`` gives here (see tests/test_parity.py). Nothing in this
module is subclassed or patched; every setting of :class:`CellConfig` that the network
uses is mapped explicitly below.
"""

from __future__ import annotations

import torch
from bindsnet.network import Network
from bindsnet.network.monitors import Monitor
from bindsnet.network.nodes import Input, LIFNodes
from bindsnet.network.topology import Connection

from stdp_bench.config import CellConfig
from stdp_bench.levels import registry

# Name of the monitor of excitatory spikes that ``run_stock_presentation`` adds once.
_MONITOR = "Ae_spikes"


def build_stock_network(cfg: CellConfig, n_input: int, w: torch.Tensor) -> Network:
    """Diehl & Cook network for ``cfg`` with input weights ``w`` (n_input, n_neurons).

    Layers, in this order: ``X`` (``Input`` with traces), ``Ae`` (the excitatory layer of
    ``cfg.neuron``), ``Ai`` (``LIFNodes``); connections, in this order: X -> Ae (plastic,
    the rule level's ``stock_rule()``, clamped to [wmin, wmax], normalised to ``cfg.norm``
    per target neuron at the end of every ``run``), Ae -> Ai (one-to-one, ``cfg.exc``)
    and Ai -> Ae (all-but-self, ``-cfg.inh``). The order matters: ``Network.run`` updates
    layers and sums connection inputs in insertion order, as the kernel does.

    The ``teacher`` rule is plain ``PostPre`` here; its drive is passed to
    :func:`run_stock_presentation` as ``injects_v`` (stock BindsNET has no gating).
    """
    n = cfg.n_neurons
    if tuple(w.shape) != (n_input, n):
        raise ValueError(f"w has shape {tuple(w.shape)}; expected ({n_input}, {n})")
    net = Network(dt=cfg.dt)
    x_layer = Input(n=n_input, traces=True, tc_trace=cfg.tc_trace_ms)
    exc_layer = registry.module(registry.get("neuron", cfg.neuron)).stock_layer(cfg, n)
    inh_layer = LIFNodes(n=n, traces=False, rest=cfg.inh_rest_mv, reset=cfg.inh_reset_mv,
                         thresh=cfg.inh_thresh_mv, tc_decay=cfg.inh_tc_decay_ms,
                         refrac=int(cfg.inh_refrac_ms))
    net.add_layer(x_layer, name="X")
    net.add_layer(exc_layer, name="Ae")
    net.add_layer(inh_layer, name="Ai")

    input_exc = Connection(
        source=x_layer,
        target=exc_layer,
        w=w.detach().clone().float(),
        update_rule=registry.module(registry.get("rule", cfg.rule)).stock_rule(),
        nu=(cfg.nu_pre, cfg.nu_post),
        wmin=cfg.wmin,
        wmax=cfg.wmax,
        norm=cfg.norm,
    )
    eye = torch.eye(n)
    exc_inh = Connection(source=exc_layer, target=inh_layer, w=cfg.exc * eye,
                         wmin=0, wmax=cfg.exc)
    inh_exc = Connection(source=inh_layer, target=exc_layer,
                         w=-cfg.inh * (torch.ones(n, n) - eye), wmin=-cfg.inh, wmax=0)
    net.add_connection(input_exc, source="X", target="Ae")
    net.add_connection(exc_inh, source="Ae", target="Ai")
    net.add_connection(inh_exc, source="Ai", target="Ae")
    return net


def run_stock_presentation(net: Network, spikes: torch.Tensor, learning: bool,
                           injects_v: dict[str, torch.Tensor] | None = None
                           ) -> torch.Tensor:
    """Present one dense input spike train ``spikes`` [T, n_input] to ``net``.

    Runs ``net.run`` for T steps with plasticity (and threshold adaptation) on or off,
    then ``net.reset_state_variables()`` as BindsNET's ``eth_mnist`` example does between
    samples (voltages, traces and refractory counters reset; weights and ``theta`` kept).
    ``Network.run`` normalises the X -> Ae weights at the end of every run, learning or
    not. ``injects_v`` maps a layer name to a voltage added to it before every step.
    Returns the excitatory spikes as a [T, n_neurons] bool tensor.
    """
    T = int(spikes.shape[0])
    if _MONITOR not in net.monitors:
        net.add_monitor(Monitor(net.layers["Ae"], state_vars=["s"]), name=_MONITOR)
    monitor = net.monitors[_MONITOR]
    monitor.reset_state_variables()
    net.train(learning)
    # A copy: the Input layer keeps a view of its last input row as its spikes ``s``,
    # and ``reset_state_variables`` zeroes ``s`` in place, i.e. the caller's last row.
    inputs = {"X": spikes.detach().clone().to(torch.uint8).unsqueeze(1)}
    net.run(inputs=inputs, time=T * net.dt, injects_v=injects_v or {})
    s = monitor.get("s").view(T, -1).bool().clone()
    net.reset_state_variables()
    return s
