"""R independent Diehl & Cook networks trained together by the fused numba kernel.

Each replica runs the kernel composed for its own levels
(:func:`~stdp_bench.engine.kernel_build.kernel_for`); replicas run on a pool of threads
(the kernels release the GIL), one replica or one block of samples per task, so cells
with different levels share a job as freely as cells with different parameters.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from stdp_bench.config import CellConfig
from stdp_bench.engine.interface import Metrics, sample_orders
from stdp_bench.engine.kernel_build import kernel_for
from stdp_bench.engine.responses import EVENT_CAP, Responses, TrainStats
from stdp_bench.replica_params import initial_weights, replica_params


def worker_threads() -> int:
    """Threads the kernel engines use: the CPUs this process may run on, or its share of
    them when it is one of several worker processes (their initialiser sets numba's
    thread count; ``stdp_bench.backends``)."""
    import numba

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, numba.get_num_threads()))


@dataclass
class ReplicaSet:
    """The trainable state of R replicas: weights ``[R, n_in, n]`` and thresholds ``[R, n]``.

    >>> import numpy as np
    >>> cfgs = [CellConfig(dataset="digits", n_neurons=5, time=20, neuron=nm)
    ...         for nm in ("lif", "adaptive")]
    >>> rs = ReplicaSet(cfgs, n_input=4, gains=[1.0, 1.0])
    >>> X, Y = np.ones((3, 4), np.float32), np.zeros(3, np.int64)
    >>> stats = rs.train(X, Y, np.tile(np.arange(3), (2, 1)))
    >>> stats.exc_spikes.shape, rs.W.shape
    ((2, 3), (2, 4, 5))
    """

    cfgs: list[CellConfig]
    n_input: int
    gains: list[float]
    n_classes: int = 10
    W: np.ndarray = field(init=False)
    theta: np.ndarray = field(init=False)
    name: str = field(default="kernel", init=False)
    # The fused kernel runs on the CPU whatever device a run was given.
    device: str = field(default="cpu", init=False)

    def __post_init__(self) -> None:
        shapes = {(c.n_neurons, c.time, c.dt) for c in self.cfgs}
        if len(shapes) != 1:
            raise ValueError(f"replicas must share n_neurons, time and dt; got {shapes}")
        self.kernels = [kernel_for(c.encoder, c.neuron, c.rule) for c in self.cfgs]
        self.W = np.ascontiguousarray(
            torch.stack([initial_weights(c, self.n_input) for c in self.cfgs]).numpy())
        self.theta = np.zeros((len(self.cfgs), self.cfgs[0].n_neurons), dtype=np.float32)
        self.params = replica_params(self.cfgs, self.gains, self.n_classes)
        # Per replica: W may be outside [wmin, wmax] (fresh, or normalised since its last
        # clamp); the next learning step clamps all of it first, as BindsNET's does.
        self.full_clamp = np.ones((len(self.cfgs), 1), dtype=np.bool_)
        self.steps = round(self.cfgs[0].time / self.cfgs[0].dt)
        self.threads = worker_threads()

    @property
    def R(self) -> int:
        """Number of replicas."""
        return len(self.cfgs)

    def state(self) -> dict[str, np.ndarray]:
        """Weights, thresholds and the pending full-clamp flags (copies)."""
        return {"W": self.W.copy(), "theta": self.theta.copy(),
                "full_clamp": self.full_clamp.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from :meth:`state`'s arrays (copied: the kernel writes them in place,
        and arrays from Ray are read-only)."""
        self.W = np.array(state["W"], dtype=np.float32, order="C")
        self.theta = np.array(state["theta"], dtype=np.float32, order="C")
        self.full_clamp = np.array(state["full_clamp"], dtype=np.bool_, order="C")

    def activity(self, r: int, tested: Responses) -> Metrics:
        """Spikes and synaptic operations per test sample of replica r."""
        return dense_activity(self.cfgs[r].n_neurons, tested, r)

    def training_metrics(self, r: int, stats: TrainStats) -> Metrics:
        """Input gain, retries and spikes per training presentation, divergence."""
        return replica_training_metrics(self.gains[r], stats, r)

    def arrays(self, r: int) -> dict[str, np.ndarray]:
        """Replica r's input weights ``[n_input, n_neurons]`` (float16 keeps the files
        small; receptive-field figures need no more)."""
        return {"weights": np.asarray(self.W[r]).astype(np.float16)}

    def _records(self, r: int) -> tuple:
        p = self.params
        return p.network[r], p.neurons[r][0], p.rules[r][0]

    def _map(self, fn: Callable[[int], None], n_tasks: int) -> None:
        run_tasks(fn, n_tasks, self.threads)

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
        orders = sample_orders(X, orders)
        diverged = np.zeros((R, 1), np.int64)
        for lo in range(0, K, chunk):
            hi = min(K, lo + chunk)

            def run(r: int) -> None:
                # Positions passed to the kernel are global (start + lo + k), so each
                # presentation's random stream does not depend on the chunking.
                self.kernels[r].train_replica(
                    X, Y, orders[r, lo:hi], start + lo, self.W[r], self.theta[r],
                    *self._records(r), self.steps, phase, stats.exc_spikes[r, lo:hi],
                    stats.in_spikes[r, lo:hi], stats.retries[r, lo:hi], diverged[r],
                    self.full_clamp[r])

            self._map(run, R)
            if on_progress is not None:
                on_progress(hi - lo)
        stats.diverged_at[:] = diverged[:, 0]
        return stats

    def settle(self, X: np.ndarray, orders: np.ndarray, counts: np.ndarray, *,
               phase: int = 3, chunk: int = 100) -> np.ndarray:
        """Present ``X[orders[r, k]]`` for k < ``counts[r]`` to replica r with the weights
        frozen and adaptive thresholds on (``respond_replica`` adapting, one replica per
        thread: its presentations depend on each other); returns the spike counts
        ``[R, K]`` (0 past a replica's count)."""
        R, K = orders.shape
        n = self.W.shape[2]
        spikes = np.zeros((R, K), np.int64)
        X = np.ascontiguousarray(X, dtype=np.float32)
        orders = sample_orders(X, orders)

        def run(r: int) -> None:
            # Chunks bound the per-sample buffers; streams are keyed by position.
            for lo in range(0, int(counts[r]), chunk):
                hi = min(int(counts[r]), lo + chunk)
                per = np.zeros((hi - lo, n), np.int64)
                self.kernels[r].respond_replica(
                    X, orders[r, lo:hi], lo, self.W[r], self.theta[r], *self._records(r),
                    self.steps, phase, True, per, np.zeros((hi - lo, 1, 2), np.int32),
                    np.zeros(hi - lo, np.int64), np.zeros(hi - lo, np.int64))
                spikes[r, lo:hi] = per.sum(1)

        self._map(run, R)
        return spikes

    def respond(self, X: np.ndarray, orders: np.ndarray, *, phase: int, chunk: int = 2000,
                on_progress: Callable[[int], None] | None = None) -> Responses:
        """Spike responses with weights and thresholds frozen; samples run in parallel."""
        R, K = orders.shape
        n = self.W.shape[2]
        out = Responses(np.zeros((R, K, n), np.int64), np.zeros((R, K, EVENT_CAP, 2), np.int32),
                        np.zeros((R, K), np.int64), np.zeros((R, K), np.int64))
        X = np.ascontiguousarray(X, dtype=np.float32)
        orders = sample_orders(X, orders)
        for lo in range(0, K, chunk):
            hi = min(K, lo + chunk)
            # Tasks of (replica, block of samples): enough of them to keep every thread
            # busy even for one replica; each sample's stream is keyed by its position.
            blocks = max(1, min(hi - lo, -(-self.threads * 4 // R)))
            bounds = [lo + (hi - lo) * b // blocks for b in range(blocks + 1)]

            def run(task: int) -> None:
                r, b = divmod(task, blocks)
                a, z = bounds[b], bounds[b + 1]
                self.kernels[r].respond_replica(
                    X, orders[r, a:z], a, self.W[r], self.theta[r], *self._records(r),
                    self.steps, phase, False, out.counts[r, a:z], out.events[r, a:z],
                    out.n_events[r, a:z], out.in_spikes[r, a:z])

            self._map(run, R * blocks)
            if on_progress is not None:
                on_progress(hi - lo)
        return out


def run_tasks(fn: Callable[[int], None], n_tasks: int, threads: int) -> None:
    """``fn(0) .. fn(n_tasks - 1)`` on up to ``threads`` threads (the kernels release the
    GIL); in this thread when there is one task or one thread."""
    if threads == 1 or n_tasks == 1:
        for i in range(n_tasks):
            fn(i)
        return
    with ThreadPoolExecutor(max_workers=min(threads, n_tasks)) as pool:
        for fut in [pool.submit(fn, i) for i in range(n_tasks)]:
            fut.result()


def dense_activity(n: int, tested: Responses, r: int) -> Metrics:
    """Activity of a Diehl & Cook replica with ``n`` excitatory neurons on its test
    responses."""
    exc_per = tested.counts[r].sum(1)
    in_per = tested.in_spikes[r]
    return {
        "exc_spikes_per_sample": float(exc_per.mean()),
        "silent_fraction": float((exc_per == 0).mean()),
        "input_spikes_per_sample": float(in_per.mean()),
        # Accumulates: each input spike reaches n excitatory neurons, each excitatory
        # spike one inhibitory neuron, and each inhibitory spike n - 1 excitatory ones
        # (the exc->inh weight makes every excitatory spike fire its partner, so
        # inhibitory spikes are counted as excitatory ones).
        "synops_per_sample": float((in_per * n + exc_per * n).mean()),
    }


def replica_training_metrics(gain: float, stats: TrainStats, r: int) -> Metrics:
    """What a Diehl & Cook replica's training presentations measured."""
    return {
        "input_gain": float(gain),
        "retries_per_sample": float(stats.retries[r].mean()),
        "train_exc_spikes_per_sample": float(stats.exc_spikes[r].mean()),
        "train_input_spikes_per_sample": float(stats.in_spikes[r].mean()),
        "diverged_at_sample": int(stats.diverged_at[r]) or None,
    }


class KernelReplica:
    """One replica driven presentation by presentation through the composed kernel's
    ``present`` on given input spikes, exactly as ``train_replica`` drives it.

    For parity tests of a level against another simulator: feed both the same dense
    spike trains. ``present`` returns the excitatory raster ``[T, n]``, the spike count
    and the one-spike picks the kernel made (to replay on the other side).

    >>> import numpy as np
    >>> cfg = CellConfig(dataset="digits", neuron="lif", n_neurons=3, time=10)
    >>> rep = KernelReplica(cfg, np.full((4, 3), 0.5, np.float32))
    >>> raster, total, picks = rep.present(np.ones((10, 4), bool), learning=True, label=0)
    >>> raster.shape, total == int(raster.sum()), picks
    ((10, 3), True, [])
    """

    def __init__(self, cfg: CellConfig, w0: np.ndarray, *, gain: float = 1.0,
                 n_classes: int = 10, seed: int = 0x5EED) -> None:
        self.kernel = kernel_for(cfg.encoder, cfg.neuron, cfg.rule)
        params = replica_params([cfg], [gain], n_classes)
        self.records = (params.network[0], params.neurons[0][0], params.rules[0][0])
        self.W = np.array(w0, dtype=np.float32, order="C", copy=True)  # ours to change
        self.theta = np.zeros(cfg.n_neurons, np.float32)
        self.state = np.array([seed], np.uint64)
        self.full_clamp = np.array([True])  # the first learning step clamps all of W
        self.n = cfg.n_neurons

    def present(self, spikes: np.ndarray, *, learning: bool, label: int
                ) -> tuple[np.ndarray, int, list[int]]:
        """One presentation of dense ``spikes`` ``[T, n_input]``."""
        s = np.asarray(spikes).astype(bool)
        steps = s.shape[0]
        ptr = np.zeros(steps + 1, np.int64)
        ptr[1:] = np.cumsum(s.sum(1))
        idx = np.nonzero(s)[1].astype(np.int32)  # row-major: steps in order
        if idx.size == 0:
            idx = np.zeros(1, np.int32)
        counts = np.zeros(self.n, np.int64)
        ev_buf = np.zeros((steps * self.n, 2), np.int32)
        n_ev = np.zeros(1, np.int64)
        tie_log = np.zeros(steps + 1, np.int64)
        tie_n = np.zeros(1, np.int64)
        total = self.kernel.present(self.W, self.theta, *self.records, ptr, idx, steps,
                                    learning, learning, label, self.state, counts, ev_buf,
                                    n_ev, self.full_clamp, tie_log, tie_n)
        raster = np.zeros((steps, self.n), bool)
        ev = ev_buf[: n_ev[0]]
        raster[ev[:, 0], ev[:, 1]] = True
        if learning:
            if not self.kernel.normalize(self.W, self.records[0]["norm"]):
                raise FloatingPointError("weights are no longer finite")
            # The next presentation's first update clamps all of W, as in training.
            self.full_clamp[0] = True
        return raster, int(total), tie_log[: tie_n[0]].tolist()
