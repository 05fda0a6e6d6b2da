"""Throughput of a layer stack, per layer: the event-driven stack kernel against its
dense torch twin (``stdp-bench bench --architecture kheradpisheh``).

Both run the network of the shipped ``kheradpisheh2018`` grid (seed 0, multiplicative
STDP) on the same MNIST images after Kheradpisheh's DoG front end, one network on one
thread (the twin with one torch thread):

* layer 1 trains on ``samples`` images from its initial weights (its a+ doubling as
  scheduled), then layer 2 trains on ``samples`` images on top of that layer 1 (each
  image runs through layer 1 and the pooling first, as the twin does:
  ``train_sps_layer2``); then as a run trains it, from layer 1's pooled output kept
  once per image (``kept_sps_layer2``: keeping it, ``train_sps_layer2_kept``: an epoch
  reading it; ``recipe_hours`` counts both);
* evaluation runs the whole stack with plasticity off.

The twin (:mod:`stdp_bench.networks.stack_torch`) is SpykeTorch's formulation: spike
waves over all steps, ``conv2d`` and ``max_pool2d`` on them; its input waves are encoded
before its clock, ours inside it. Warm-up images (and numba's compilation) come first.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import numpy as np

from stdp_bench.config import CellConfig, ConfigError, make_cell

WARMUP = 5


# On 8x8 digits (a quick offline run): a stack of the same kinds that fits them, on the
# pixels (Kheradpisheh's DoG threshold is for 28x28 MNIST at 0..255).
_DIGITS_LAYERS = ("conv(maps=8,kernel=3,pad=1,threshold=2.0,winners=2,radius=1,epochs=2,"
                  "double_every=500);pool(kernel=2,stride=2);conv(maps=10,kernel=2,"
                  "threshold=1.0,winners=2,epochs=20,inhibit_input=true);pool(kernel=2)")


def stack_bench_cell(dataset: str = "mnist") -> CellConfig:
    """The ``kheradpisheh2018`` grid's cell (multiplicative STDP, seed 0); on ``digits``,
    a small stack of the same kinds on the pixels.

    >>> stack_bench_cell("digits").layers.startswith("conv(maps=8")
    True
    """
    from stdp_bench.grid_file import load_grid, resolve_grid_path

    if dataset not in ("mnist", "digits"):
        raise ConfigError(f"--dataset {dataset!r}: the kheradpisheh bench runs on mnist "
                          "(or digits, a small stack for a quick run)")
    settings = dict(load_grid(resolve_grid_path("kheradpisheh2018")).settings)
    settings.update(rule="multiplicative", seed=0)
    if dataset == "digits":
        settings.update(dataset="digits", preprocess="none", layers=_DIGITS_LAYERS,
                        n_train=1000, n_label=797, n_test=500)
    return make_cell(settings)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_stack_bench(*, samples: int = 3000, eval_samples: int = 2000,
                    torch_samples: int = 100, data_dir=None, dataset: str = "mnist"
                    ) -> dict[str, Any]:
    """Per-layer training and whole-stack evaluation samples/s of the stack kernel and
    of the torch twin; keys ``train_sps_layer1``, ``train_sps_layer2``, ``eval_sps`` (ours),
    ``torch_*`` (the twin), their ratios, and ``recipe_hours``: the grid's schedule (its
    epochs per layer over ``n_train``, then its labelling and test samples) at our
    rates."""
    import torch

    from stdp_bench.data import load_dataset
    from stdp_bench.engine.stack_engine import StackReplicaSet
    from stdp_bench.networks import stack_torch

    for name, value in dict(samples=samples, eval_samples=eval_samples,
                            stock_samples=torch_samples).items():
        if value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {value} must be at least 1")
    cfg = stack_bench_cell(dataset)
    ds = load_dataset(dataset, data_dir, preprocess=cfg.preprocess)
    X, Y, Xt = ds.x_train, ds.y_train, ds.x_test
    ours = StackReplicaSet([cfg], ds.input_shape)
    ours.threads = 1
    conv = ours.conv
    span1 = ours.layers[conv[0]].epochs * cfg.n_train  # where layer 2's positions start
    n = len(X)

    def order(k: int, lo: int = 0) -> np.ndarray:
        return ((lo + np.arange(k)) % n)[None]

    ours.train(X, Y, order(WARMUP))  # compiles before the clock
    start = ours.state()
    out: dict[str, Any] = {}
    out["train_sps_layer1"] = samples / _timed(
        lambda: ours.train(X, Y, order(samples, WARMUP), start=WARMUP))
    layer1 = ours.state()
    # Layer 2 as the twin computes it (every image through layer 1 and the pooling),
    # then as a run trains it: layer 1's pooled output kept once per image (the latency
    # code is deterministic), every epoch reading it.
    ours.cacheable = False
    ours.train(X, Y, order(WARMUP), start=span1)
    warm = ours.state()
    out["train_sps_layer2"] = samples / _timed(
        lambda: ours.train(X, Y, order(samples, WARMUP), start=span1 + WARMUP))
    ours.load_state(warm)
    ours.cacheable = True
    ours.kept_inputs(np.ascontiguousarray(X[:WARMUP]), conv[1])  # compiles
    head = np.ascontiguousarray(X[:WARMUP + samples])
    out["kept_sps_layer2"] = len(head) / _timed(lambda: ours.kept_inputs(head, conv[1]))
    out["train_sps_layer2_kept"] = samples / _timed(
        lambda: ours.train(head, Y, order(samples, WARMUP) % len(head),
                           start=span1 + WARMUP))
    ours.respond(Xt, order(WARMUP), phase=2)
    out["eval_sps"] = eval_samples / _timed(
        lambda: ours.respond(Xt, order(eval_samples) % len(Xt), phase=2))

    # The twin, from the same initial weights, on the same images.
    T = ours.steps
    net = ours.net[0][0]
    kernel = ours.kernels[0]
    n_in = X.shape[1]
    scratch = (np.zeros(n_in * T + 1, np.int32), np.zeros(n_in * T + 1, np.int32),
               np.zeros(T + 1, np.int64), np.zeros(n_in * T + 1, np.int32))

    def times(x: np.ndarray) -> torch.Tensor:
        tin = np.zeros(n_in, np.int32)
        kernel.input_times(x, net, T, np.zeros(1, np.uint64), *scratch, tin)
        return torch.as_tensor(tin.astype(np.int64)).view(ds.input_shape)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ins = [times(X[i]) for i in range(WARMUP + torch_samples)]
        test_ins = [times(Xt[i]) for i in range(torch_samples)]

        def kernels(state: dict[str, np.ndarray]) -> list:
            ours.load_state(state)
            return [torch.as_tensor(ours.filters(0, k)) if lay.kind == "conv" else None
                    for k, lay in enumerate(ours.layers)]

        def twin_train(W: list, layer: int, lo: int, hi: int) -> None:
            for k in range(lo, hi):
                a_plus, a_minus = ours.layers[layer].rates(k)
                stack_torch.train_image(ins[k], ours.layers, W, T, layer, a_plus, a_minus,
                                        cfg.wmin, cfg.wmax)

        W = kernels(start)
        twin_train(W, conv[0], 0, WARMUP)
        out["torch_train_sps_layer1"] = torch_samples / _timed(
            lambda: twin_train(W, conv[0], WARMUP, WARMUP + torch_samples))
        W = kernels(layer1)
        out["torch_train_sps_layer2"] = torch_samples / _timed(
            lambda: twin_train(W, conv[1], WARMUP, WARMUP + torch_samples))
        out["torch_eval_sps"] = torch_samples / _timed(
            lambda: [stack_torch.stack_times(tin, ours.layers, W, T) for tin in test_ins])
    finally:
        torch.set_num_threads(threads)
    for key in ("train_sps_layer1", "train_sps_layer2", "eval_sps"):
        out[f"ratio_{key}"] = out[key] / out[f"torch_{key}"]
    epochs = [ours.layers[k].epochs for k in conv]
    # A run keeps layer 1's output for the whole training split once, then trains
    # layer 2's epochs from it.
    seconds = (epochs[0] * cfg.n_train / out["train_sps_layer1"]
               + len(X) / out["kept_sps_layer2"]
               + sum(epochs[1:]) * cfg.n_train / out["train_sps_layer2_kept"]
               + (cfg.n_label + cfg.n_test) / out["eval_sps"])
    return {"architecture": "kheradpisheh", "engine": "kernel", **out,
            "recipe_hours": seconds / 3600, "recipe_epochs": epochs,
            "samples": samples, "eval_samples": eval_samples,
            "torch_samples": torch_samples, "time_steps": T,
            "features": int(np.prod(ours.shape)),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def format_stack_table(result: dict[str, Any]) -> str:
    """Human-readable table of a :func:`run_stack_bench` result."""
    lines = [f"kheradpisheh: {result['features']} features, {result['time_steps']} steps "
             "per sample, one network on one thread",
             f"{'run':<26} {'ours samples/s':>15} {'torch twin':>11} {'x twin':>7}",
             "-" * 62]
    for name, key in (("train, layer 1", "train_sps_layer1"),
                      ("train, layer 2", "train_sps_layer2"), ("evaluate", "eval_sps")):
        lines.append(f"{name:<26} {result[key]:>15.1f} {result['torch_' + key]:>11.1f} "
                     f"{result['ratio_' + key]:>7.1f}")
    lines.append(f"{'train, layer 2, kept input':<26} {result['train_sps_layer2_kept']:>15.1f} "
                 f"(keeping it: {result['kept_sps_layer2']:.1f} images/s, once)")
    lines.append(f"the grid's recipe ({' + '.join(map(str, result['recipe_epochs']))} "
                 f"epochs, then its readout samples) at these rates: "
                 f"{result['recipe_hours'] * 60:.0f} minutes per seed")
    lines.append(f"peak RSS: {result['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)
