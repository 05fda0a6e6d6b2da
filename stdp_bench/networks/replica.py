"""R independent Diehl & Cook networks as one BindsNET ``Network`` (torch; CPU or CUDA).

The batch dimension of every layer holds *replicas*, not samples of one network: row b
runs replica ``replica_index[b]`` with that replica's own parameters, weights, rule and
random stream. Stock BindsNET shares one weight matrix across the batch and sums the
updates (which is what lowered batched STDP's accuracy); the classes here give each row
its own weights instead:

* :class:`ReplicaInput` - ``Input`` with a per-row trace decay;
* :class:`ReplicaNodes` - IF, LIF and adaptive-threshold (Diehl & Cook) neurons, chosen
  per row, with per-row parameters and a per-row one-spike tie-break;
* :class:`ReplicaConnection` - weights ``[R, n_source, n_target]``, per-replica input
  gain and normalisation; event-driven ``compute`` (rows of sources that fired) on CPU;
* :class:`ReplicaPostPre` - pair STDP, weight-dependent STDP, Hebbian, teacher-gated STDP
  and ``none`` per replica, touching only rows of inputs and columns of neurons that fired.

The step order is ``Network.run``'s, so monitors, ``injects_v`` (the teacher drive) and
``reset_state_variables`` work as usual. ``tests/test_replica_network.py`` checks that
this network and the fused numba kernel give the same spikes and weights.

With plasticity off the batch can hold many samples of each replica (``bind`` with a
repeated ``replica_index``): that is batched evaluation.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from bindsnet.learning import LearningRule
from bindsnet.network import Network
from bindsnet.network.nodes import Input, Nodes
from bindsnet.network.topology import AbstractConnection

from stdp_bench.config import CellConfig
from stdp_bench.engine import kernel
from stdp_bench.engine.replicas import build_params

# splitmix64 constants as signed int64 (torch has no uint64 arithmetic).
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_M1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_M2 = 0x94D049BB133111EB - (1 << 64)

TieBreaker = Callable[[torch.Tensor], torch.Tensor]


def _decay(dt: float | torch.Tensor, tc: torch.Tensor) -> torch.Tensor:
    """Per-step decay in float32, as BindsNET computes its scalar decays."""
    return torch.exp(-torch.as_tensor(float(dt), device=tc.device) / tc)


def _lsr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _lsr(z, 30)) * _M1
    z = (z ^ _lsr(z, 27)) * _M2
    return z ^ _lsr(z, 31)


def counter_uniform(seed: torch.Tensor, a: torch.Tensor, b: int) -> torch.Tensor:
    """U[0, 1) from a per-row seed and two counters: stateless, so no row sees another's
    draws, and a draw depends only on (seed, a, b), never on the batch it ran in."""
    bt = torch.full_like(seed, b)
    z = _mix(_mix(_mix(seed * _GOLDEN + 1) ^ (a * _M1)) ^ (bt * _M2))
    return _lsr(z, 11).double() * (1.0 / 9007199254740992.0)


class ReplicaInput(Input):
    """BindsNET ``Input`` whose spike-trace decay is a per-row tensor."""

    def __init__(self, n: int, tc_trace: torch.Tensor, **kwargs) -> None:
        super().__init__(n=n, traces=True, **kwargs)
        self.register_buffer("tc_trace_r", tc_trace.float().clone())
        self.register_buffer("replica_index", torch.zeros(0, dtype=torch.long))

    def bind(self, replica_index: torch.Tensor) -> None:
        """Make row b run replica ``replica_index[b]``."""
        self.replica_index = replica_index
        self.set_batch_size(len(replica_index))
        self.trace_decay = _decay(self.dt, self.tc_trace_r)[replica_index].unsqueeze(1)


class ReplicaNodes(Nodes):
    """IF / LIF / Diehl & Cook adaptive neurons, one independent population per row.

    Parameters are tensors with one entry per replica (``bind`` gathers them per row).
    A row with ``leaky = 0`` integrates without leak (``IFNodes``); ``adaptive = 1`` adds
    the threshold ``theta`` (``DiehlAndCookNodes``; frozen when ``learning`` is off);
    ``one_spike = 1`` keeps one of several neurons that cross threshold on the same step,
    chosen uniformly by the row's own counter-based random stream (stock BindsNET calls
    ``torch.multinomial`` on the whole batch, which would couple the rows), or by
    ``tie_breaker`` when one is set (parity tests replay another engine's choices).
    ``drive`` is the teacher's per-step depolarisation (see :meth:`teacher_injection`).
    """

    PARAMS = ("thresh", "rest", "reset", "refrac", "decay", "theta_plus", "theta_decay",
              "leaky", "adaptive", "one_spike", "v_init")

    def __init__(self, n: int, params: dict[str, torch.Tensor], seeds: torch.Tensor,
                 traces: bool = True, tc_trace: torch.Tensor | None = None,
                 **kwargs) -> None:
        super().__init__(n=n, traces=traces, **kwargs)
        R = len(seeds)
        for name in self.PARAMS:
            self.register_buffer(f"{name}_r", params[name].float().clone())
        self.register_buffer("tc_trace_r", (tc_trace if tc_trace is not None
                                            else torch.full((R,), 20.0)).float().clone())
        self.register_buffer("seed_r", seeds.long().clone())
        self.register_buffer("theta_r", torch.zeros(R, n))
        self.register_buffer("replica_index", torch.arange(R))
        self.register_buffer("v", torch.zeros(R, n))
        self.register_buffer("refrac_count", torch.zeros(R, n))
        self.tie_breaker: TieBreaker | None = None
        # Per-row key of the current sample (set by the caller for every presentation),
        # so a tie-break draw depends only on (replica, sample key, step).
        self.register_buffer("draw_key", torch.zeros(R, dtype=torch.long))
        self.step_in_sample = 0
        self.any_one_spike = bool((params["one_spike"] > 0).any())

    def bind(self, replica_index: torch.Tensor) -> None:
        """Make row b run replica ``replica_index[b]`` (several rows may share one)."""
        self.replica_index = replica_index
        for name in self.PARAMS:
            setattr(self, name, getattr(self, f"{name}_r")[replica_index].unsqueeze(1))
        if self.traces:
            self.trace_decay = _decay(self.dt, self.tc_trace_r)[replica_index].unsqueeze(1)
        self.draw_key = torch.zeros(len(replica_index), dtype=torch.long,
                                    device=replica_index.device)
        self.set_batch_size(len(replica_index))

    def set_batch_size(self, batch_size) -> None:
        super().set_batch_size(batch_size=batch_size)
        self.v = torch.zeros(batch_size, *self.shape, device=self.s.device)
        self.refrac_count = torch.zeros_like(self.v)
        if getattr(self, "v_init", None) is not None and len(self.v_init) == batch_size:
            self.reset_state_variables()

    def reset_state_variables(self) -> None:
        super().reset_state_variables()
        self.v = self.v_init.expand_as(self.v).clone()
        self.refrac_count.zero_()
        self.step_in_sample = 0

    @property
    def theta(self) -> torch.Tensor:
        """Adaptive thresholds of the bound rows ``[batch, n]``."""
        return self.theta_r[self.replica_index]

    def forward(self, x: torch.Tensor) -> None:
        """One step, in ``DiehlAndCookNodes.forward``'s order."""
        rows = self.replica_index
        leaky = self.leaky > 0
        self.v = torch.where(leaky, (self.v - self.rest) * self.decay + self.rest, self.v)
        # theta is per replica; only a one-row-per-replica batch may change it (training).
        theta = self.theta_r[rows]
        if self.learning:
            theta = theta * self.theta_decay
        self.v = self.v + (self.refrac_count <= 0).float() * x
        self.refrac_count = self.refrac_count - self.dt
        s = self.v >= self.thresh + theta
        self.refrac_count = torch.where(s, self.refrac.expand_as(s), self.refrac_count)
        self.v = torch.where(s, self.reset.expand_as(s), self.v)
        if self.learning:
            # Non-adaptive rows have theta_plus = 0, so their theta stays 0.
            self.theta_r[rows] = theta + self.theta_plus * s.float()
        self.s = self._one_spike(s) if self.any_one_spike else s
        self.step_in_sample += 1
        super().forward(x)

    def _one_spike(self, s: torch.Tensor) -> torch.Tensor:
        nfire = s.sum(1)
        multi = (self.one_spike[:, 0] > 0) & (nfire > 1)
        if self.tie_breaker is not None:
            keep = self.tie_breaker(s & multi.unsqueeze(1))
        else:
            u = counter_uniform(self.seed_r[self.replica_index], self.draw_key,
                                self.step_in_sample)
            # u < 1, so the pick is a valid rank among the row's spiking neurons.
            pick = (u * nfire.double()).long()
            rank = torch.cumsum(s.long(), 1) - 1
            keep = (s & (rank == pick.unsqueeze(1))).float().argmax(1)
        one = torch.zeros_like(s)
        one[torch.arange(len(s), device=s.device), keep] = True
        return torch.where(multi.unsqueeze(1), one, s)

    def teacher_injection(self, labels: torch.Tensor, drive: torch.Tensor,
                          n_classes: int) -> torch.Tensor:
        """``[batch, n]`` voltage to inject each step: ``drive`` on the label's neurons."""
        cls = torch.arange(self.n, device=labels.device) % n_classes
        return (cls.unsqueeze(0) == labels.unsqueeze(1)).float() * drive.unsqueeze(1)


class ReplicaConnection(AbstractConnection):
    """Per-replica weights ``w[R, n_source, n_target]``; row b uses ``w[replica_index[b]]``.

    ``gain`` scales each replica's currents (the encoder's input gain), ``norm`` is each
    replica's total input per target neuron (``normalize``), ``wmin``/``wmax`` bound the
    weights. ``event_driven`` sums the weight rows of sources that fired (CPU); otherwise
    a batched matrix product (GPU).
    """

    def __init__(self, source: Nodes, target: Nodes, w: torch.Tensor,
                 gain: torch.Tensor | None = None, norm: torch.Tensor | None = None,
                 event_driven: bool = True, **kwargs) -> None:
        super().__init__(source, target, **kwargs)
        self.w = torch.nn.Parameter(w.float().clone(), requires_grad=False)
        R = w.shape[0]
        self.register_buffer("gain", (gain if gain is not None else torch.ones(R)).float())
        self.register_buffer("norm_r", norm.float() if norm is not None else None)
        self.register_buffer("replica_index", torch.arange(R))
        # Replicas whose weights overflowed at a normalisation (the cell diverged).
        self.register_buffer("nonfinite", torch.zeros(R, dtype=torch.bool))
        self.event_driven = event_driven
        self.one_row_per_replica = True

    def bind(self, replica_index: torch.Tensor) -> None:
        """Make row b use replica ``replica_index[b]``'s weights."""
        self.replica_index = replica_index
        self.one_row_per_replica = len(torch.unique(replica_index)) == len(replica_index)

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
        """Apply the learning rule (BindsNET calls this once per step)."""
        super().update(**kwargs)

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
        if isinstance(self.update_rule, ReplicaPostPre):
            self.update_rule.full_clamp[r] = True

    def reset_state_variables(self) -> None:
        super().reset_state_variables()


class ReplicaPostPre(LearningRule):
    """Pair STDP and its variants with per-replica rule and coefficients.

    ``code[r]`` is a ``kernel.RULE_*`` value. Updates touch rows of inputs that fired
    (depression or Hebbian potentiation, scaled by the target trace) and columns of
    neurons that fired (potentiation by the source trace); ``teacher`` rows learn only in
    the columns of the sample's class (``labels``, set per sample). Weights stay in
    ``[wmin, wmax]``: BindsNET clamps the whole matrix every step, which after the first
    step of a presentation only changes the entries the rule touched.
    """

    def __init__(self, connection: AbstractConnection, code: torch.Tensor,
                 nu_pre: torch.Tensor, nu_post: torch.Tensor, wmin: torch.Tensor,
                 wmax: torch.Tensor, n_classes: int, **kwargs) -> None:
        kwargs.pop("nu", None)
        super().__init__(connection=connection, nu=(1.0, 1.0), **kwargs)
        self.code = code.long()
        self.nu_pre = nu_pre.float()
        self.nu_post = nu_post.float()
        self.wmin_r = wmin.float()
        self.wmax_r = wmax.float()
        self.n_classes = n_classes
        self.labels = torch.full_like(self.code, -1)
        # Replicas whose next plastic step must clamp all of W (set by normalisation).
        self.full_clamp = torch.zeros_like(self.code, dtype=torch.bool)

    def to(self, device: torch.device) -> "ReplicaPostPre":
        for name in ("code", "nu_pre", "nu_post", "wmin_r", "wmax_r", "labels", "full_clamp"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def _clamp(self, w: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        lo = self.wmin_r[r].view(-1, *([1] * (w.dim() - 1)))
        hi = self.wmax_r[r].view(-1, *([1] * (w.dim() - 1)))
        return torch.minimum(torch.maximum(w, lo), hi)

    def update(self, **kwargs) -> None:
        """One step of every replica's rule (rows = replicas; learning must be per replica)."""
        W = self.connection.w
        rows = self.connection.replica_index
        if not self.connection.one_row_per_replica:
            raise RuntimeError("plasticity needs one batch row per replica")
        code = self.code[rows]
        plastic = code != kernel.RULE_NONE
        if not bool(plastic.any()):
            return
        clamp_now = rows[plastic & self.full_clamp[rows]]
        if len(clamp_now):
            W[clamp_now] = self._clamp(W[clamp_now], clamp_now)
            self.full_clamp[clamp_now] = False
        s_in = self.source.s.view(len(rows), -1)
        x_in = self.source.x.view(len(rows), -1)
        s_out = self.target.s.view(len(rows), -1)
        x_out = self.target.x.view(len(rows), -1)
        n = s_out.shape[1]
        # Columns a replica may change: all, or the labelled class's for the teacher.
        cls = torch.arange(n, device=W.device) % self.n_classes
        teach = code == kernel.RULE_TEACHER
        allowed = ~teach.unsqueeze(1) | (cls.unsqueeze(0) == self.labels[rows].unsqueeze(1))
        s_in = s_in & plastic.unsqueeze(1)
        s_out = s_out & plastic.unsqueeze(1) & allowed

        wd = code == kernel.RULE_WEIGHT_DEPENDENT
        b, i = s_in.nonzero(as_tuple=True)
        r = rows[b]
        if len(b):
            w = W[r, i]  # [k, n]
            nu_pre = self.nu_pre[r].unsqueeze(1)
            nu_post = self.nu_post[r].unsqueeze(1)
            # Weight-dependent: both terms from the weights before this step's update.
            upd_wd = -((nu_pre * x_out[b]) * (w - self.wmin_r[r].unsqueeze(1)))
            upd_wd = torch.where(s_out[b], upd_wd + (nu_post * x_in[b, i].unsqueeze(1))
                                 * (self.wmax_r[r].unsqueeze(1) - w), upd_wd)
            sign = torch.where(code[b] == kernel.RULE_HEBBIAN, 1.0, -1.0).unsqueeze(1)
            upd_pp = torch.where(allowed[b] & (nu_pre != 0), sign * (x_out[b] * nu_pre),
                                 torch.zeros_like(w))
            W[r, i] = torch.where(wd[b].unsqueeze(1), w + upd_wd, w + upd_pp)
        b2, j = s_out.nonzero(as_tuple=True)
        r2 = rows[b2]
        if len(b2):
            w = W[r2, :, j]  # [k, n_in]
            xin = x_in[b2]
            nu_post = self.nu_post[r2].unsqueeze(1)
            fired = s_in[b2].bool()
            new_wd = torch.where(fired, w, w + (nu_post * xin)
                                 * (self.wmax_r[r2].unsqueeze(1) - w))
            new_pp = torch.where(nu_post != 0, w + xin * nu_post, w)
            W[r2, :, j] = torch.where(wd[b2].unsqueeze(1), new_wd, new_pp)
        if len(b):
            W[r, i] = self._clamp(W[r, i], r)
        if len(b2):
            W[r2, :, j] = self._clamp(W[r2, :, j], r2)


def _layer_params(P: np.ndarray, IP: np.ndarray, inhibitory: bool) -> dict[str, torch.Tensor]:
    """Per-replica neuron parameters of one layer, read from the kernel's parameter rows
    (``engine.replicas.build_params``), so both engines map a ``CellConfig`` one way."""
    def col(j: int) -> torch.Tensor:
        return torch.from_numpy(P[:, j].copy())

    def icol(j: int) -> torch.Tensor:
        return torch.from_numpy(IP[:, j].astype(np.float32))

    if inhibitory:
        zeros, ones = torch.zeros(len(P)), torch.ones(len(P))
        return {"thresh": col(kernel.F_ITHRESH), "rest": col(kernel.F_IREST),
                "reset": col(kernel.F_IRESET), "refrac": col(kernel.F_IREFRAC),
                "decay": col(kernel.F_IDECAY), "theta_plus": zeros, "theta_decay": ones,
                "leaky": ones, "adaptive": zeros, "one_spike": zeros,
                "v_init": col(kernel.F_IREST)}
    adaptive = icol(kernel.I_ADAPTIVE)
    return {"thresh": col(kernel.F_THRESH), "rest": col(kernel.F_REST),
            "reset": col(kernel.F_RESET), "refrac": col(kernel.F_REFRAC),
            "decay": col(kernel.F_DECAY),
            # Non-adaptive rows never raise theta.
            "theta_plus": col(kernel.F_THETA_PLUS) * adaptive,
            "theta_decay": col(kernel.F_THETA_DECAY), "leaky": icol(kernel.I_LEAKY),
            "adaptive": adaptive, "one_spike": icol(kernel.I_ONE_SPIKE),
            "v_init": col(kernel.F_VINIT)}


def build_replica_network(cfgs: Sequence[CellConfig], n_input: int, w0: torch.Tensor,
                          gains: Sequence[float], n_classes: int, seeds: Sequence[int],
                          device: str | torch.device = "cpu",
                          event_driven: bool | None = None) -> Network:
    """R Diehl & Cook networks (``cfgs[r]``, input weights ``w0[r]``) as one ``Network``.

    Layers ``X``, ``Ae``, ``Ai`` and connections X -> Ae (plastic), Ae -> Ai, Ai -> Ae in
    stock ``DiehlAndCook2015``'s roles and ``Network.run``'s order, with one batch row per
    replica. ``seeds[r]`` seeds replica r's one-spike tie-breaks.
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
    P, IP = build_params(cfgs, list(gains), n_classes)
    tc_trace = torch.tensor([c.tc_trace_ms for c in cfgs])
    seed_t = torch.tensor(list(seeds), dtype=torch.long)
    net = Network(dt=cfgs[0].dt, batch_size=R)
    x = ReplicaInput(n_input, tc_trace=tc_trace)
    ae = ReplicaNodes(n, _layer_params(P, IP, False), seed_t, traces=True, tc_trace=tc_trace)
    ai = ReplicaNodes(n, _layer_params(P, IP, True), seed_t, traces=False)
    net.add_layer(x, name="X")
    net.add_layer(ae, name="Ae")
    net.add_layer(ai, name="Ai")

    def col(j: int) -> torch.Tensor:
        return torch.from_numpy(P[:, j].copy())

    eye = torch.eye(n)
    x_ae = ReplicaConnection(
        x, ae, w0, gain=col(kernel.F_GAIN), norm=col(kernel.F_NORM),
        event_driven=event_driven, update_rule=ReplicaPostPre,
        code=torch.from_numpy(IP[:, kernel.I_RULE].copy()),
        nu_pre=col(kernel.F_NU_PRE), nu_post=col(kernel.F_NU_POST),
        wmin=col(kernel.F_WMIN), wmax=col(kernel.F_WMAX), n_classes=n_classes)
    ae_ai = ReplicaConnection(ae, ai, col(kernel.F_EXC).view(R, 1, 1) * eye,
                              event_driven=event_driven)
    ai_ae = ReplicaConnection(ai, ae, -col(kernel.F_INH).view(R, 1, 1) * (1 - eye),
                              event_driven=event_driven)
    net.add_connection(x_ae, source="X", target="Ae")
    net.add_connection(ae_ai, source="Ae", target="Ai")
    net.add_connection(ai_ae, source="Ai", target="Ae")
    net.to(device)
    x_ae.update_rule.to(device)
    bind_replicas(net, torch.arange(R, device=device))
    return net


def bind_replicas(net: Network, replica_index: torch.Tensor) -> None:
    """Make batch row b of every layer and connection run replica ``replica_index[b]``."""
    net.batch_size = len(replica_index)
    for layer in net.layers.values():
        if isinstance(layer, (ReplicaNodes, ReplicaInput)):
            if isinstance(layer, ReplicaInput):
                layer.set_batch_size(len(replica_index))
            layer.bind(replica_index)
    for conn in net.connections.values():
        if isinstance(conn, ReplicaConnection):
            conn.bind(replica_index)
    for mon in net.monitors.values():
        mon.reset_state_variables()
