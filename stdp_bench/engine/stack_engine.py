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
from stdp_bench.engine.interface import Metrics, sample_orders
from stdp_bench.engine.kernel_build import kernel_for
from stdp_bench.engine.kernel_engine import run_tasks, worker_threads
from stdp_bench.engine.responses import EVENT_CAP, Responses, TrainStats
from stdp_bench.levels import registry
from stdp_bench.levels.stack_spec import (Layer, decision_layer, stack_layers,
                                          stack_shapes)
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
    geo = np.zeros((len(layers), 16), np.int64)
    off = [0]
    nw = 0
    for n, shape in enumerate(shapes):
        off.append(off[-1] + int(np.prod(shape)))
    for n, lay in enumerate(layers):
        (C, H, W), (F, h, w) = shapes[n], shapes[n + 1]
        conv = lay.kind == "conv"
        geo[n] = [0 if conv else 1, C, H, W, F, h, w, lay.kernel, lay.stride, lay.pad,
                  lay.winners, lay.radius, nw, int(lay.inhibit_input),
                  int(lay.fire_at_end), int(lay.decide)]
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


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` view the same memory the same way."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype)


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
        # Each conv layer learns by its own rule (a layer's ``rule``, else the cell's);
        # the frozen passes (responses, kept inputs) use the cell's kernel: they run no
        # rule.
        self.kernels = [kernel_for(c.encoder, c.neuron, c.rule, "stack") for c in self.cfgs]
        self.rule_level = [{n: registry.get("rule", lay.rule or c.rule)
                            for n, lay in enumerate(self.layers) if lay.kind == "conv"}
                           for c in self.cfgs]
        self.layer_kernels = [{n: kernel_for(c.encoder, c.neuron, lv.name, "stack")
                               for n, lv in levels.items()}
                              for c, levels in zip(self.cfgs, self.rule_level)]
        self.W = np.ascontiguousarray(np.stack(
            [initial_stack_weights(c, self.layers, self.shapes) for c in self.cfgs]))
        gains = self.gains or [1.0] * self.R
        self.net = [network_record(c, g, self.n_classes) for c, g in zip(self.cfgs, gains)]
        # Weight bounds per replica and layer: the layer's own, else the cell's.
        self.fp = np.array([[[c.wmin if lay.wmin is None else lay.wmin,
                              c.wmax if lay.wmax is None else lay.wmax]
                             for lay in self.layers] for c in self.cfgs], np.float32)
        self.steps = round(self.cfgs[0].time / self.cfgs[0].dt)
        self.threads = worker_threads()
        self.conv = [n for n, lay in enumerate(self.layers) if lay.kind == "conv"]
        self.shape = self.shapes[-1]
        self.decider = decision_layer(self.layers)
        # The decision layer's outcomes: this batch's (hits, misses, silent), the last
        # finished batch's hit and miss rates (-1 before the first: rates as declared),
        # and (hits, misses, silent) per finished epoch of the layer. Checkpoints keep
        # them (state), so a resumed run adapts its rates as an unbroken one.
        self.batch = np.zeros((self.R, 3), np.int64)
        self.last_rates = np.full((self.R, 2), -1.0)
        self.epoch_outcomes = np.zeros((self.R, 0, 3), np.int64)
        self.epoch_now = np.zeros((self.R, 3), np.int64)
        # Layer inputs the frozen layers below made of each training image (uint8
        # times), per replica: a deterministic code gives the same spikes every epoch.
        self._kept: tuple[int, np.ndarray, list[np.ndarray]] | None = None
        self.cacheable = (all(registry.get("encoder", c.encoder).deterministic
                              for c in self.cfgs) and self.steps < 255)

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
        """The weights of every conv layer and the decision layer's outcome counts (a
        copy)."""
        return {"W": self.W.copy(), "decision_batch": self.batch.copy(),
                "decision_rates": self.last_rates.copy(),
                "decision_epochs": self.epoch_outcomes.copy(),
                "decision_epoch_now": self.epoch_now.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from :meth:`state`'s weights and counts."""
        self.W = np.array(state["W"], dtype=np.float32, order="C")
        if "decision_batch" in state:  # checkpoints before decision layers lack them
            self.batch = np.array(state["decision_batch"], np.int64)
            self.last_rates = np.array(state["decision_rates"], np.float64)
            self.epoch_outcomes = np.array(state["decision_epochs"], np.int64)
            self.epoch_now = np.array(state["decision_epoch_now"], np.int64)
        self._kept = None

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
        learn: those presentations are not simulated); with a decision layer, its right
        decisions over its last training epoch."""
        out: Metrics = {"train_exc_spikes_per_sample": float(stats.exc_spikes[r].mean()),
                        "diverged_at_sample": None}
        if self.decider >= 0 and self.epoch_outcomes.shape[1]:
            hits, misses, silent = self.epoch_outcomes[r, -1]
            out["train_decision_accuracy"] = float(hits / max(1, hits + misses + silent))
        return out

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
        level = self.rule_level[r][layer]
        a_plus, a_minus = self.layers[layer].rates(image)
        settings = {"nu_post": a_plus, "nu_pre": a_minus}
        if level.decision_rule and self.last_rates[r, 0] >= 0:
            settings = registry.module(level).adapted(cfg, a_plus, a_minus,
                                                      *self.last_rates[r])
        return level_record(level, cfg.with_settings(**settings))

    def _adapt_batch(self, layer: int) -> int:
        """Training images per rate-adaptation batch of a decision layer's rule (0: it
        does not adapt; every replica shares the cell's ``adapt_batch``)."""
        if layer != self.decider or not any(lv[layer].decision_rule
                                            for lv in self.rule_level):
            return 0
        return int(self.cfgs[0].adapt_batch)

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
            if layer == self.decider:
                # Outcomes are counted per epoch, and rates change per batch.
                left = min(left, self.cfgs[0].n_train - image % self.cfgs[0].n_train)
                every = self._adapt_batch(layer)
                if every:
                    left = min(left, every - image % every)
            hi = min(K, k + left, k + chunk)
            bounds.append((k, hi))
            k = hi
        return bounds

    def kept_inputs(self, X: np.ndarray, layer: int) -> tuple[int, list[np.ndarray]]:
        """(first layer to run, per replica the kept inputs of ``layer``): ``(layer,
        kept)`` when the code is deterministic, computed once per (layer, X) as the
        frozen layers below make them; else ``(0, dummies)`` (every image from the
        encoder)."""
        if layer == 0 or not self.cacheable:
            return 0, [np.zeros((1, 1), np.uint8)] * self.R
        # The protocol hands over a new view of the same training array at every
        # segment: the same buffer, shape and layer is the same input. The cache holds
        # that array, so its buffer cannot be freed and reused by another one.
        if (self._kept is not None and self._kept[0] == layer
                and _same_buffer(self._kept[1], X)):
            return layer, self._kept[2]
        self._kept = None  # free the old layer's before taking the new one's
        n = int(self.off[layer + 1] - self.off[layer])
        kept = [np.empty((len(X), n), np.uint8) for _ in range(self.R)]
        rows = np.arange(len(X), dtype=np.int64)
        blocks = max(1, self.threads * 4 // self.R)
        bounds = [len(X) * b // blocks for b in range(blocks + 1)]

        def run(task: int) -> None:
            r, b = divmod(task, blocks)
            a, z = bounds[b], bounds[b + 1]
            times = np.empty((z - a, n), np.int32)
            self.kernels[r].stack_times(X, rows[a:z], a, self.W[r], self.geo, self.off,
                                        self.thr, self.net[r][0], self.steps, 0, layer,
                                        times)
            kept[r][a:z] = times

        run_tasks(run, self.R * blocks, self.threads)
        self._kept = (layer, X, kept)
        return layer, kept

    def _count_outcomes(self, outcome: np.ndarray, image_end: int) -> None:
        """Add a decision layer's outcomes ``[R, k]`` (1 right, 0 wrong, -1 silent) of a
        run of images ending at the layer's image ``image_end``; close the batch and the
        epoch when they end there."""
        counts = np.stack([(outcome == 1).sum(1), (outcome == 0).sum(1),
                           (outcome == -1).sum(1)], 1).astype(np.int64)
        self.batch += counts
        self.epoch_now += counts
        every = self._adapt_batch(self.decider)
        if every and image_end % every == 0:
            self.last_rates = self.batch[:, :2] / every
            self.batch[:] = 0
        if image_end % self.cfgs[0].n_train == 0:
            self.epoch_outcomes = np.concatenate(
                [self.epoch_outcomes, self.epoch_now[:, None]], 1)
            self.epoch_now = np.zeros_like(self.epoch_now)

    def train(self, X: np.ndarray, Y: np.ndarray, orders: np.ndarray, *, start: int = 0,
              chunk: int = 500, on_progress: Callable[[int], None] | None = None
              ) -> TrainStats:
        """Present ``X[orders[r, k]]`` (class ``Y[...]``) to replica r at positions
        ``start + k``, each training the conv layer the schedule gives it (from its kept
        inputs when the code is deterministic)."""
        R, K = orders.shape
        stats = TrainStats.zeros(R, K)
        X = np.ascontiguousarray(X, dtype=np.float32)
        Y = np.ascontiguousarray(Y, dtype=np.int64)
        orders = sample_orders(X, orders)
        outcome = np.full((R, K), -2, np.int8)
        for lo, hi in self._segments(start, K, chunk):
            layer, image = self.schedule(start + lo)
            first, kept = self.kept_inputs(X, layer)

            def run(r: int) -> None:
                if not self.rule_level[r][layer].plastic and layer != self.decider:
                    return  # weights stay as drawn: nothing to simulate
                self.layer_kernels[r][layer].train_stack(
                    X, kept[r], first, orders[r, lo:hi], start + lo,
                    start + lo - image, layer, self.W[r], self.geo, self.off,
                    self.thr, self.fp[r, layer], self.net[r][0],
                    self._rule_record(r, layer, image)[0], self.steps, 0, Y,
                    self.n_classes, stats.exc_spikes[r, lo:hi], stats.in_spikes[r, lo:hi],
                    outcome[r, lo:hi])

            run_tasks(run, R, self.threads)
            if layer == self.decider:
                self._count_outcomes(outcome[:, lo:hi], image + hi - lo)
            if on_progress is not None:
                on_progress(hi - lo)
        return stats

    def respond(self, X: np.ndarray, orders: np.ndarray, *, phase: int, chunk: int = 1000,
                on_progress: Callable[[int], None] | None = None) -> Responses:
        """Whether each unit of the last layer fired (0/1, uint8) and the first spikes,
        weights frozen, and the decision layer's classes where the stack has one;
        samples run in parallel blocks."""
        R, K = orders.shape
        n = int(np.prod(self.shape))
        out = Responses(np.zeros((R, K, n), np.uint8), np.zeros((R, K, EVENT_CAP, 2), np.int32),
                        np.zeros((R, K), np.int64), np.zeros((R, K), np.int64),
                        shape=self.shape, synops=np.zeros((R, K), np.int64),
                        decisions=np.full((R, K), -1, np.int64) if self.decider >= 0
                        else None)
        decisions = out.decisions if out.decisions is not None else np.zeros((R, K), np.int64)
        X = np.ascontiguousarray(X, dtype=np.float32)
        orders = sample_orders(X, orders)
        for lo in range(0, K, chunk):
            hi = min(K, lo + chunk)
            blocks = max(1, min(hi - lo, -(-self.threads * 4 // R)))
            bounds = [lo + (hi - lo) * b // blocks for b in range(blocks + 1)]

            def run(task: int) -> None:
                r, b = divmod(task, blocks)
                a, z = bounds[b], bounds[b + 1]
                self.kernels[r].respond_stack(
                    X, orders[r, a:z], a, self.W[r], self.geo, self.off, self.thr,
                    self.net[r][0], self.steps, phase, self.n_classes, out.counts[r, a:z],
                    out.events[r, a:z], out.n_events[r, a:z], out.in_spikes[r, a:z],
                    out.synops[r, a:z], decisions[r, a:z])

            run_tasks(run, R * blocks, self.threads)
            if on_progress is not None:
                on_progress(hi - lo)
        return out
