"""Train and probe one ``conv`` or ``local`` cell (stock BindsNET, one cell per job).

Training is online STDP at batch 1 (``Network.run`` per sample, as BindsNET's examples
do); labelling and test passes freeze the weights and thresholds and run many samples
per ``Network.run`` (BindsNET's batch dimension is exact when nothing learns). Input
spike trains come from the replica kernel's encoder and counter-based streams, so a
``conv`` cell sees the same spikes a ``dc2015`` cell with the same encoder and seed sees.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from bindsnet.network.monitors import Monitor

from stdp_bench.config import CellConfig
from stdp_bench.engine.interface import Metrics
from stdp_bench.engine.kernel_build import encode_dense
from stdp_bench.engine.responses import EVENT_CAP, Responses, TrainStats, first_events
from stdp_bench.networks.conv import build_feature_network, feature_shape, filters_of
from stdp_bench.replica_params import network_record, replica_seed

_MON = "Ae_spikes"


class FeatureCell:
    """One conv/local cell as an :class:`~stdp_bench.engine.interface.Engine` (R = 1)."""

    name = "bindsnet"  # stock BindsNET layers, one network per cell

    def __init__(self, cfg: CellConfig, input_shape: tuple[int, int, int], gain: float,
                 n_classes: int, device: str = "cpu") -> None:
        self.cfg = cfg
        self.input_shape = input_shape
        self.gain = gain
        self.device = device
        self.dev = torch.device(device)
        self.network = build_feature_network(cfg, input_shape, replica_seed(cfg) % (2**31),
                                             device=self.dev)
        self.network.add_monitor(Monitor(self.network.layers["Ae"], state_vars=["s"]),
                                 name=_MON)
        self.net = network_record(cfg, gain, n_classes)
        self.steps = round(cfg.time / cfg.dt)
        self.shape = feature_shape(cfg, input_shape)
        self.n = int(np.prod(self.shape))

    def _run(self, X: np.ndarray, samples: np.ndarray, keys: np.ndarray, phase: int,
             learning: bool) -> tuple[torch.Tensor, np.ndarray]:
        B, T = len(samples), self.steps
        net = self.net[np.zeros(B, np.int64)]
        dense, ins = encode_dense(X, samples, np.full(B, self.cfg.encoder), keys,
                                  net["rate"].astype(np.float64), net["seed"], net["dt"],
                                  T, phase, int(np.prod(self.input_shape)))
        net = self.network
        net.train(learning)
        spikes = torch.from_numpy(dense).to(self.dev).view(T, B, *self.input_shape)
        # The input gain scales currents, as in the replica engines: fractional spikes.
        inputs = spikes.float() * self.gain if self.gain != 1.0 else spikes
        net.monitors[_MON].reset_state_variables()
        net.run(inputs={"X": inputs}, time=T * net.dt)
        out = net.monitors[_MON].get("s").view(T, B, -1).bool()
        net.reset_state_variables()
        return out, ins

    def train(self, X: np.ndarray, Y: np.ndarray, orders: np.ndarray, *, start: int = 0,
              on_progress: Callable[[int], None] | None = None) -> TrainStats:
        """Present ``X[orders[0, k]]`` one at a time with plasticity on; ``orders[0, 0]``
        is training position ``start`` (each presentation's spikes are keyed by it)."""
        order = np.asarray(orders)[0]
        K = len(order)
        stats = TrainStats.zeros(1, K)
        X = np.ascontiguousarray(X, dtype=np.float32)
        conn = self.network.connections[("X", "Ae")]
        theta = self.network.layers["Ae"].theta
        # Batch-1 steps are tiny ops: intra-op threads only add spin-waiting, which on a
        # busy machine slows them down many times over.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self._train_loop(X, order, start, stats, conn, theta, on_progress)
        finally:
            torch.set_num_threads(threads)
        return stats

    def _train_loop(self, X: np.ndarray, order: np.ndarray, start: int, stats: TrainStats,
                    conn, theta: torch.Tensor,
                    on_progress: Callable[[int], None] | None) -> None:
        K = len(order)
        for k in range(K):
            spikes, ins = self._run(X, order[k:k + 1], np.array([start + k]), 0, True)
            stats.exc_spikes[0, k] = int(spikes.sum())
            stats.in_spikes[0, k] = int(ins[0])
            if not (torch.isfinite(conn.w).all() and torch.isfinite(theta).all()):
                stats.diverged_at[0] = start + k + 1
                break
            if on_progress is not None and (k + 1) % 50 == 0:
                on_progress(50)
        if on_progress is not None and K % 50:
            on_progress(K % 50)

    def respond(self, X: np.ndarray, orders: np.ndarray, *, phase: int, chunk: int = 200,
                on_progress: Callable[[int], None] | None = None) -> Responses:
        """Frozen responses to ``X[orders[0]]``, ``chunk`` samples per run."""
        order = np.asarray(orders)[0]
        K = len(order)
        counts = np.zeros((1, K, self.n), np.int64)
        events = np.zeros((1, K, EVENT_CAP, 2), np.int32)
        n_events = np.zeros((1, K), np.int64)
        in_spikes = np.zeros((1, K), np.int64)
        X = np.ascontiguousarray(X, dtype=np.float32)
        for lo in range(0, K, chunk):
            hi = min(K, lo + chunk)
            spikes, ins = self._run(X, order[lo:hi], np.arange(lo, hi), phase, False)
            s = spikes.permute(1, 0, 2).cpu()  # [B, T, n]
            counts[0, lo:hi] = s.sum(1).numpy()
            in_spikes[0, lo:hi] = ins
            events[0, lo:hi], n_events[0, lo:hi] = first_events(s)
            if on_progress is not None:
                on_progress(hi - lo)
        return Responses(counts, events, n_events, in_spikes, shape=self.shape)

    def state(self) -> dict[str, np.ndarray]:
        """The filters' weights and the feature maps' adaptive thresholds (copies, with a
        replica axis of 1)."""
        return {"w": self.network.connections[("X", "Ae")].w.detach().cpu().numpy()[None],
                "theta": self.network.layers["Ae"].theta.detach().cpu().numpy()[None]}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from :meth:`state`'s arrays."""
        with torch.no_grad():
            self.network.connections[("X", "Ae")].w.copy_(torch.as_tensor(state["w"][0]))
            self.network.layers["Ae"].theta.copy_(torch.as_tensor(state["theta"][0]))

    def activity(self, r: int, tested: Responses) -> Metrics:
        """Size of the maps, spikes and synaptic operations per test sample."""
        return map_activity(self.shape, self.cfg.kernel_size, self.input_shape, tested, r)

    def training_metrics(self, r: int, stats: TrainStats) -> Metrics:
        """Spikes per training presentation, and where training diverged."""
        return {"train_exc_spikes_per_sample": float(stats.exc_spikes[r].mean()),
                "diverged_at_sample": int(stats.diverged_at[r]) or None}

    def arrays(self, r: int) -> dict[str, np.ndarray]:
        """The learned filters (float16)."""
        return {"filters": self.filters().astype(np.float16)}

    def filters(self) -> np.ndarray:
        """Learned filters ``[n_filters, k, k]`` (``[n_filters, channels, k, k]``)."""
        return filters_of(self.network, self.cfg, self.input_shape)


def map_activity(shape: tuple[int, int, int], kernel_size: int,
                 input_shape: tuple[int, ...], tested: Responses, r: int) -> Metrics:
    """Size of feature maps ``shape`` (F, H, W), and spikes and synaptic operations per
    test sample of replica r."""
    exc_per = tested.counts[r].sum(1)
    in_per = tested.in_spikes[r]
    F, H, W = shape
    return {
        "n_excitatory": int(F * H * W),
        "exc_spikes_per_sample": float(exc_per.mean()),
        "silent_fraction": float((exc_per == 0).mean()),
        "input_spikes_per_sample": float(in_per.mean()),
        # An input spike reaches the filters of every location whose field holds it
        # (about F * k^2 * H * W / (image height x width) of them, in any channel); a
        # spike inhibits the F - 1 other maps at its location.
        "synops_per_sample": float((in_per * F * kernel_size ** 2 * H * W
                                    / math.prod(input_shape[1:])
                                    + exc_per * (F - 1)).mean()),
    }
