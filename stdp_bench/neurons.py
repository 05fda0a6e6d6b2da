"""Excitatory neuron models: one registry line per level of the ``neuron`` factor."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from bindsnet.network.nodes import DiehlAndCookNodes, IFNodes, LIFNodes, Nodes

from stdp_bench.config import CellConfig


@dataclass(frozen=True)
class NeuronModel:
    """How a level maps onto the fused kernel and onto stock BindsNET nodes."""

    leaky: bool  # membrane decays to rest (False: IF integrates without leak)
    adaptive: bool  # Diehl & Cook adaptive threshold theta
    stock_class: type[Nodes]


NEURONS: dict[str, NeuronModel] = {
    "if": NeuronModel(leaky=False, adaptive=False, stock_class=IFNodes),
    "lif": NeuronModel(leaky=True, adaptive=False, stock_class=LIFNodes),
    "adaptive": NeuronModel(leaky=True, adaptive=True, stock_class=DiehlAndCookNodes),
}


def decay(dt: float, tc: float) -> float:
    """Per-step decay factor computed exactly as BindsNET does (float32 torch ops)."""
    return float(torch.exp(-torch.tensor(dt) / torch.tensor(tc)))


def stock_excitatory_layer(cfg: CellConfig, n: int) -> Nodes:
    """The stock BindsNET excitatory layer for ``cfg`` (parity tests and benchmarks)."""
    common = dict(n=n, traces=True, tc_trace=cfg.tc_trace_ms, thresh=cfg.thresh_mv,
                  reset=cfg.reset_mv, refrac=int(cfg.refrac_ms))
    if cfg.neuron == "if":
        return IFNodes(**common)
    if cfg.neuron == "lif":
        return LIFNodes(rest=cfg.rest_mv, tc_decay=cfg.tc_decay_ms, **common)
    if cfg.neuron == "adaptive":
        return DiehlAndCookNodes(rest=cfg.rest_mv, tc_decay=cfg.tc_decay_ms,
                                 theta_plus=cfg.theta_plus,
                                 tc_theta_decay=cfg.tc_theta_decay_ms,
                                 one_spike=cfg.one_spike, **common)
    raise ValueError(f"unknown neuron '{cfg.neuron}'; allowed: {', '.join(NEURONS)}")


def stock_inhibitory_layer(cfg: CellConfig, n: int) -> LIFNodes:
    """The Diehl & Cook inhibitory layer as stock BindsNET ``LIFNodes``."""
    return LIFNodes(n=n, traces=False, rest=cfg.inh_rest_mv, reset=cfg.inh_reset_mv,
                    thresh=cfg.inh_thresh_mv, tc_decay=cfg.inh_tc_decay_ms,
                    refrac=int(cfg.inh_refrac_ms))
