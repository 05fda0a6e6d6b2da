"""R conv or local STDP layers trained together by the fused map kernel
(:mod:`stdp_bench.engine.map_kernel`), one replica per thread.

Each replica starts from the weights the BindsNET layer of its cell draws
(:func:`stdp_bench.networks.conv.build_feature_network`, then laid out as one
``[field, maps]`` matrix per place, or one for all places for conv) and sees the input
spikes a ``dense`` or BindsNET cell with the same encoder and seed sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from stdp_bench.config import CellConfig
from stdp_bench.engine.feature_engine import map_activity
from stdp_bench.engine.interface import Metrics, sample_orders
from stdp_bench.engine.kernel_build import kernel_for
from stdp_bench.engine.kernel_engine import run_tasks, worker_threads
from stdp_bench.engine.responses import EVENT_CAP, Responses, TrainStats
from stdp_bench.networks.first_spike import claim_radius
from stdp_bench.replica_params import replica_params, replica_seed
from stdp_bench.trainers import map_kernel_gaps


def map_geometry(cfg: CellConfig, input_shape: tuple[int, int, int]) -> np.ndarray:
    """The map kernel's integers of ``cfg``'s layer on ``(C, H, W)`` inputs.

    >>> map_geometry(CellConfig(architecture="conv", kernel_size=5, stride=2,
    ...                         n_filters=32, winners=3), (1, 28, 28)).tolist()
    [1, 28, 28, 5, 2, 32, 12, 12, 1, 0, 3, 1, 0]
    """
    from stdp_bench.networks.conv import feature_shape

    C, H, W = input_shape
    F, h, w = feature_shape(cfg, input_shape)
    shared = cfg.architecture == "conv"
    first = cfg.conv_learning == "first_spike"
    if cfg.conv_radius >= 0:
        radius = cfg.conv_radius
    else:
        radius = claim_radius(cfg.kernel_size, cfg.stride) if shared else 0
    return np.array([C, H, W, cfg.kernel_size, cfg.stride, F, h, w, int(shared),
                     int(first), min(cfg.winners, F), radius, cfg.conv_kwta], np.int64)


def field_weights(cfg: CellConfig, input_shape: tuple[int, int, int], w) -> np.ndarray:
    """BindsNET's X -> Ae weights of a feature layer as ``L[n_w, C*k*k, F]`` (conv:
    ``w`` is ``[F, C, k, k]``; local: ``[C*H*W, F*h*w]`` with zeros off the fields)."""
    geo = map_geometry(cfg, input_shape)
    C, H, W, k, s, F, h, w_ = (int(v) for v in geo[:8])
    w = np.asarray(w, np.float32)
    if cfg.architecture == "conv":
        return np.ascontiguousarray(w.reshape(F, C * k * k).T[None])
    rows = _field_rows(geo)  # [h*w, C*k*k] input index of each field entry
    cols = np.arange(F)[None, None, :] * (h * w_) + np.arange(h * w_)[:, None, None]
    return np.ascontiguousarray(w[rows[:, :, None], cols])


def _field_rows(geo: np.ndarray) -> np.ndarray:
    C, H, W, k, s, F, h, w = (int(v) for v in geo[:8])
    field = (np.arange(C)[:, None, None] * H * W + np.arange(k)[None, :, None] * W
             + np.arange(k)[None, None, :]).ravel()
    corner = (np.arange(h)[:, None] * s * W + np.arange(w)[None, :] * s).ravel()
    return corner[:, None] + field[None, :]


def bindsnet_weights(L: np.ndarray, geo: np.ndarray) -> np.ndarray:
    """:func:`field_weights`' inverse: conv ``[F, C, k, k]``, local ``[C*H*W, F*h*w]``."""
    C, H, W, k, s, F, h, w = (int(v) for v in geo[:8])
    if geo[8]:
        return L[0].T.reshape(F, C, k, k).copy()
    out = np.zeros((C * H * W, F * h * w), np.float32)
    rows = _field_rows(geo)
    cols = np.arange(F)[None, None, :] * (h * w) + np.arange(h * w)[:, None, None]
    out[rows[:, :, None], cols] = L
    return out


def initial_layer(cfg: CellConfig, input_shape: tuple[int, int, int]
                  ) -> tuple[np.ndarray, float]:
    """The initial ``L`` and the normalisation total of ``cfg``'s BindsNET layer (the
    same draws, normalised as it normalises them)."""
    from stdp_bench.networks.conv import build_feature_network

    net = build_feature_network(cfg, input_shape, replica_seed(cfg) % (2**31))
    conn = net.connections[("X", "Ae")]
    return field_weights(cfg, input_shape, conn.w.detach().numpy()), float(conn.norm)


@dataclass
class MapReplicaSet:
    """The trainable state of R feature layers: ``L`` ``[R, n_w, C*k*k, F]`` and
    thresholds ``[R, h*w*F]`` (place-major).

    >>> import numpy as np
    >>> cfgs = [CellConfig(dataset="digits", architecture="conv", kernel_size=3, stride=1,
    ...                    n_filters=4, time=20, neuron=nm, conv_learning="first_spike")
    ...         for nm in ("lif", "adaptive")]
    >>> rs = MapReplicaSet(cfgs, (1, 8, 8), gains=[1.0, 1.0])
    >>> X = np.random.default_rng(0).random((3, 64), dtype=np.float32)
    >>> stats = rs.train(X, np.zeros(3, np.int64), np.tile(np.arange(3), (2, 1)))
    >>> stats.exc_spikes.shape, rs.L.shape
    ((2, 3), (2, 1, 9, 4))
    """

    cfgs: list[CellConfig]
    input_shape: tuple[int, int, int]
    gains: list[float]
    n_classes: int = 10
    L: np.ndarray = field(init=False)
    theta: np.ndarray = field(init=False)
    name: str = field(default="kernel", init=False)
    device: str = field(default="cpu", init=False)

    def __post_init__(self) -> None:
        gaps = [g for c in self.cfgs for g in map_kernel_gaps(c)]
        if gaps:
            raise ValueError(f"the map kernel cannot run this cell: {gaps[0]}")
        geos = {tuple(map_geometry(c, self.input_shape)) for c in self.cfgs}
        times = {(c.time, c.dt) for c in self.cfgs}
        if len(geos) != 1 or len(times) != 1:
            raise ValueError(f"replicas must share their layer's geometry, time and dt; "
                             f"got {geos} and {times}")
        self.geo = map_geometry(self.cfgs[0], self.input_shape)
        self.kernels = [kernel_for(c.encoder, c.neuron, c.rule, "maps") for c in self.cfgs]
        layers = [initial_layer(c, self.input_shape) for c in self.cfgs]
        self.L = np.ascontiguousarray(np.stack([lay for lay, _ in layers]))
        n = int(self.geo[5] * self.geo[6] * self.geo[7])
        self.theta = np.zeros((self.R, n), np.float32)
        self.fp = np.array([[_trace_decay(c), c.wmin, c.wmax, c.conv_inh, norm, g]
                            for c, (_, norm), g in zip(self.cfgs, layers, self.gains)],
                           np.float32)
        self.params = replica_params(self.cfgs, self.gains, self.n_classes)
        self.full_clamp = np.ones((self.R, 1), np.bool_)
        self.steps = round(self.cfgs[0].time / self.cfgs[0].dt)
        self.threads = worker_threads()
        F, h, w = (int(v) for v in self.geo[5:8])
        self.shape = (F, h, w)

    @property
    def R(self) -> int:
        """Number of replicas."""
        return len(self.cfgs)

    def state(self) -> dict[str, np.ndarray]:
        """Weights, thresholds and the pending full-clamp flags (copies)."""
        return {"L": self.L.copy(), "theta": self.theta.copy(),
                "full_clamp": self.full_clamp.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from :meth:`state`'s arrays (copied: the kernel writes in place)."""
        self.L = np.array(state["L"], dtype=np.float32, order="C")
        self.theta = np.array(state["theta"], dtype=np.float32, order="C")
        self.full_clamp = np.array(state["full_clamp"], dtype=np.bool_, order="C")

    def activity(self, r: int, tested: Responses) -> Metrics:
        """Size of the maps, spikes and synaptic operations per test sample."""
        return map_activity(self.shape, self.cfgs[r].kernel_size, self.input_shape,
                            tested, r)

    def training_metrics(self, r: int, stats: TrainStats) -> Metrics:
        """Spikes per training presentation, and where training diverged."""
        return {"train_exc_spikes_per_sample": float(stats.exc_spikes[r].mean()),
                "diverged_at_sample": int(stats.diverged_at[r]) or None}

    def arrays(self, r: int) -> dict[str, np.ndarray]:
        """The learned filters (float16)."""
        return {"filters": self.filters(r).astype(np.float16)}

    def filters(self, r: int) -> np.ndarray:
        """Replica r's filters ``[F, k, k]`` (``[F, C, k, k]``): conv's kernels; local's
        at the central place."""
        C, k = int(self.geo[0]), int(self.geo[3])
        F, h, w = self.shape
        m = 0 if self.geo[8] else (h // 2) * w + w // 2
        out = self.L[r, m].T.reshape(F, C, k, k)
        return out[:, 0] if C == 1 else out

    def _records(self, r: int) -> tuple:
        p = self.params
        return p.network[r], p.neurons[r][0], p.rules[r][0]

    def _map(self, fn: Callable[[int], None], n_tasks: int) -> None:
        run_tasks(fn, n_tasks, self.threads)

    def train(self, X: np.ndarray, Y: np.ndarray, orders: np.ndarray, *, start: int = 0,
              chunk: int = 100, on_progress: Callable[[int], None] | None = None
              ) -> TrainStats:
        """Present ``X[orders[r, k]]`` to replica r with plasticity on; positions continue
        from ``start`` (each presentation's spikes are keyed by its position)."""
        R, K = orders.shape
        stats = TrainStats.zeros(R, K)
        X = np.ascontiguousarray(X, dtype=np.float32)
        orders = sample_orders(X, orders)
        diverged = np.zeros((R, 1), np.int64)
        for lo in range(0, K, chunk):
            hi = min(K, lo + chunk)

            def run(r: int) -> None:
                net, pn, pr = self._records(r)
                self.kernels[r].train_maps(
                    X, orders[r, lo:hi], start + lo, self.L[r], self.theta[r], self.geo,
                    self.fp[r], net, pn, pr, self.steps, 0, stats.exc_spikes[r, lo:hi],
                    stats.in_spikes[r, lo:hi], diverged[r], self.full_clamp[r])

            self._map(run, R)
            if on_progress is not None:
                on_progress(hi - lo)
        stats.diverged_at[:] = diverged[:, 0]
        return stats

    def respond(self, X: np.ndarray, orders: np.ndarray, *, phase: int, chunk: int = 1000,
                on_progress: Callable[[int], None] | None = None) -> Responses:
        """Spike responses with weights and thresholds frozen; samples run in parallel."""
        R, K = orders.shape
        n = self.theta.shape[1]
        out = Responses(np.zeros((R, K, n), np.int64), np.zeros((R, K, EVENT_CAP, 2), np.int32),
                        np.zeros((R, K), np.int64), np.zeros((R, K), np.int64),
                        shape=self.shape)
        X = np.ascontiguousarray(X, dtype=np.float32)
        orders = sample_orders(X, orders)
        for lo in range(0, K, chunk):
            hi = min(K, lo + chunk)
            blocks = max(1, min(hi - lo, -(-self.threads * 4 // R)))
            bounds = [lo + (hi - lo) * b // blocks for b in range(blocks + 1)]

            def run(task: int) -> None:
                r, b = divmod(task, blocks)
                a, z = bounds[b], bounds[b + 1]
                net, pn, pr = self._records(r)
                self.kernels[r].respond_maps(
                    X, orders[r, a:z], a, self.L[r], self.theta[r], self.geo, self.fp[r],
                    net, pn, pr, self.steps, phase, out.counts[r, a:z], out.events[r, a:z],
                    out.n_events[r, a:z], out.in_spikes[r, a:z])

            self._map(run, R * blocks)
            if on_progress is not None:
                on_progress(hi - lo)
        return out


def _trace_decay(cfg: CellConfig) -> float:
    from stdp_bench.levels.units import decay

    return decay(cfg.dt, cfg.tc_trace_ms)
