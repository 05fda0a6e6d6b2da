"""Convolutional and locally connected STDP layers as BindsNET networks.

``architecture = "conv"``: input -> ``Conv2dConnection`` (shared ``kernel_size`` x
``kernel_size`` filters, ``stride``) -> an excitatory layer of ``n_filters`` feature
maps. ``architecture = "local"``: the locally connected SNN of Saunders et al. (2019),
``LocalConnection`` (every location has its own ``n_filters`` filters). Both layers
have shape ``(n_filters, H, W)`` and the same competition:

* lateral inhibition between the feature maps at each location
  (:class:`LocationInhibition`, strength ``conv_inh``), as in Saunders et al.;
* at most ``winners`` maps spike per location and step (:class:`LocationWTANodes`: the
  ones furthest above threshold), the winner-take-all of Kheradpisheh et al.

The neurons are IF, LIF or adaptive-threshold LIF by the ``neuron`` factor, the
``X -> Ae`` connection is plastic under the ``rule`` factor (BindsNET's ``PostPre``,
``WeightDependentPostPre``, ``Hebbian``; ``none`` for the random-feature control; with
``conv_learning = "first_spike"`` the competitive first-spike form of that rule,
:mod:`stdp_bench.networks.first_spike`), and weights are normalised to a total of
``conv_norm`` per filter (conv) or per neuron (local).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from bindsnet.learning import LearningRule
from bindsnet.network import Network
from bindsnet.network.nodes import Input, Nodes
from bindsnet.network.topology import AbstractConnection, LocalConnection

from stdp_bench.cell_checks import integrate_and_fire_params
from stdp_bench.config import CellConfig
from stdp_bench.networks.first_spike import (ClaimingConv2dConnection, FirstSpikePostPre,
                                             ResetsRule)
from stdp_bench.levels import registry
from stdp_bench.seeding import global_rngs_seeded


def feature_shape(cfg: CellConfig, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(n_filters, H, W)`` of the excitatory layer for ``cfg`` on inputs of this shape
    (``(channels, height, width)``, or ``(height, width)``)."""
    h = (input_shape[-2] - cfg.kernel_size) // cfg.stride + 1
    w = (input_shape[-1] - cfg.kernel_size) // cfg.stride + 1
    if h < 1 or w < 1:
        raise ValueError(f"kernel_size = {cfg.kernel_size} does not fit "
                         f"{tuple(input_shape[-2:])} images")
    return cfg.n_filters, h, w


class LocationWTANodes(Nodes):
    """IF / LIF / adaptive LIF feature maps where at most ``winners`` maps spike per location.

    Among the maps at or above threshold at a location on a step, the ``winners`` with
    the largest ``v - threshold`` spike, are reset and (adaptive) raise their threshold;
    the others keep their voltage and are inhibited by the winners next step.
    """

    def __init__(self, shape: tuple[int, int, int], cfg: CellConfig, winners: int) -> None:
        super().__init__(shape=list(shape), traces=True, tc_trace=cfg.tc_trace_ms)
        p = integrate_and_fire_params(cfg)
        # The neuron level's own parameters: a level without "decay" does not leak, one
        # without "theta_plus" does not adapt.
        self.leaky = "decay" in p
        self.adaptive = "theta_plus" in p
        self.winners = winners
        self.thresh_v = p["thresh"]
        self.rest_v = p.get("rest", p["reset"])
        self.reset_v = p["reset"]
        self.refrac_t = float(p["refrac"])
        self.v_decay = p.get("decay", 1.0)
        self.theta_plus = p.get("theta_plus", 0.0)
        self.theta_decay = p.get("theta_decay", 1.0)
        self.v_init = self.rest_v
        self.register_buffer("theta", torch.zeros(*shape))
        self.register_buffer("v", torch.full((1, *shape), self.v_init))
        self.register_buffer("refrac_count", torch.zeros(1, *shape))

    def set_batch_size(self, batch_size) -> None:
        super().set_batch_size(batch_size=batch_size)
        self.v = torch.full((batch_size, *self.shape), self.v_init, device=self.s.device)
        self.refrac_count = torch.zeros_like(self.v)

    def reset_state_variables(self) -> None:
        super().reset_state_variables()
        self.v.fill_(self.v_init)
        self.refrac_count.zero_()

    def forward(self, x: torch.Tensor) -> None:
        """One step: leak, integrate, pick at most ``winners`` maps per location, reset."""
        if self.leaky:
            self.v = (self.v - self.rest_v) * self.v_decay + self.rest_v
        if self.adaptive and self.learning:
            self.theta *= self.theta_decay
        self.v = self.v + (self.refrac_count <= 0).float() * x
        self.refrac_count = self.refrac_count - self.dt
        thr = self.thresh_v + self.theta
        over = self.v >= thr
        if self.winners < self.shape[0] and bool(over.any()):
            margin = torch.where(over, self.v - thr, torch.full_like(self.v, -torch.inf))
            top = margin.topk(self.winners, dim=1).indices
            keep = torch.zeros_like(over).scatter_(1, top, True)
            over = over & keep
        self.s = over
        self.refrac_count = torch.where(over, torch.full_like(self.v, self.refrac_t),
                                        self.refrac_count)
        self.v = torch.where(over, torch.full_like(self.v, self.reset_v), self.v)
        if self.adaptive and self.learning:
            self.theta += self.theta_plus * over.float().sum(0)
        super().forward(x)


class LocationInhibition(AbstractConnection):
    """Each spike inhibits the other feature maps at its location by ``inh``.

    The same currents as a ``Connection`` whose weight is ``-inh`` between different
    maps at one location (Saunders et al.'s recurrent inhibition), without the dense
    ``n x n`` matrix.
    """

    def __init__(self, source: Nodes, target: Nodes, inh: float) -> None:
        super().__init__(source, target)
        self.inh = inh
        self.w = torch.nn.Parameter(torch.tensor(-inh), requires_grad=False)

    def compute(self, s: torch.Tensor) -> torch.Tensor:
        """Inhibitory currents ``[batch, F, H, W]``."""
        s = s.float()
        return -self.inh * (s.sum(1, keepdim=True) - s)

    def update(self, **kwargs) -> None:
        super().update(**kwargs)

    def normalize(self) -> None:
        """Fixed inhibition: nothing to normalise."""

    def reset_state_variables(self) -> None:
        super().reset_state_variables()


class BatchedLocalConnection(LocalConnection):
    """``LocalConnection`` whose ``compute`` keeps the batch dimension.

    BindsNET 0.3.4 reshapes the currents to the target's shape without the batch, which
    breaks a batched (frozen-weight) evaluation; training at batch 1 is unchanged.
    """

    def compute(self, s: torch.Tensor) -> torch.Tensor:
        """Currents ``[batch, *target.shape]``."""
        a_post = s.float().view(s.size(0), -1) @ self.w.view(self.source.n, self.target.n)
        return (a_post + self.b).view(s.size(0), *self.target.shape)


class EventLocalConnection(ResetsRule, BatchedLocalConnection):
    """``LocalConnection`` whose batch-1 currents add the weight rows of inputs that fired.

    Its learning rule (:class:`EventLocalPostPre`) touches only rows of inputs that fired
    and columns of neurons that fired and keeps the entries outside each neuron's field
    at zero itself, so the full-matrix mask fill of ``LocalConnection.update`` (784 x n
    every step) is skipped; with ``NoOp`` nothing changes and nothing is filled.
    """

    def compute(self, s: torch.Tensor) -> torch.Tensor:
        """Currents ``[batch, *target.shape]``; event-driven for one sample."""
        if s.size(0) != 1:
            return super().compute(s)
        rows = s.view(-1).nonzero().flatten()
        a_post = self.w.view(self.source.n, self.target.n)[rows].sum(0) + self.b
        return a_post.view(1, *self.target.shape)

    def update(self, **kwargs) -> None:
        """Apply the learning rule (it keeps the field mask on what it touches)."""
        if kwargs.get("learning", True):
            self.update_rule.update(**kwargs)

    def normalize(self) -> None:
        super().normalize()
        if isinstance(self.update_rule, EventLocalPostPre):
            self.update_rule.full_clamp = True


class EventLocalPostPre(LearningRule):
    """A rule level's torch twin on a ``LocalConnection`` at batch 1, event-driven.

    For the built-in rules these are the updates of BindsNET's ``PostPre`` /
    ``WeightDependentPostPre`` / ``Hebbian``, restricted to the rows of inputs that fired
    and the columns of neurons that fired (every other entry's update is zero), then the
    [wmin, wmax] clamp and the field mask on those entries; the first step after a
    normalisation clamps the whole matrix, as BindsNET's every-step clamp would
    (tests/test_conv.py compares it with the stock classes).
    """

    def __init__(self, connection: AbstractConnection, nu=None, reduction=None,
                 weight_decay: float = 0.0, rule_update: Callable | None = None,
                 rule_params: dict[str, float] | None = None,
                 **connection_kwargs) -> None:
        # BindsNET hands every keyword of the connection's constructor to its rule
        # (wmin, norm, ...); this rule reads those from the connection, not from here.
        super().__init__(connection=connection, nu=nu, reduction=reduction,
                         weight_decay=weight_decay)
        if rule_update is None or rule_params is None:
            raise ValueError("EventLocalPostPre needs the rule level's torch_update and "
                             "its parameters (kernel_params)")
        self.rule_update = rule_update
        self.params = {k: torch.tensor([float(v)]) for k, v in rule_params.items()}
        self.full_clamp = False

    def update(self, **kwargs) -> None:
        """One step at batch 1."""
        conn = self.connection
        w = conn.w.view(conn.source.n, conn.target.n)
        lo, hi = float(conn.wmin), float(conn.wmax)
        keep = ~conn.mask.view_as(w)
        if self.full_clamp:
            w.clamp_(lo, hi)
            self.full_clamp = False
        s_in = self.source.s.view(-1).bool()
        x_in = self.source.x.view(-1)
        s_out = self.target.s.view(-1).bool()
        x_out = self.target.x.view(-1)
        i = s_in.nonzero().flatten()
        j = s_out.nonzero().flatten()
        # The rule level's torch twin, on this matrix as the only replica (a view, so
        # it updates the connection's weights in place).
        p = {k: v.to(w.device) for k, v in self.params.items()}
        one = torch.zeros(1, dtype=torch.long, device=w.device)
        self.rule_update(p, w.unsqueeze(0), one, s_in.unsqueeze(0), x_in.unsqueeze(0),
                         s_out.unsqueeze(0), x_out.unsqueeze(0), None, one - 1, 1)
        w[i] = w[i].clamp(lo, hi) * keep[i]
        w[:, j] = w[:, j].clamp(lo, hi) * keep[:, j]


def build_feature_network(cfg: CellConfig, input_shape: tuple[int, int, int], seed: int,
                          device: str | torch.device = "cpu") -> Network:
    """The ``conv`` or ``local`` network of ``cfg`` on ``(channels, height, width)``
    inputs: layers ``X``, ``Ae``."""
    if cfg.architecture not in CONNECTIONS:
        raise ValueError(f"architecture {cfg.architecture!r} is not one of "
                         f"{', '.join(CONNECTIONS)}")
    # conv's weights come from torch's global generator, LocalConnection's from numpy's.
    with global_rngs_seeded(seed):
        return _build_feature_network(cfg, input_shape, device)


def _build_feature_network(cfg: CellConfig, input_shape: tuple[int, int, int],
                           device: str | torch.device) -> Network:
    shape = feature_shape(cfg, input_shape)
    net = Network(dt=cfg.dt)
    x = Input(shape=list(input_shape), traces=True, tc_trace=cfg.tc_trace_ms)
    ae = LocationWTANodes(shape, cfg, cfg.winners)
    net.add_layer(x, name="X")
    net.add_layer(ae, name="Ae")
    level = registry.get("rule", cfg.rule)
    module = registry.module(level)
    # A rule without a BindsNET class (multiplicative) only runs where the rule level's
    # own update replaces it below (the trainer refuses the rest); None is BindsNET's NoOp.
    stock = getattr(module, "stock_rule", None)
    common = dict(update_rule=stock() if stock is not None else None,
                  nu=(cfg.nu_pre, cfg.nu_post), wmin=cfg.wmin, wmax=cfg.wmax)
    # Our conv / local rules run the rule level's torch twin (its update, its numbers).
    ours = dict(rule_update=getattr(module, "torch_update", None),
                rule_params=module.kernel_params(cfg))
    first_spike = cfg.conv_learning == "first_spike" and level.plastic
    if first_spike:
        common.update(update_rule=FirstSpikePostPre, kwta=cfg.conv_kwta,
                      radius=cfg.conv_radius, **ours)
    # Every-spike learning on local layers: the rule level's twin, event-driven.
    event_rule = (dict(update_rule=EventLocalPostPre, **ours)
                  if level.plastic and not first_spike else {})
    conn = CONNECTIONS[cfg.architecture](cfg, x, ae, input_shape, common, event_rule)
    net.add_connection(conn, source="X", target="Ae")
    net.add_connection(LocationInhibition(ae, ae, cfg.conv_inh), source="Ae", target="Ae")
    net.to(device)
    conn.normalize()
    return net


def _conv_connection(cfg: CellConfig, x: Input, ae: Nodes, input_shape: tuple[int, int, int],
                     common: dict, event_rule: dict) -> AbstractConnection:
    """Shared kernels over all channels; every-spike learning is BindsNET's own rule class."""
    k = cfg.kernel_size
    w = cfg.w_init_max * torch.rand(cfg.n_filters, input_shape[0], k, k)
    return ClaimingConv2dConnection(x, ae, kernel_size=k, stride=cfg.stride, w=w,
                                    norm=cfg.conv_norm, **common)


def _local_connection(cfg: CellConfig, x: Input, ae: Nodes, input_shape: tuple[int, int, int],
                      common: dict, event_rule: dict) -> AbstractConnection:
    """One filter per place; every-spike learning is the event-driven rule twin."""
    common = {**common, **event_rule}
    k = cfg.kernel_size
    if input_shape[0] > 1:
        # LocalConnection lays out one channel's fields; give it every channel's.
        common["w"] = _local_weights(cfg, input_shape)
    # LocalConnection multiplies its norm by the kernel area (mean weight per input).
    conn = EventLocalConnection(x, ae, kernel_size=k, stride=cfg.stride,
                                n_filters=cfg.n_filters, input_shape=input_shape[1:],
                                norm=cfg.conv_norm / (k * k), **common)
    conn.w.data.mul_(cfg.w_init_max)
    return conn


def _local_weights(cfg: CellConfig, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """Initial ``[C * H * W, F * h * w]`` weights of a multi-channel local layer: uniform
    in [wmin, wmax] on each neuron's field in every channel, zero elsewhere (the field
    mask), as ``LocalConnection`` draws them for one channel (from numpy's generator)."""
    C, H, W = input_shape
    F, h, w = feature_shape(cfg, input_shape)
    k, s = cfg.kernel_size, cfg.stride
    field = (np.arange(C)[:, None, None] * H * W + np.arange(k)[None, :, None] * W
             + np.arange(k)[None, None, :]).ravel()  # offsets of a field's inputs
    corner = (np.arange(h)[:, None] * s * W + np.arange(w)[None, :] * s).ravel()
    weights = torch.zeros(C * H * W, F * h * w)
    rows = torch.from_numpy(corner[:, None] + field[None, :])  # [locations, C * k * k]
    for f in range(F):
        draw = torch.from_numpy(np.random.rand(h * w, C * k * k)).float()
        cols = torch.arange(f * h * w, (f + 1) * h * w)[:, None].expand_as(rows)
        weights[rows, cols] = cfg.wmin + draw * (cfg.wmax - cfg.wmin)
    return weights


def _filter_maps(w: torch.Tensor, channels: int, k: int) -> np.ndarray:
    """``[F, k, k]`` for one channel, else ``[F, channels, k, k]``."""
    out = w.reshape(-1, channels, k, k)
    return (out[:, 0] if channels == 1 else out).numpy()


def _conv_filters(conn: AbstractConnection, cfg: CellConfig,
                  input_shape: tuple[int, int, int]) -> np.ndarray:
    return _filter_maps(conn.w.detach().cpu(), input_shape[0], cfg.kernel_size)


def _local_filters(conn: AbstractConnection, cfg: CellConfig,
                   input_shape: tuple[int, int, int]) -> np.ndarray:
    k = cfg.kernel_size
    C, H_in, W_in = input_shape
    F, H, W = feature_shape(cfg, input_shape)
    c = (H // 2) * W + W // 2
    idx = conn.locations[:, c].cpu()  # the field in channel 0
    idx = (torch.arange(C)[:, None] * H_in * W_in + idx[None, :]).flatten()
    w = conn.w.detach().cpu().view(-1, F, H * W)[:, :, c]  # [n_input, F]
    return _filter_maps(w[idx].T, C, k)


# The feature architectures (levels of stdp_bench/levels/architectures.py).
CONNECTIONS = {"conv": _conv_connection, "local": _local_connection}
FILTERS = {"conv": _conv_filters, "local": _local_filters}


def filters_of(net: Network, cfg: CellConfig, input_shape: tuple[int, int, int]) -> np.ndarray:
    """Learned filters ``[n_filters, k, k]`` (``[n_filters, channels, k, k]`` for several
    channels): conv's kernels; local's at the central location."""
    return FILTERS[cfg.architecture](net.connections[("X", "Ae")], cfg, input_shape)
