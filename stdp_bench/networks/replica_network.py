"""R independent Diehl & Cook networks as one BindsNET ``Network`` (torch; CPU or CUDA).

The batch dimension of every layer holds *replicas*, not samples of one network: row b
runs replica ``replica_index[b]`` with that replica's own levels, parameters, weights and
random draws. Stock BindsNET shares one weight matrix across the batch and sums the
updates (which is what lowered batched STDP's accuracy); the classes here give each row
its own weights instead:

* :class:`~stdp_bench.networks.replica_layers.ReplicaInput` - ``Input`` with a per-row
  trace decay, and :class:`~stdp_bench.networks.replica_layers.ReplicaNodes` - neurons of
  any registered neuron level with a torch twin, per row (their own module);
* :class:`ReplicaConnection` - weights ``[R, n_source, n_target]``, per-replica input
  gain and normalisation; event-driven ``compute`` (rows of sources that fired) on CPU;
* :class:`ReplicaRule` - every replica's rule level (its ``torch_update``), touching
  only rows of inputs and columns of neurons that fired, then the [wmin, wmax] clamp.

The dynamics live in the level modules (:mod:`stdp_bench.levels`), next to the fused
kernel's steps; this module only wires them to BindsNET's layers and rows. The step
order is ``Network.run``'s, so monitors, ``injects_v`` (the teacher drive) and
``reset_state_variables`` work as usual. ``tests/test_replica_network.py`` checks that
this network and the fused kernel give the same spikes and weights.

With plasticity off the batch can hold many samples of each replica (``bind`` with a
repeated ``replica_index``): that is batched evaluation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from bindsnet.learning import LearningRule
from bindsnet.network import Network
from bindsnet.network.nodes import Nodes
from bindsnet.network.topology import AbstractConnection

from stdp_bench.config import CellConfig
from stdp_bench.levels import registry
from stdp_bench.levels.spec import Level
from stdp_bench.networks.replica_layers import (LevelGroups, ReplicaInput, ReplicaNodes,
                                                put_rows, take_rows, torch_module)
from stdp_bench.replica_params import network_record


class ReplicaConnection(AbstractConnection):
    """Per-replica weights ``w[R, n_source, n_target]``; row b uses ``w[replica_index[b]]``.

    ``gain`` scales each replica's currents (the encoder's input gain), ``norm`` is each
    replica's total input per target neuron (``normalize``). ``event_driven`` sums the
    weight rows of sources that fired (CPU); otherwise a batched matrix product (GPU).
    """

    def __init__(self, source: Nodes, target: Nodes, w: torch.Tensor,
                 gain: torch.Tensor | None = None, norm: torch.Tensor | None = None,
                 event_driven: bool = True, rule: "ReplicaRule | None" = None) -> None:
        super().__init__(source, target)
        self.w = torch.nn.Parameter(w.float().clone(), requires_grad=False)
        R = w.shape[0]
        self.register_buffer("gain", (gain if gain is not None else torch.ones(R)).float())
        self.register_buffer("norm_r", norm.float() if norm is not None else None)
        self.register_buffer("replica_index", torch.arange(R))
        # Replicas whose weights overflowed at a normalisation (the cell diverged).
        self.register_buffer("nonfinite", torch.zeros(R, dtype=torch.bool))
        self.event_driven = event_driven
        self.one_row_per_replica = True
        self.rule = rule

    def bind(self, replica_index: torch.Tensor) -> None:
        """Make row b use replica ``replica_index[b]``'s weights."""
        self.replica_index = replica_index
        self.one_row_per_replica = len(torch.unique(replica_index)) == len(replica_index)
        if self.rule is not None:
            self.rule.bind(replica_index)

    def compute(self, s: torch.Tensor) -> torch.Tensor:
        """Currents ``[batch, n_target]`` from the source's spikes ``s`` ``[batch, n_source]``."""
        rows = self.replica_index
        if self.event_driven:
            b, i = s.view(len(s), -1).nonzero(as_tuple=True)
            out = torch.zeros(len(s), self.w.shape[2], device=self.w.device)
            out.index_add_(0, b, self.w[rows[b], i])
        else:
            out = torch.bmm(s.view(len(s), 1, -1).float(), self.w[rows]).squeeze(1)
        g = self.gain[rows].unsqueeze(1)
        return torch.where(g != 1.0, out * g, out)

    def update(self, **kwargs) -> None:
        """Apply the replicas' rules (``Network.run`` calls this once per step).

        ``Network.run`` passes ``learning`` and ``mask``; these weights are never masked.
        """
        if kwargs.get("learning", True) and self.rule is not None:
            self.rule.update()

    def normalize(self) -> None:
        """Scale each replica's input weights per target neuron to sum ``norm``.

        Only after a presentation with plasticity on (``Network.run`` calls this after
        every run): frozen weights already have the norm, and rescaling them anyway
        would move them by rounding during evaluation.
        """
        if self.norm_r is None or not self.training:
            return
        r = self.replica_index
        w = self.w[r]
        sums = w.abs().sum(1, keepdim=True)
        # An infinite column sum would scale the column to zero and hide the blow-up.
        self.nonfinite[r] |= ~torch.isfinite(sums).all(2).all(1)
        sums = torch.where(sums == 0, torch.ones_like(sums), sums)
        self.w[r] = w * (self.norm_r[r].view(-1, 1, 1) / sums)
        if self.rule is not None:
            self.rule.full_clamp[r] = True

    def reset_state_variables(self) -> None:
        super().reset_state_variables()
        if self.rule is not None:
            self.rule.reset_traces()


class ReplicaRule(LearningRule):
    """Every replica's rule level on a :class:`ReplicaConnection`.

    Each level's ``torch_update`` changes its replicas' weights; then the weights it may
    have touched (rows of inputs that fired, columns of neurons that fired) are clamped
    to ``[wmin, wmax]``. BindsNET clamps the whole matrix every step, which after the
    first step of a presentation only changes those entries; the first plastic step
    after a normalisation clamps all of W (``full_clamp``). ``labels`` (per replica, set
    per sample) are what supervised levels learn from.
    """

    def __init__(self, connection: ReplicaConnection, levels: Sequence[Level],
                 params: Sequence[dict[str, float]], wmin: torch.Tensor, wmax: torch.Tensor,
                 n_classes: int) -> None:
        super().__init__(connection=connection, nu=(1.0, 1.0))
        self.modules_ = {lv.name: torch_module(lv, "torch_update") for lv in levels}
        self.groups = LevelGroups(levels, params)
        self.plastic = torch.tensor([lv.plastic for lv in levels])
        self.wmin_r = wmin.float()
        self.wmax_r = wmax.float()
        self.n_classes = n_classes
        R = len(levels)
        self.labels = torch.full((R,), -1, dtype=torch.long)
        # Replicas whose next plastic step must clamp all of W: fresh weights may lie
        # outside the bounds, and normalisation can move them out.
        self.full_clamp = torch.ones(R, dtype=torch.bool)
        self.n_aux = max(len(lv.traces) for lv in levels)
        self.aux: torch.Tensor | None = None
        self.selected = self.groups.select(torch.arange(R))

    def to(self, device: torch.device) -> "ReplicaRule":
        for name in ("plastic", "wmin_r", "wmax_r", "labels", "full_clamp"):
            setattr(self, name, getattr(self, name).to(device))
        self.groups.to(device)
        self.selected = self.groups.select(self.connection.replica_index.to(device))
        return self

    def bind(self, replica_index: torch.Tensor) -> None:
        """Follow the connection's rows."""
        self.selected = self.groups.select(replica_index)
        self.aux = None

    def reset_traces(self) -> None:
        """Forget the rules' own traces (start of a presentation)."""
        self.aux = None

    def injection(self, labels: torch.Tensor, n: int) -> torch.Tensor | None:
        """``[batch, n]`` voltage supervised levels inject each step, or None."""
        out = None
        for level, rows, p in self.selected:
            if not level.supervised:
                continue
            drive = self.modules_[level.name].torch_drive(p, take_rows(labels, rows), n,
                                                          self.n_classes)
            base = out if out is not None else torch.zeros(len(labels), n,
                                                           device=labels.device)
            out = put_rows(base, rows, drive)
        return out

    def _clamp(self, w: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        lo = self.wmin_r[r].view(-1, *([1] * (w.dim() - 1)))
        hi = self.wmax_r[r].view(-1, *([1] * (w.dim() - 1)))
        return torch.minimum(torch.maximum(w, lo), hi)

    def update(self) -> None:
        """One step of every replica's rule (rows = replicas; learning must be per replica)."""
        conn = self.connection
        W = conn.w
        rows = conn.replica_index
        if not conn.one_row_per_replica:
            raise RuntimeError("plasticity needs one batch row per replica")
        plastic = self.plastic[rows]
        if not bool(plastic.any()):
            return
        clamp_now = rows[plastic & self.full_clamp[rows]]
        if len(clamp_now):
            W[clamp_now] = self._clamp(W[clamp_now], clamp_now)
            self.full_clamp[clamp_now] = False
        B = len(rows)
        s_in = self.source.s.view(B, -1).bool() & plastic.unsqueeze(1)
        x_in = self.source.x.view(B, -1)
        s_out = self.target.s.view(B, -1) & plastic.unsqueeze(1)
        x_out = self.target.x.view(B, -1)
        if self.aux is None and self.n_aux:
            self.aux = torch.zeros(B, self.n_aux, s_out.shape[1], device=W.device)
        labels = self.labels[rows]
        for level, sel, p in self.selected:
            if not level.plastic:
                continue
            # The level's own traces, which its update changes in place.
            aux = None if self.aux is None else take_rows(self.aux, sel)
            self.modules_[level.name].torch_update(
                p, W, take_rows(rows, sel), take_rows(s_in, sel), take_rows(x_in, sel),
                take_rows(s_out, sel), take_rows(x_out, sel), aux, take_rows(labels, sel),
                self.n_classes)
            if aux is not None and sel is not None:
                self.aux[sel] = aux
        b, i = s_in.nonzero(as_tuple=True)
        if len(b):
            r = rows[b]
            W[r, i] = self._clamp(W[r, i], r)
        b2, j = s_out.nonzero(as_tuple=True)
        if len(b2):
            r2 = rows[b2]
            W[r2, :, j] = self._clamp(W[r2, :, j], r2)


def _inhibitory_params(net: np.ndarray) -> dict[str, float]:
    """The inhibitory layer as LIF neurons (the ``lif`` level's parameters)."""
    return {"thresh": float(net["ithresh"]), "rest": float(net["irest"]),
            "reset": float(net["ireset"]), "refrac": float(net["irefrac"]),
            "decay": float(net["idecay"]), "dt": float(net["dt"])}


def build_replica_network(cfgs: Sequence[CellConfig], n_input: int, w0: torch.Tensor,
                          gains: Sequence[float], n_classes: int,
                          device: str | torch.device = "cpu",
                          event_driven: bool | None = None) -> Network:
    """R Diehl & Cook networks (``cfgs[r]``, input weights ``w0[r]``) as one ``Network``.

    Layers ``X``, ``Ae``, ``Ai`` and connections X -> Ae (plastic), Ae -> Ai, Ai -> Ae in
    stock ``DiehlAndCook2015``'s roles and ``Network.run``'s order, with one batch row per
    replica.
    """
    device = torch.device(device)
    if event_driven is None:
        event_driven = device.type == "cpu"
    cfgs = list(cfgs)
    R, n = len(cfgs), cfgs[0].n_neurons
    if len({(c.n_neurons, c.dt) for c in cfgs}) != 1:
        raise ValueError("replicas must share n_neurons and dt")
    if tuple(w0.shape) != (R, n_input, n):
        raise ValueError(f"w0 has shape {tuple(w0.shape)}; expected ({R}, {n_input}, {n})")
    nets = [network_record(c, g, n_classes)[0] for c, g in zip(cfgs, gains)]

    def col(name: str) -> torch.Tensor:
        return torch.tensor([float(p[name]) for p in nets], dtype=torch.float32)

    neurons = [registry.get("neuron", c.neuron) for c in cfgs]
    rules = [registry.get("rule", c.rule) for c in cfgs]
    tc_trace = torch.tensor([c.tc_trace_ms for c in cfgs])
    net = Network(dt=cfgs[0].dt, batch_size=R)
    x = ReplicaInput(n_input, tc_trace=tc_trace)
    ae = ReplicaNodes(n, neurons,
                      [registry.module(lv).kernel_params(c) for lv, c in zip(neurons, cfgs)],
                      one_spike=col("one_spike") > 0, traces=True, tc_trace=tc_trace)
    lif = registry.get("neuron", "lif")
    ai = ReplicaNodes(n, [lif] * R, [_inhibitory_params(p) for p in nets],
                      one_spike=torch.zeros(R, dtype=torch.bool), traces=False)
    net.add_layer(x, name="X")
    net.add_layer(ae, name="Ae")
    net.add_layer(ai, name="Ai")
    eye = torch.eye(n)
    x_ae = ReplicaConnection(x, ae, w0, gain=col("gain"), norm=col("norm"),
                             event_driven=event_driven)
    x_ae.rule = ReplicaRule(x_ae, rules,
                            [registry.module(lv).kernel_params(c) for lv, c in zip(rules, cfgs)],
                            wmin=col("wmin"), wmax=col("wmax"), n_classes=n_classes)
    ae_ai = ReplicaConnection(ae, ai, col("exc").view(R, 1, 1) * eye,
                              event_driven=event_driven)
    ai_ae = ReplicaConnection(ai, ae, -col("inh").view(R, 1, 1) * (1 - eye),
                              event_driven=event_driven)
    net.add_connection(x_ae, source="X", target="Ae")
    net.add_connection(ae_ai, source="Ae", target="Ai")
    net.add_connection(ai_ae, source="Ai", target="Ae")
    net.to(device)
    ae.to_device(device)
    ai.to_device(device)
    x_ae.rule.to(device)
    bind_replicas(net, torch.arange(R, device=device))
    return net


def bind_replicas(net: Network, replica_index: torch.Tensor) -> None:
    """Make batch row b of every layer and connection run replica ``replica_index[b]``."""
    net.batch_size = len(replica_index)
    for layer in net.layers.values():
        if isinstance(layer, (ReplicaNodes, ReplicaInput)):
            layer.bind(replica_index)
    for conn in net.connections.values():
        if isinstance(conn, ReplicaConnection):
            conn.bind(replica_index)
    for mon in net.monitors.values():
        mon.reset_state_variables()
