"""R independent Diehl & Cook networks trained as one BindsNET ``Network`` (CPU or CUDA).

The same interface as :class:`stdp_bench.engine.replicas.ReplicaSet` (``train`` and
``respond``), built from the replica classes of :mod:`stdp_bench.networks.replica`, so a
user can add monitors to ``.network``. Input spike trains come from the kernel's encoder
and its counter-based streams (``kernel.encode_dense``); the one-spike tie-breaks come
from the network's own per-replica streams, so spikes match the kernel engine's exactly
only when no tie occurs (tests/test_replica_network.py replays the kernel's ties).

This is the engine for CUDA; on CPU the fused kernel is about two orders of magnitude
faster and is the default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from bindsnet.network import Network
from bindsnet.network.monitors import Monitor

from stdp_bench.config import CellConfig
from stdp_bench.engine import kernel
from stdp_bench.engine.replicas import (EVENT_CAP, Responses, TrainStats, build_params,
                                        first_events, initial_weights, replica_seed)
from stdp_bench.networks.replica import bind_replicas, build_replica_network

_MON = "Ae_spikes"


def _key(attempt: int, pos: np.ndarray) -> np.ndarray:
    """Stream key of a presentation: sample position, retry attempt above bit 40."""
    return (np.int64(attempt) << 40) | pos.astype(np.int64)


@dataclass
class TorchReplicaSet:
    """Replicas ``cfgs`` as one BindsNET ``Network`` on ``device``."""

    cfgs: list[CellConfig]
    n_input: int
    gains: list[float]
    n_classes: int = 10
    device: str = "cpu"
    network: Network = field(init=False)

    def __post_init__(self) -> None:
        shapes = {(c.n_neurons, c.time, c.dt) for c in self.cfgs}
        if len(shapes) != 1:
            raise ValueError(f"replicas must share n_neurons, time and dt; got {shapes}")
        self.dev = torch.device(self.device)
        w0 = torch.stack([initial_weights(c, self.n_input) for c in self.cfgs])
        self.network = build_replica_network(self.cfgs, self.n_input, w0, self.gains,
                                             self.n_classes,
                                             [replica_seed(c) for c in self.cfgs],
                                             device=self.dev)
        self.network.add_monitor(Monitor(self.network.layers["Ae"], state_vars=["s"]),
                                 name=_MON)
        self.P, self.IP = build_params(self.cfgs, self.gains, self.n_classes)
        self.steps = int(self.cfgs[0].time / self.cfgs[0].dt)
        self.drive = torch.tensor([c.teacher_drive_mv if c.rule == "teacher" else 0.0
                                   for c in self.cfgs], device=self.dev)

    @property
    def R(self) -> int:
        """Number of replicas."""
        return len(self.cfgs)

    @property
    def W(self) -> np.ndarray:
        """Input weights ``[R, n_input, n_neurons]`` as numpy."""
        return self.network.connections[("X", "Ae")].w.detach().cpu().numpy()

    @property
    def theta(self) -> np.ndarray:
        """Adaptive thresholds ``[R, n_neurons]`` as numpy."""
        return self.network.layers["Ae"].theta_r.detach().cpu().numpy()

    def _present(self, X: np.ndarray, samples: np.ndarray, reps: np.ndarray,
                 keys: np.ndarray, rates: np.ndarray, phase: int, learning: bool,
                 labels: torch.Tensor | None) -> tuple[torch.Tensor, np.ndarray]:
        """Run one presentation for rows (reps[b], samples[b]); returns spikes [T, B, n]."""
        B, T = len(samples), self.steps
        dense = np.zeros((T, B, self.n_input), np.bool_)
        ins = np.zeros(B, np.int64)
        kernel.encode_dense(X, samples, reps, keys, rates, self.P, self.IP, T, phase,
                            dense, ins)
        net = self.network
        rows = torch.from_numpy(reps).to(self.dev)
        bind_replicas(net, rows)
        net.layers["Ae"].draw_key = torch.from_numpy((np.int64(phase) << 48) | keys).to(self.dev)
        net.train(learning)
        injects = {}
        if learning:
            rule = net.connections[("X", "Ae")].update_rule
            rule.labels[rows] = labels
            inj = net.layers["Ae"].teacher_injection(labels, self.drive[rows], self.n_classes)
            if bool((self.drive[rows] != 0).any()):
                injects = {"Ae": inj.unsqueeze(0).expand(T, B, -1)}
        net.monitors[_MON].reset_state_variables()
        net.run(inputs={"X": torch.from_numpy(dense).to(self.dev)}, time=T * net.dt,
                injects_v=injects)
        spikes = net.monitors[_MON].get("s").view(T, B, -1).bool()
        net.reset_state_variables()
        return spikes, ins

    def train(self, X: np.ndarray, Y: np.ndarray, orders: np.ndarray, *, phase: int = 0,
              chunk: int = 100, on_progress: Callable[[int], None] | None = None
              ) -> TrainStats:
        """Present ``X[orders[r, k]]`` to replica r for k = 0.. with plasticity on."""
        R, K = orders.shape
        stats = TrainStats.zeros(R, K)
        X = np.ascontiguousarray(X, dtype=np.float32)
        min_spikes = self.IP[:, kernel.I_MIN_SPIKES]
        max_retries = self.IP[:, kernel.I_MAX_RETRIES]
        W = self.network.connections[("X", "Ae")].w
        theta = self.network.layers["Ae"].theta_r
        for k in range(K):
            active = np.flatnonzero(stats.diverged_at == 0)
            rates = self.P[:, kernel.F_RATE].astype(np.float64).copy()
            attempt = 0
            while len(active):
                samples = orders[active, k]
                labels = torch.from_numpy(Y[samples]).to(self.dev)
                keys = _key(attempt, np.full(len(active), k))
                spikes, ins = self._present(X, samples, active, keys, rates[active], phase,
                                            True, labels)
                n_spk = spikes.sum((0, 2)).cpu().numpy()
                stats.in_spikes[active, k] += ins
                stats.exc_spikes[active, k] = n_spk
                rows = torch.from_numpy(active).to(self.dev)
                conn = self.network.connections[("X", "Ae")]
                finite = (torch.isfinite(W[rows]).all(2).all(1)
                          & torch.isfinite(theta[rows]).all(1)
                          & ~conn.nonfinite[rows]).cpu().numpy()
                stats.diverged_at[active[~finite]] = k + 1
                again = finite & (n_spk < min_spikes[active]) & (attempt < max_retries[active])
                active = active[again]
                stats.retries[active, k] += 1
                rates[active] += self.P[active, kernel.F_RETRY_STEP]
                attempt += 1
            if on_progress is not None and ((k + 1) % chunk == 0 or k + 1 == K):
                on_progress(chunk if (k + 1) % chunk == 0 else K % chunk)
        return stats

    def respond(self, X: np.ndarray, orders: np.ndarray, *, phase: int, chunk: int = 64,
                on_progress: Callable[[int], None] | None = None) -> Responses:
        """Frozen-network responses; ``chunk`` samples of every replica per run."""
        R, K = orders.shape
        n = self.cfgs[0].n_neurons
        counts = np.zeros((R, K, n), np.int64)
        events = np.zeros((R, K, EVENT_CAP, 2), np.int32)
        n_events = np.zeros((R, K), np.int64)
        in_spikes = np.zeros((R, K), np.int64)
        X = np.ascontiguousarray(X, dtype=np.float32)
        for lo in range(0, K, chunk):
            hi = min(K, lo + chunk)
            ks = np.arange(lo, hi)
            reps = np.repeat(np.arange(R), hi - lo)
            pos = np.tile(ks, R)
            samples = orders[reps, pos]
            rates = self.P[reps, kernel.F_RATE].astype(np.float64)
            spikes, ins = self._present(X, samples, reps, _key(0, pos), rates, phase,
                                        False, None)
            s = spikes.permute(1, 0, 2).cpu()  # [B, T, n]
            counts[reps, pos] = s.sum(1).numpy()
            in_spikes[reps, pos] = ins
            events[reps, pos], n_events[reps, pos] = first_events(s)
            if on_progress is not None:
                on_progress(hi - lo)
        return Responses(counts, events, n_events, in_spikes)
