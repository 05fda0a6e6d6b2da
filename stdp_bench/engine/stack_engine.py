"""R layer stacks (architecture ``stack``) on the event-driven stack kernel
(:mod:`stdp_bench.engine.stack_kernel`), one replica per thread.

Training is greedy: the training positions run through the conv layers in order, each
for its ``epochs`` passes over the ``n_train`` samples, so position ``p`` trains the conv
layer whose span holds it, at that layer's learning rates for its own image count
(:meth:`~stdp_bench.levels.stack_spec.Layer.rates`). Rates and streams follow the
position, so a stack resumes from a checkpoint at any position.

>>> import numpy as np
>>> from stdp_bench.config import make_cell
>>> cfg = make_cell(dict(dataset="digits", architecture="stack", encoder="latency",
...     neuron="if", rule="multiplicative", time=5, n_train=4, epochs=2,
...     layers="conv(maps=3,kernel=3,threshold=1.0,winners=2,epochs=2);pool(kernel=2)"))
>>> rs = StackReplicaSet([cfg], (1, 8, 8))
>>> X = np.random.default_rng(0).random((4, 64), dtype=np.float32)
>>> _ = rs.train(X, np.zeros(4, np.int64), np.tile(np.arange(4), (1, 2)))
>>> resp = rs.respond(X, np.arange(4)[None], phase=2)
>>> resp.shape, resp.counts.shape, resp.counts.dtype
((3, 3, 3), (1, 4, 27), dtype('uint8'))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from stdp_bench.config import CellConfig
from stdp_bench.engine.interface import Metrics
from stdp_bench.engine.kernel_build import kernel_for
from stdp_bench.engine.kernel_engine import run_tasks, worker_threads
from stdp_bench.engine.responses import EVENT_CAP, Responses, TrainStats
from stdp_bench.levels import registry
from stdp_bench.levels.stack_spec import Layer, stack_layers, stack_shapes
from stdp_bench.replica_params import level_record, network_record, replica_seed


def stack_geometry(layers: tuple[Layer, ...], input_shape: tuple[int, int, int]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The kernel's layer table ``geo`` (one row of ``stack_kernel.L_*`` per layer), the
    time buffer's segment starts ``off`` (input, then each layer's output), thresholds,
    and the number of weights of all conv layers.

    >>> geo, off, thr, nw = stack_geometry(
    ...     stack_layers("conv(maps=4,kernel=3);pool(kernel=2)"), (1, 8, 8))
    >>> off.tolist(), nw
    ([0, 64, 208, 244], 36)
    """
    shapes = stack_shapes(layers, input_shape)
    geo = np.zeros((len(layers), 14), np.int64)
    off = [0]
    nw = 0
    for n, shape in enumerate(shapes):
        off.append(off[-1] + int(np.prod(shape)))
    for n, lay in enumerate(layers):
        (C, H, W), (F, h, w) = shapes[n], shapes[n + 1]
        conv = lay.kind == "conv"
        geo[n] = [0 if conv else 1, C, H, W, F, h, w, lay.kernel, lay.stride, lay.pad,
                  lay.winners, lay.radius, nw, int(lay.inhibit_input)]
        if conv:
            nw += C * lay.kernel ** 2 * F
    thr = np.array([lay.threshold for lay in layers], np.float32)
    return geo, np.array(off, np.int64), thr, nw


def initial_stack_weights(cfg: CellConfig, layers: tuple[Layer, ...],
                          shapes: list[tuple[int, int, int]]) -> np.ndarray:
    """Every conv layer's ``normal(w_mean, w_std)`` weights (drawn as SpykeTorch draws a
    ``[F, C, k, k]`` kernel, unclamped), each laid out ``[C*k*k, F]``, one after the
    other; the draws come from the cell's seed."""
    rng = np.random.default_rng(replica_seed(cfg))
    parts = []
    for n, lay in enumerate(layers):
        if lay.kind != "conv":
            continue
        C, k, F = shapes[n][0], lay.kernel, lay.maps
        w = rng.normal(lay.w_mean, lay.w_std, (F, C, k, k)).astype(np.float32)
        parts.append(w.reshape(F, C * k * k).T.ravel())
    return np.ascontiguousarray(np.concatenate(parts))


@dataclass
class StackReplicaSet:
    """The trainable state of R stacks of one geometry: ``W`` ``[R, n_weights]``."""

    cfgs: list[CellConfig]
    input_shape: tuple[int, int, int]
    gains: list[float] = field(default_factory=list)
    n_classes: int = 10
    W: np.ndarray = field(init=False)
    name: str = field(default="kernel", init=False)
    device: str = field(default="cpu", init=False)

    def __post_init__(self) -> None:
        specs = {c.layers for c in self.cfgs}
        times = {(c.time, c.dt, c.n_train) for c in self.cfgs}
        if len(specs) != 1 or len(times) != 1:
            raise ValueError(f"replicas must share their layers, time, dt and n_train; got "
                             f"{specs} and {times}")
        self.layers = stack_layers(self.cfgs[0].layers)
        self.shapes = stack_shapes(self.layers, self.input_shape)
        self.geo, self.off, self.thr, _ = stack_geometry(self.layers, self.input_shape)
        self.kernels = [kernel_for(c.encoder, c.neuron, c.rule, "stack") for c in self.cfgs]
        self.plastic = [registry.get("rule", c.rule).plastic for c in self.cfgs]
        self.W = np.ascontiguousarray(np.stack(
            [initial_stack_weights(c, self.layers, self.shapes) for c in self.cfgs]))
        gains = self.gains or [1.0] * self.R
        self.net = [network_record(c, g, self.n_classes) for c, g in zip(self.cfgs, gains)]
        self.rule_level = [registry.get("rule", c.rule) for c in self.cfgs]
        self.fp = np.array([[c.wmin, c.wmax] for c in self.cfgs], np.float32)
        self.steps = round(self.cfgs[0].time / self.cfgs[0].dt)
        self.threads = worker_threads()
        self.conv = [n for n, lay in enumerate(self.layers) if lay.kind == "conv"]
        self.shape = self.shapes[-1]

    @property
    def R(self) -> int:
        """Number of replicas."""
        return len(self.cfgs)

    def schedule(self, position: int) -> tuple[int, int]:
        """(layer index, the layer's own 0-based image count) of a training position.

        >>> from stdp_bench.config import make_cell
        >>> cfg = make_cell(dict(architecture="stack", encoder="latency", neuron="if",
        ...     dataset="digits", n_train=10, epochs=3, layers="conv(maps=2,kernel=3,"
        ...     "epochs=1);pool(kernel=2);conv(maps=2,kernel=2,epochs=2)"))
        >>> rs = StackReplicaSet([cfg], (1, 8, 8))
        >>> rs.schedule(9), rs.schedule(10), rs.schedule(29)
        ((0, 9), (2, 0), (2, 19))
        """
        n_train = self.cfgs[0].n_train
        lo = 0
        for n in self.conv:
            span = self.layers[n].epochs * n_train
            if position < lo + span:
                return n, position - lo
            lo += span
        raise ValueError(f"training position {position} is past the stack's schedule "
                         f"({lo} positions)")

    def state(self) -> dict[str, np.ndarray]:
        """The weights of every conv layer (a copy)."""
        return {"W": self.W.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from :meth:`state`'s weights."""
        self.W = np.array(state["W"], dtype=np.float32, order="C")

    def activity(self, r: int, tested: Responses) -> Metrics:
        """Units of the last layer, their spikes per test sample, and the weights every
        layer added per sample (synaptic operations: each input spike's fan-out)."""
        per = tested.n_events[r]
        return {"n_excitatory": int(np.prod(self.shape)),
                "exc_spikes_per_sample": float(per.mean()),
                "silent_fraction": float((per == 0).mean()),
                "input_spikes_per_sample": float(tested.in_spikes[r].mean()),
                "synops_per_sample": float(tested.synops[r].mean())}

    def training_metrics(self, r: int, stats: TrainStats) -> Metrics:
        """Spikes of the layer in training per presentation (0 where the rule does not
        learn: those presentations are not simulated)."""
        return {"train_exc_spikes_per_sample": float(stats.exc_spikes[r].mean()),
                "diverged_at_sample": None}

    def arrays(self, r: int) -> dict[str, np.ndarray]:
        """Every conv layer's filters ``[F, C, k, k]`` (float16), ``filters_<layer>``."""
        return {f"filters_{n}": self.filters(r, n).astype(np.float16) for n in self.conv}

    def filters(self, r: int, n: int) -> np.ndarray:
        """Replica r's filters of layer n, ``[F, C, k, k]``."""
        g = self.geo[n]
        C, F, k = int(g[1]), int(g[4]), int(g[7])
        w = self.W[r, g[12]:g[12] + C * k * k * F]
        return w.reshape(C * k * k, F).T.reshape(F, C, k, k).copy()

    def _rule_record(self, r: int, layer: int, image: int) -> np.ndarray:
        cfg = self.cfgs[r]
        a_plus, a_minus = self.layers[layer].rates(image)
        rec = level_record(self.rule_level[r], cfg.with_settings(nu_post=a_plus,
                                                                 nu_pre=a_minus))
        return rec

    def _segments(self, start: int, K: int, chunk: int) -> list[tuple[int, int]]:
        """Runs of positions ``[lo, hi)`` (relative to ``start``) inside one layer and one
        step of its rate schedule, at most ``chunk`` long."""
        bounds = []
        k = 0
        while k < K:
            layer, image = self.schedule(start + k)
            lay = self.layers[layer]
            left = lay.epochs * self.cfgs[0].n_train - image
            if lay.double_every and lay.rates(image)[0] < lay.a_plus_max:
                left = min(left, lay.double_every - (image + 1) % lay.double_every)
            hi = min(K, k + left, k + chunk)
            bounds.append((k, hi))
            k = hi
        return bounds

    def train(self, X: np.ndarray, Y: np.ndarray, orders: np.ndarray, *, start: int = 0,
              chunk: int = 500, on_progress: Callable[[int], None] | None = None
              ) -> TrainStats:
        """Present ``X[orders[r, k]]`` to replica r at positions ``start + k``, each
        training the conv layer the schedule gives it."""
        R, K = orders.shape
        stats = TrainStats.zeros(R, K)
        X = np.ascontiguousarray(X, dtype=np.float32)
        orders = np.ascontiguousarray(orders, dtype=np.int64)
        for lo, hi in self._segments(start, K, chunk):
            layer, image = self.schedule(start + lo)

            def run(r: int) -> None:
                if not self.plastic[r]:
                    return  # weights stay as drawn: nothing to simulate
                self.kernels[r].train_stack(
                    X, orders[r, lo:hi], start + lo, layer, self.W[r], self.geo, self.off,
                    self.thr, self.fp[r], self.net[r][0],
                    self._rule_record(r, layer, image)[0], self.steps, 0,
                    stats.exc_spikes[r, lo:hi], stats.in_spikes[r, lo:hi])

            run_tasks(run, R, self.threads)
            if on_progress is not None:
                on_progress(hi - lo)
        return stats

    def respond(self, X: np.ndarray, orders: np.ndarray, *, phase: int, chunk: int = 1000,
                on_progress: Callable[[int], None] | None = None) -> Responses:
        """Whether each unit of the last layer fired (0/1, uint8) and the first spikes,
        weights frozen; samples run in parallel blocks."""
        R, K = orders.shape
        n = int(np.prod(self.shape))
        out = Responses(np.zeros((R, K, n), np.uint8), np.zeros((R, K, EVENT_CAP, 2), np.int32),
                        np.zeros((R, K), np.int64), np.zeros((R, K), np.int64),
                        shape=self.shape, synops=np.zeros((R, K), np.int64))
        X = np.ascontiguousarray(X, dtype=np.float32)
        orders = np.ascontiguousarray(orders, dtype=np.int64)
        for lo in range(0, K, chunk):
            hi = min(K, lo + chunk)
            blocks = max(1, min(hi - lo, -(-self.threads * 4 // R)))
            bounds = [lo + (hi - lo) * b // blocks for b in range(blocks + 1)]

            def run(task: int) -> None:
                r, b = divmod(task, blocks)
                a, z = bounds[b], bounds[b + 1]
                self.kernels[r].respond_stack(
                    X, orders[r, a:z], a, self.W[r], self.geo, self.off, self.thr,
                    self.net[r][0], self.steps, phase, out.counts[r, a:z],
                    out.events[r, a:z], out.n_events[r, a:z], out.in_spikes[r, a:z],
                    out.synops[r, a:z])

            run_tasks(run, R * blocks, self.threads)
            if on_progress is not None:
                on_progress(hi - lo)
        return out
