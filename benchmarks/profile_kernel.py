"""Where one network's training time goes, per size: encoding, simulation, plasticity and
normalisation, per sample, on one thread (the classic cell: 250 steps, Poisson at 128 Hz).

    python benchmarks/profile_kernel.py 100 400 1600 6400

Each part is timed by calling the composed kernel's own functions on the same MNIST
images: ``gen_events`` (encoding), ``respond_replica`` (encoding + the simulation with
plasticity off), ``train_replica`` (all of it, no retries in the classic cell) and
``normalize``; plasticity is what training adds beyond them. Prints a table and, last, a
JSON line. Runs against whichever stdp_bench is importable (point PYTHONPATH at another
checkout to profile it).
"""

from __future__ import annotations

import inspect
import json
import sys
import time

import numpy as np

from stdp_bench.config import CellConfig
from stdp_bench.data import load_dataset
from stdp_bench.engine.kernel_build import kernel_for
from stdp_bench.replica_params import initial_weights, replica_params
from stdp_bench.protocol import input_gains


def profile(n: int, ds, samples: int) -> dict[str, float]:
    cfg = CellConfig(dataset="mnist", n_neurons=n)
    k = kernel_for(cfg.encoder, cfg.neuron, cfg.rule)
    params = replica_params([cfg], input_gains([cfg], ds), ds.n_classes)
    net, pn, pr = params.network[0], params.neurons[0][0], params.rules[0][0]
    T = round(cfg.time / cfg.dt)
    X = np.ascontiguousarray(ds.x_train, np.float32)
    Y = np.ascontiguousarray(ds.y_train, np.int64)
    order = np.arange(samples, dtype=np.int64)
    W = np.ascontiguousarray(initial_weights(cfg, ds.n_input).numpy())
    theta = np.zeros(n, np.float32)
    # Older kernels take no per-replica clamp flag.
    extra = ([np.ones(1, np.bool_)]
             if "full_clamp" in inspect.signature(k.train_replica.py_func).parameters else [])

    def train(order: np.ndarray) -> None:
        z = np.zeros(len(order), np.int64)
        k.train_replica(X, Y, order, 0, W, theta, net, pn, pr, T, 0, z.copy(), z.copy(),
                        z.copy(), np.zeros(1, np.int64), *extra)

    def respond(order: np.ndarray) -> None:
        K = len(order)
        k.respond_replica(X, order, 0, W, theta, net, pn, pr, T, 2, False,
                          np.zeros((K, n), np.int64), np.zeros((K, 1, 2), np.int32),
                          np.zeros(K, np.int64), np.zeros(K, np.int64))

    def encode(order: np.ndarray) -> None:
        buf = [np.empty(ds.n_input * T + 1, np.int32) for _ in range(3)]
        ptr = np.empty(T + 1, np.int64)
        state = np.zeros(1, np.uint64)
        for s in order:
            state[0] = s
            k.gen_events(X[s], net["rate"], T, net["dt"], state, buf[0], buf[1], ptr, buf[2])

    train(order[:2])  # compiles / loads, and leaves W as a trained network's
    respond(order[:2])
    encode(order[:2])
    k.normalize(W.copy(), net["norm"])
    out = {}
    t = time.perf_counter()
    train(order)
    out["train_ms"] = 1e3 * (time.perf_counter() - t) / samples
    t = time.perf_counter()
    respond(order)
    out["respond_ms"] = 1e3 * (time.perf_counter() - t) / samples
    t = time.perf_counter()
    encode(order)
    out["encode_ms"] = 1e3 * (time.perf_counter() - t) / samples
    Wc = W.copy()
    reps = max(5, samples // 10)
    t = time.perf_counter()
    for _ in range(reps):
        k.normalize(Wc, net["norm"])
    out["normalize_ms"] = 1e3 * (time.perf_counter() - t) / reps
    out["simulate_ms"] = out["respond_ms"] - out["encode_ms"]
    out["plasticity_ms"] = out["train_ms"] - out["respond_ms"] - out["normalize_ms"]
    out["train_sps"] = 1e3 / out["train_ms"]
    return out


def main(sizes: list[int]) -> None:
    ds = load_dataset("mnist", None)
    rows = {}
    print(f"{'neurons':>7} {'train':>8} {'encode':>8} {'simulate':>9} {'plastic':>8} "
          f"{'normalise':>9}   ms per sample, one thread")
    for n in sizes:
        r = profile(n, ds, max(50, 20000 // n))
        rows[n] = r
        print(f"{n:>7} {r['train_ms']:>8.3f} {r['encode_ms']:>8.3f} {r['simulate_ms']:>9.3f} "
              f"{r['plasticity_ms']:>8.3f} {r['normalize_ms']:>9.3f}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100, 400, 1600, 6400])
