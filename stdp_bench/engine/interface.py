"""The interface every engine implements: what the protocol, the tuner, checkpoints
and model files may rely on (:mod:`stdp_bench.protocol`).

An engine holds R networks (replicas; R = 1 for engines that run one cell at a time)
and trains or probes all of them per call. Positions are global: a presentation's
random streams are keyed by its position in the training order, so training on
``orders[:, :a]`` and then on ``orders[:, a:]`` with ``start=a`` gives what one call on
all of ``orders`` gives, and so does a fresh engine that ``load_state``-s the state
reached at ``a``. ``tests/test_engines.py`` holds every engine to this.

Importing this module imports neither torch nor numba.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from stdp_bench.engine.responses import Responses, TrainStats

Progress = Callable[[int], None]


def sample_orders(X: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """``orders`` as the numba kernels read them (C-ordered int64), refused where an
    index falls outside ``X``: the kernels index without bounds checks, so one would
    read past the array, a crash of the whole process or silent garbage, not an error.

    >>> sample_orders(np.zeros((3, 2)), np.array([[0, 2]])).dtype
    dtype('int64')
    >>> sample_orders(np.zeros((3, 2)), np.array([[0, 3]]))
    Traceback (most recent call last):
    ...
    IndexError: orders index samples 0..3, but X holds 3 (0..2)
    """
    orders = np.ascontiguousarray(orders, dtype=np.int64)
    if orders.size and (orders.min() < 0 or orders.max() >= len(X)):
        raise IndexError(f"orders index samples {orders.min()}..{orders.max()}, but X holds "
                         f"{len(X)} (0..{len(X) - 1})")
    return orders


# Per-replica metrics an engine reports on its test responses, in the order measured.
Metrics = dict[str, float | int | None]


@runtime_checkable
class Engine(Protocol):
    """R networks that learn online and respond with plasticity off."""

    #: What records name as the engine that ran the cells ("kernel", "torch", ...).
    name: str
    #: Where it computes ("cpu", "cuda").
    device: str

    def train(self, X: np.ndarray, Y: np.ndarray, orders: np.ndarray, *, start: int = 0,
              on_progress: Progress | None = None) -> TrainStats:
        """Present ``X[orders[r, k]]`` (label ``Y[...]``) to replica r, plasticity on;
        ``orders[:, 0]`` is training position ``start``."""
        ...

    def respond(self, X: np.ndarray, orders: np.ndarray, *, phase: int,
                on_progress: Progress | None = None) -> Responses:
        """Responses to ``X[orders[r]]`` with weights and thresholds frozen; ``phase``
        keys the random streams (1 labelling, 2 testing)."""
        ...

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to continue training or to predict: weights, thresholds,
        persistent traces (random streams are keyed by position, so no generator).
        Every array has the replicas on its first axis, so a group's state splits into
        its replicas' (``v[r]``) and stacks back (the tuner regroups trials)."""
        ...

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from ``state`` (as :meth:`state` returned it, possibly from another
        process)."""
        ...

    def activity(self, r: int, tested: Responses) -> Metrics:
        """Replica r's activity on the test responses: spikes and synaptic operations
        per sample, silent fraction, and what else this engine measures."""
        ...

    def training_metrics(self, r: int, stats: TrainStats) -> Metrics:
        """Replica r's training statistics worth a column (spikes per presentation,
        retries, where it diverged, ...)."""
        ...

    def arrays(self, r: int) -> dict[str, np.ndarray]:
        """Replica r's learned arrays the results folder keeps (weights, filters)."""
        ...
