"""R independent Diehl & Cook networks trained as one BindsNET ``Network`` (CPU or CUDA).

The same interface as :class:`stdp_bench.engine.kernel_engine.ReplicaSet` (``train`` and
``respond``), built from the replica classes of
:mod:`stdp_bench.networks.replica_network`, so a user can add monitors to ``.network``.
Input spike trains come from the kernel's encoders and counter-based streams
(:func:`~stdp_bench.engine.kernel_build.encode_dense`); the one-spike tie-breaks from
draws of the same generator on a stream of their own
(:func:`~stdp_bench.engine.numba_support.tie_draws`), so spikes match the kernel
engine's exactly only when no tie occurs (tests/test_replica_network.py replays the
kernel's ties).

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
from stdp_bench.engine.interface import Metrics
from stdp_bench.engine.kernel_build import encode_dense
from stdp_bench.engine.kernel_engine import dense_activity, replica_training_metrics
from stdp_bench.engine.numba_support import tie_draws
from stdp_bench.engine.responses import EVENT_CAP, Responses, TrainStats, first_events
from stdp_bench.networks.replica_network import bind_replicas, build_replica_network
from stdp_bench.replica_params import initial_weights, network_record

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
    name: str = field(default="torch", init=False)

    def __post_init__(self) -> None:
        shapes = {(c.n_neurons, c.time, c.dt) for c in self.cfgs}
        if len(shapes) != 1:
            raise ValueError(f"replicas must share n_neurons, time and dt; got {shapes}")
        self.dev = torch.device(self.device)
        w0 = torch.stack([initial_weights(c, self.n_input) for c in self.cfgs])
        self.network = build_replica_network(self.cfgs, self.n_input, w0, self.gains,
                                             self.n_classes, device=self.dev)
        self.network.add_monitor(Monitor(self.network.layers["Ae"], state_vars=["s"]),
                                 name=_MON)
        self.net = np.concatenate([network_record(c, g, self.n_classes)
                                   for c, g in zip(self.cfgs, self.gains)])
        self.encoders = np.array([c.encoder for c in self.cfgs])
        self.steps = round(self.cfgs[0].time / self.cfgs[0].dt)

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

    def state(self) -> dict[str, np.ndarray]:
        """Weights and thresholds of every replica (copies, as numpy)."""
        return {"W": self.W.copy(), "theta": self.theta.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from :meth:`state`'s arrays."""
        with torch.no_grad():
            self.network.connections[("X", "Ae")].w.copy_(torch.as_tensor(state["W"]))
            self.network.layers["Ae"].theta_r.copy_(torch.as_tensor(state["theta"]))

    def activity(self, r: int, tested: Responses) -> Metrics:
        """Spikes and synaptic operations per test sample of replica r."""
        return dense_activity(self.cfgs[r].n_neurons, tested, r)

    def training_metrics(self, r: int, stats: TrainStats) -> Metrics:
        """Input gain, retries and spikes per training presentation, divergence."""
        return replica_training_metrics(self.gains[r], stats, r)

    def arrays(self, r: int) -> dict[str, np.ndarray]:
        """Replica r's input weights (float16, as the kernel engine keeps them)."""
        return {"weights": self.W[r].astype(np.float16)}

    def _present(self, X: np.ndarray, samples: np.ndarray, reps: np.ndarray,
                 keys: np.ndarray, rates: np.ndarray, phase: int, learning: bool,
                 labels: torch.Tensor | None, adapt: bool = False
                 ) -> tuple[torch.Tensor, np.ndarray]:
        """Run one presentation for rows (reps[b], samples[b]); returns spikes [T, B, n].
        ``adapt`` (with ``learning`` off) lets the excitatory layer adapt its thresholds
        while the weights stay frozen: settling."""
        T = self.steps
        net_rows = self.net[reps]
        dense, ins = encode_dense(X, samples, self.encoders[reps], keys, rates,
                                  net_rows["seed"], net_rows["dt"], T, phase, self.n_input)
        net = self.network
        rows = torch.from_numpy(reps).to(self.dev)
        bind_replicas(net, rows)
        ae = net.layers["Ae"]
        if ae.any_one_spike:
            ae.tie_draws = torch.from_numpy(tie_draws(net_rows["seed"], keys, phase, T)
                                            ).to(self.dev)
        net.train(learning)
        if adapt:
            # Network.run updates connections only when the network learns: the layer
            # alone learning adapts thresholds and leaves the weights as they are.
            ae.train(True)
        injects = {}
        if learning:
            rule = net.connections[("X", "Ae")].rule
            rule.labels[rows] = labels
            inj = rule.injection(labels, ae.n)
            if inj is not None:
                injects = {"Ae": inj.unsqueeze(0).expand(T, len(samples), -1)}
        net.monitors[_MON].reset_state_variables()
        net.run(inputs={"X": torch.from_numpy(dense).to(self.dev)}, time=T * net.dt,
                injects_v=injects)
        spikes = net.monitors[_MON].get("s").view(T, len(samples), -1).bool()
        net.reset_state_variables()
        return spikes, ins

    def train(self, X: np.ndarray, Y: np.ndarray, orders: np.ndarray, *, phase: int = 0,
              start: int = 0, chunk: int = 100,
              on_progress: Callable[[int], None] | None = None) -> TrainStats:
        """Present ``X[orders[r, k]]`` to replica r for k = 0.. with plasticity on.

        ``start`` is the global position of ``orders[:, 0]``: a run continued from
        position a gives what one call on the whole order gives (as the kernel engine).
        """
        R, K = orders.shape
        stats = TrainStats.zeros(R, K)
        X = np.ascontiguousarray(X, dtype=np.float32)
        min_spikes = self.net["min_spikes"]
        max_retries = self.net["max_retries"]
        W = self.network.connections[("X", "Ae")].w
        theta = self.network.layers["Ae"].theta_r
        for k in range(K):
            active = np.flatnonzero(stats.diverged_at == 0)
            rates = self.net["rate"].astype(np.float64)
            attempt = 0
            while len(active):
                samples = orders[active, k]
                labels = torch.from_numpy(Y[samples]).to(self.dev)
                keys = _key(attempt, np.full(len(active), start + k))
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
                stats.diverged_at[active[~finite]] = start + k + 1
                again = finite & (n_spk < min_spikes[active]) & (attempt < max_retries[active])
                active = active[again]
                stats.retries[active, k] += 1
                rates[active] += self.net["retry_step"][active]
                attempt += 1
            if on_progress is not None and ((k + 1) % chunk == 0 or k + 1 == K):
                on_progress(chunk if (k + 1) % chunk == 0 else K % chunk)
        return stats

    def settle(self, X: np.ndarray, orders: np.ndarray, counts: np.ndarray, *,
               phase: int = 3) -> np.ndarray:
        """Present ``X[orders[r, k]]`` for k < ``counts[r]`` to replica r with the weights
        frozen and adaptive thresholds on, once each, untaught: the kernel engine's
        ``settle``, on the kernel's spike trains. Returns the spike counts ``[R, K]``."""
        R, K = orders.shape
        spikes = np.zeros((R, K), np.int64)
        X = np.ascontiguousarray(X, dtype=np.float32)
        for k in range(K):
            active = np.flatnonzero(counts > k)
            if not len(active):
                break
            spk, _ = self._present(X, orders[active, k], active,
                                   _key(0, np.full(len(active), k)),
                                   self.net["rate"][active].astype(np.float64), phase, False,
                                   None, adapt=True)
            spikes[active, k] = spk.sum((0, 2)).cpu().numpy()
        return spikes

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
            rates = self.net["rate"][reps].astype(np.float64)
            spikes, ins = self._present(X, samples, reps, _key(0, pos), rates, phase,
                                        False, None)
            s = spikes.permute(1, 0, 2).cpu()  # [B, T, n]
            counts[reps, pos] = s.sum(1).numpy()
            in_spikes[reps, pos] = ins
            events[reps, pos], n_events[reps, pos] = first_events(s)
            if on_progress is not None:
                on_progress(hi - lo)
        return Responses(counts, events, n_events, in_spikes)
