"""R independent Diehl & Cook networks trained together by the fused kernel."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from stdp_bench.config import CellConfig
from stdp_bench.encoders import ENCODERS
from stdp_bench.engine import kernel
from stdp_bench.neurons import NEURONS, decay
from stdp_bench.rules import RULES

# Spike events kept per evaluated sample for the n-gram readout.
EVENT_CAP = 256


def replica_seed(cfg: CellConfig) -> int:
    """63-bit seed of a cell's weights and spike draws, from its id and seed factor."""
    digest = hashlib.sha256(f"{cfg.cell_id()}:{cfg.seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def build_params(cfgs: list[CellConfig], gains: list[float], n_classes: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-replica parameter rows ``P`` (float32) and ``IP`` (int64) for the kernel."""
    R = len(cfgs)
    P = np.zeros((R, kernel.N_FLOAT), dtype=np.float32)
    IP = np.zeros((R, kernel.N_INT), dtype=np.int64)
    for r, (c, gain) in enumerate(zip(cfgs, gains)):
        model = NEURONS[c.neuron]
        P[r, kernel.F_RATE] = c.intensity_hz
        P[r, kernel.F_GAIN] = gain
        P[r, kernel.F_THRESH] = c.thresh_mv
        P[r, kernel.F_REST] = c.rest_mv
        P[r, kernel.F_RESET] = c.reset_mv
        P[r, kernel.F_REFRAC] = c.refrac_ms
        P[r, kernel.F_DECAY] = decay(c.dt, c.tc_decay_ms)
        P[r, kernel.F_THETA_PLUS] = c.theta_plus
        P[r, kernel.F_THETA_DECAY] = decay(c.dt, c.tc_theta_decay_ms)
        P[r, kernel.F_TRACE_DECAY] = decay(c.dt, c.tc_trace_ms)
        P[r, kernel.F_IN_TRACE_DECAY] = decay(c.dt, c.tc_trace_ms)
        P[r, kernel.F_EXC] = c.exc
        P[r, kernel.F_INH] = c.inh
        P[r, kernel.F_ITHRESH] = c.inh_thresh_mv
        P[r, kernel.F_IREST] = c.inh_rest_mv
        P[r, kernel.F_IRESET] = c.inh_reset_mv
        P[r, kernel.F_IREFRAC] = c.inh_refrac_ms
        P[r, kernel.F_IDECAY] = decay(c.dt, c.inh_tc_decay_ms)
        P[r, kernel.F_NU_PRE] = c.nu_pre
        P[r, kernel.F_NU_POST] = c.nu_post
        P[r, kernel.F_WMIN] = c.wmin
        P[r, kernel.F_WMAX] = c.wmax
        P[r, kernel.F_NORM] = c.norm
        P[r, kernel.F_DT] = c.dt
        P[r, kernel.F_RETRY_STEP] = c.retry_rate_step_hz
        P[r, kernel.F_TEACHER_DRIVE] = c.teacher_drive_mv
        # IFNodes start at (and reset to) their reset potential; the others at rest.
        P[r, kernel.F_VINIT] = c.rest_mv if model.leaky else c.reset_mv
        IP[r, kernel.I_ENCODER] = ENCODERS[c.encoder]
        IP[r, kernel.I_LEAKY] = int(model.leaky)
        IP[r, kernel.I_ADAPTIVE] = int(model.adaptive)
        IP[r, kernel.I_ONE_SPIKE] = int(model.adaptive and c.one_spike)
        IP[r, kernel.I_RULE] = RULES[c.rule].code
        IP[r, kernel.I_MIN_SPIKES] = c.min_spikes
        IP[r, kernel.I_MAX_RETRIES] = c.max_retries
        IP[r, kernel.I_SEED] = replica_seed(c)
        IP[r, kernel.I_N_CLASSES] = n_classes
    return P, IP


def initial_weights(cfg: CellConfig, n_input: int) -> torch.Tensor:
    """``w_init_max * U(0, 1)`` input weights, as BindsNET's DiehlAndCook2015 draws them."""
    gen = torch.Generator().manual_seed(replica_seed(cfg))
    return cfg.w_init_max * torch.rand(n_input, cfg.n_neurons, generator=gen)


def first_events(spikes: torch.Tensor, cap: int = EVENT_CAP
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``cap`` (step, neuron) events of each row of ``spikes`` [B, T, n].

    Returns ``events`` [B, cap, 2] in step order (neurons increasing within a step), as
    the kernel logs them, and the total number of events per row.
    """
    B = spikes.shape[0]
    b, t, j = (a.cpu().numpy() for a in spikes.nonzero(as_tuple=True))
    # nonzero is row-major, so events come sorted by row, step, neuron.
    rank = np.arange(len(b)) - np.searchsorted(b, np.arange(B))[b]
    keep = rank < cap
    events = np.zeros((B, cap, 2), np.int32)
    events[b[keep], rank[keep]] = np.stack([t[keep], j[keep]], 1)
    return events, np.bincount(b, minlength=B)


@dataclass
class TrainStats:
    """Per-replica, per-sample counts from training."""

    exc_spikes: np.ndarray  # (R, n_train) excitatory spikes of the last presentation
    in_spikes: np.ndarray  # (R, n_train) input spikes over all presentations
    retries: np.ndarray  # (R, n_train)
    diverged_at: np.ndarray  # (R,) 1-based sample position, 0 when finite throughout

    @classmethod
    def zeros(cls, R: int, K: int) -> "TrainStats":
        """All-zero statistics for R replicas and K training presentations."""
        return cls(np.zeros((R, K), np.int64), np.zeros((R, K), np.int64),
                   np.zeros((R, K), np.int64), np.zeros(R, np.int64))


@dataclass
class Responses:
    """Frozen-network responses: counts (R, N, n); events (R, N, cap, 2) of (step, neuron)."""

    counts: np.ndarray
    events: np.ndarray
    n_events: np.ndarray
    in_spikes: np.ndarray


@dataclass
class ReplicaSet:
    """The trainable state of R replicas: weights ``[R, n_in, n]`` and thresholds ``[R, n]``."""

    cfgs: list[CellConfig]
    n_input: int
    gains: list[float]
    n_classes: int = 10
    W: np.ndarray = field(init=False)
    theta: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        shapes = {(c.n_neurons, c.time, c.dt) for c in self.cfgs}
        if len(shapes) != 1:
            raise ValueError(f"replicas must share n_neurons, time and dt; got {shapes}")
        self.W = np.ascontiguousarray(
            torch.stack([initial_weights(c, self.n_input) for c in self.cfgs]).numpy())
        self.theta = np.zeros((len(self.cfgs), self.cfgs[0].n_neurons), dtype=np.float32)
        self.P, self.IP = build_params(self.cfgs, self.gains, self.n_classes)
        self.steps = int(self.cfgs[0].time / self.cfgs[0].dt)

    @property
    def R(self) -> int:
        """Number of replicas."""
        return len(self.cfgs)

    def train(self, X: np.ndarray, Y: np.ndarray, orders: np.ndarray, *, phase: int = 0,
              start: int = 0, chunk: int = 100,
              on_progress: Callable[[int], None] | None = None) -> TrainStats:
        """Present ``X[orders[r, k]]`` to replica r for k = 0.. with plasticity on.

        ``orders`` continue a training run from position ``start``: training on
        ``orders[:, :a]`` and then, with ``start=a``, on ``orders[:, a:]`` gives the same
        weights as one call on all of ``orders`` (each presentation's random stream is
        keyed by its position).
        """
        R, K = orders.shape
        stats = TrainStats.zeros(R, K)
        X = np.ascontiguousarray(X, dtype=np.float32)
        Y = np.ascontiguousarray(Y, dtype=np.int64)
        for lo in range(0, K, chunk):
            hi = min(K, lo + chunk)
            sub = np.ascontiguousarray(orders[:, lo:hi])
            exc = np.zeros((R, hi - lo), np.int64)
            inp = np.zeros((R, hi - lo), np.int64)
            ret = np.zeros((R, hi - lo), np.int64)
            # Positions passed to the kernel are global (lo + k), so each presentation's
            # random stream does not depend on the chunking.
            kernel.train_chunk(X, Y, sub, start + lo, self.W, self.theta, self.P, self.IP,
                               self.steps, phase, exc, inp, ret, stats.diverged_at)
            stats.exc_spikes[:, lo:hi] = exc
            stats.in_spikes[:, lo:hi] = inp
            stats.retries[:, lo:hi] = ret
            if on_progress is not None:
                on_progress(hi - lo)
        return stats

    def respond(self, X: np.ndarray, orders: np.ndarray, *, phase: int, chunk: int = 2000,
                on_progress: Callable[[int], None] | None = None) -> Responses:
        """Spike responses with weights and thresholds frozen; samples run in parallel."""
        R, K = orders.shape
        n = self.W.shape[2]
        counts = np.zeros((R, K, n), np.int64)
        events = np.zeros((R, K, EVENT_CAP, 2), np.int32)
        n_events = np.zeros((R, K), np.int64)
        in_spikes = np.zeros((R, K), np.int64)
        X = np.ascontiguousarray(X, dtype=np.float32)
        for lo in range(0, K, chunk):
            hi = min(K, lo + chunk)
            sub = np.ascontiguousarray(orders[:, lo:hi])
            c = np.zeros((R, hi - lo, n), np.int64)
            e = np.zeros((R, hi - lo, EVENT_CAP, 2), np.int32)
            ne = np.zeros((R, hi - lo), np.int64)
            ins = np.zeros((R, hi - lo), np.int64)
            kernel.eval_chunk(X, sub, lo, self.W, self.theta, self.P, self.IP, self.steps,
                              phase, c, e, ne, ins)
            counts[:, lo:hi] = c
            events[:, lo:hi] = e
            n_events[:, lo:hi] = ne
            in_spikes[:, lo:hi] = ins
            if on_progress is not None:
                on_progress(hi - lo)
        return Responses(counts, events, n_events, in_spikes)
