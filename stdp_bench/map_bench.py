"""Throughput of conv / local STDP layers: the BindsNET layers against the map kernel
(``stdp-bench bench --architecture conv|local``).

Both sides run the layer of the shipped ``conv`` grid (MNIST, 32 maps of 5x5 fields at
stride 2 on a 12x12 grid, adaptive neurons, Poisson inputs at 256 Hz for 100 steps,
first-spike STDP, 3 winners per place) on the same images, in one process:

* **bindsnet** - :class:`~stdp_bench.engine.feature_engine.FeatureCell`: BindsNET's
  ``Network.run`` at batch 1 for training (one torch thread: faster for tiny ops, see
  its ``train``), batched frozen runs of 200 samples for evaluation (torch's threads);
* **ours** - :class:`~stdp_bench.engine.map_engine.MapReplicaSet`: one network on one
  thread (``r1``), then one replica per CPU thread (``rN``, cells of different seeds).

Counts are network-samples per second; warm-up samples (and numba compilation) come
before the clock on both sides.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import numpy as np

from stdp_bench.config import CellConfig, ConfigError, make_cell

ARCHITECTURES = ("conv", "local")
WARMUP = 3
# BindsNET's frozen evaluation runs this many samples per Network.run (FeatureCell's).
STOCK_EVAL_CHUNK = 200


def bench_cell(architecture: str, dataset: str = "mnist", seed: int = 0) -> CellConfig:
    """The cell both sides run: the ``conv`` grid's layer on pixels."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"--architecture {architecture!r} is not allowed here; allowed: "
                          f"dc2015, {', '.join(ARCHITECTURES)}, kheradpisheh")
    small = dataset == "digits"  # 8x8 images: a layer that fits them
    return make_cell(dict(
        dataset=dataset, architecture=architecture, encoder="poisson", neuron="adaptive",
        rule="stdp", conv_learning="first_spike", time=100, intensity_hz=256.0,
        kernel_size=3 if small else 5, stride=1 if small else 2, n_filters=32, winners=3,
        conv_inh=5.0, conv_norm=10.0, seed=seed))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_map_bench(architecture: str, *, samples: int = 1000, eval_samples: int = 2000,
                  stock_samples: int = 30, stock_eval_samples: int | None = None,
                  data_dir=None, dataset: str = "mnist") -> dict[str, Any]:
    """Time the BindsNET layer and the map kernel on the same images.

    BindsNET trains on ``stock_samples`` and evaluates ``stock_eval_samples`` in one
    batched run (default: ``stock_samples``, at least its usual batch of 200).

    Returns ``stock_train_sps``, ``stock_eval_sps``, ``train_sps_r1``, ``eval_sps_r1``
    (one network, one thread), ``train_sps_rN``, ``eval_sps_rN`` (``replicas`` networks,
    one per thread), the ratios ``train_ratio_r1``, ``eval_ratio_r1``,
    ``train_ratio_rN``, ``eval_ratio_rN`` (ours / BindsNET), ``peak_rss_mb`` and the
    workload counts.
    """
    from stdp_bench.data import load_dataset
    from stdp_bench.engine.feature_engine import FeatureCell
    from stdp_bench.engine.kernel_engine import worker_threads
    from stdp_bench.engine.map_engine import MapReplicaSet

    for name, value in dict(samples=samples, eval_samples=eval_samples,
                            stock_samples=stock_samples,
                            stock_eval_samples=stock_eval_samples or 1).items():
        if value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {value} must be at least 1")
    cfg = bench_cell(architecture, dataset)
    ds = load_dataset(dataset, data_dir)
    X, Y, Xt = ds.x_train, ds.y_train, ds.x_test
    shape = ds.input_shape
    first = np.arange(WARMUP)[None]

    stock = FeatureCell(cfg, shape, 1.0, ds.n_classes)
    stock.train(X, Y, first)
    stock_train = stock_samples / _timed(lambda: stock.train(
        X, Y, (WARMUP + np.arange(stock_samples))[None], start=WARMUP))
    n_eval = stock_eval_samples or max(stock_samples, STOCK_EVAL_CHUNK)
    stock.respond(Xt, first, phase=2)
    stock_eval = n_eval / _timed(lambda: stock.respond(
        Xt, np.arange(n_eval)[None] % len(Xt), phase=2, chunk=n_eval))

    threads = worker_threads()
    out: dict[str, Any] = {}
    for tag, R, n_threads in (("r1", 1, 1), ("rN", threads, threads)):
        cfgs = [bench_cell(architecture, dataset, seed=s) for s in range(R)]
        ours = MapReplicaSet(cfgs, shape, [1.0] * R, ds.n_classes)
        ours.threads = n_threads
        ours.train(X, Y, np.tile(first, (R, 1)))  # compiles, before the clock
        order = np.tile((WARMUP + np.arange(samples)) % len(X), (R, 1))
        out[f"train_sps_{tag}"] = R * samples / _timed(
            lambda: ours.train(X, Y, order, start=WARMUP))
        ours.respond(Xt, np.tile(first, (R, 1)), phase=2)
        test = np.tile(np.arange(eval_samples) % len(Xt), (R, 1))
        out[f"eval_sps_{tag}"] = R * eval_samples / _timed(
            lambda: ours.respond(Xt, test, phase=2))
    return {
        "architecture": architecture,
        "engine": "kernel",
        "stock_train_sps": stock_train,
        "stock_eval_sps": stock_eval,
        **out,
        "train_ratio_r1": out["train_sps_r1"] / stock_train,
        "eval_ratio_r1": out["eval_sps_r1"] / stock_eval,
        "train_ratio_rN": out["train_sps_rN"] / stock_train,
        "eval_ratio_rN": out["eval_sps_rN"] / stock_eval,
        "replicas": threads,
        "samples": samples,
        "eval_samples": eval_samples,
        "stock_samples": stock_samples,
        "stock_eval_samples": n_eval,
        "neurons": int(np.prod(stock.shape)),
        "time_steps": round(cfg.time / cfg.dt),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def format_map_table(result: dict[str, Any]) -> str:
    """Human-readable table of a :func:`run_map_bench` result."""
    R = result["replicas"]
    rows = [
        ("bindsnet, train (batch 1)", result["stock_train_sps"], 1.0,
         f"{result['stock_samples']} samples"),
        ("ours, train, 1 network, 1 thread", result["train_sps_r1"],
         result["train_ratio_r1"], f"{result['samples']} samples"),
        (f"ours, train, {R} networks", result["train_sps_rN"], result["train_ratio_rN"],
         f"{R} x {result['samples']} samples"),
        ("bindsnet, eval (batched)", result["stock_eval_sps"], 1.0,
         f"{result['stock_eval_samples']} samples"),
        ("ours, eval, 1 network, 1 thread", result["eval_sps_r1"],
         result["eval_ratio_r1"], f"{result['eval_samples']} samples"),
        (f"ours, eval, {R} networks", result["eval_sps_rN"], result["eval_ratio_rN"],
         f"{R} x {result['eval_samples']} samples"),
    ]
    lines = [f"{result['architecture']}: {result['neurons']} neurons, "
             f"{result['time_steps']} steps per sample",
             f"{'run':<34} {'net-samples/s':>14} {'x bindsnet':>10}  workload", "-" * 80]
    for name, sps, ratio, work in rows:
        lines.append(f"{name:<34} {sps:>14.1f} {ratio:>10.1f}  {work}")
    lines.append(f"peak RSS: {result['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)
