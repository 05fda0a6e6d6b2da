"""Training and evaluation throughput: stock BindsNET against the fused replica kernel.

Both sides run the classic Diehl & Cook network (100 excitatory neurons, Poisson inputs
at 128 Hz, 250 steps of 1 ms, inhibition 120) on the same images in one process:

* **stock** - BindsNET's own ``DiehlAndCook2015``, driven the way its MNIST examples
  drive it: batch 1, one ``PoissonEncoder`` call per image, ``network.run`` with a spike
  ``Monitor`` on ``"Ae"``, then ``network.reset_state_variables()``. Training has learning
  on; evaluation calls ``network.train(mode=False)`` and repeats the loop.
  It runs with whichever torch thread count (1 or torch's default) is faster on the
  warm-up samples, and the ``device`` string says which.
* **ours** - :class:`~stdp_bench.engine.kernel_engine.ReplicaSet` (the fused kernel, CPU) or,
  on CUDA, :class:`~stdp_bench.engine.torch_engine.TorchReplicaSet`: one replica with
  the classic settings, then R replicas made of the cells of the shipped ``factorial``
  grid, each trained on the same images; evaluation is ``respond`` for the R replicas.

Throughput is counted in network-samples per second: R networks each shown N samples in
S seconds give ``R * N / S``. Warm-up presentations (and numba compilation) come before
the clock starts on both sides.

:func:`run_scaling` (``stdp-bench bench --neurons 100,400,1600,6400``) times one classic
network at each size instead, ours and stock, for the cost of larger networks.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from typing import Any

import numpy as np
import torch

from stdp_bench.config import CellConfig, ConfigError
from stdp_bench.execution import Execution
from stdp_bench.protocol import input_gains
from stdp_bench.trainers import trainer_of

# Presentations run before the clock starts (stock), and samples per warm-up call (ours).
STOCK_WARMUP = 3
OURS_WARMUP = 4

RESULT_KEYS = ("device", "engine", "stock_train_sps", "train_sps_r1", "train_sps_rN",
               "train_ratio_r1", "train_ratio_rN", "stock_eval_sps", "eval_sps",
               "eval_ratio", "peak_rss_mb", "stock_samples", "samples", "replicas",
               "time_steps")


def cpu_name() -> str:
    """CPU model from /proc/cpuinfo (else :func:`platform.processor`) and core count."""
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    return f"{model} ({os.cpu_count()} cores)"


def bench_cells(replicas: int, dataset: str = "mnist") -> list[CellConfig]:
    """The first ``replicas`` cells of the shipped ``factorial`` grid (45 of them).

    More than 45 replicas cycle through the grid again with the seed raised, so every
    replica is a distinct network. ``dataset`` replaces the grid's dataset.
    """
    from stdp_bench.grid import expand
    from stdp_bench.grid_file import load_grid, resolve_grid_path

    if replicas < 1:
        raise ConfigError(f"replicas = {replicas} must be at least 1")
    base = [c.config for c in expand(load_grid(resolve_grid_path("factorial")))]
    base = [c for c in base if c.seed == base[0].seed]  # the 45 cells of one seed
    return [base[i % len(base)].with_settings(dataset=dataset,
                                              seed=base[i % len(base)].seed + i // len(base))
            for i in range(replicas)]


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if value < 1:
            raise ConfigError(f"{name} = {value} must be at least 1")


def _device_label(execution: Execution) -> str:
    """What both sides run on (the stock side's thread count is added once known)."""
    if execution.device == "cuda":
        return (f"cuda: {torch.cuda.get_device_name(0)} (stock BindsNET and ours, the "
                f"torch replica engine)")
    return f"cpu: {cpu_name()}"


def _indices(n: int, size: int, start: int = 0) -> np.ndarray:
    """``n`` sample indices from ``start``, wrapping around a split of ``size`` images."""
    return (start + np.arange(n, dtype=np.int64)) % size


def _stock_network(cfg: CellConfig, n_input: int, image_shape: tuple[int, int],
                   device: str):
    """BindsNET's DiehlAndCook2015 as eth_mnist builds it, with a spike monitor on Ae."""
    from bindsnet.models import DiehlAndCook2015
    from bindsnet.network.monitors import Monitor

    network = DiehlAndCook2015(n_inpt=n_input, n_neurons=cfg.n_neurons, exc=cfg.exc,
                               inh=cfg.inh, dt=cfg.dt, norm=cfg.norm,
                               theta_plus=cfg.theta_plus, inpt_shape=(1, *image_shape))
    steps = int(cfg.time / cfg.dt)
    monitor = Monitor(network.layers["Ae"], state_vars=["s"], time=steps, device=device)
    network.add_monitor(monitor, name="Ae_spikes")
    if device != "cpu":
        network.to(device)
    return network, monitor


def _stock_loop(network, monitor, x: np.ndarray, idx: np.ndarray, cfg: CellConfig,
                image_shape: tuple[int, int], device: str) -> float:
    """Present ``x[idx]`` one at a time, batch 1; returns the seconds taken."""
    from bindsnet.encoding import PoissonEncoder

    encoder = PoissonEncoder(time=cfg.time, dt=cfg.dt)
    steps = int(cfg.time / cfg.dt)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for i in idx:
        image = torch.from_numpy(x[i]).view(1, *image_shape) * cfg.intensity_hz
        spikes = encoder(image)
        if device != "cpu":
            spikes = spikes.to(device)
        network.run(inputs={"X": spikes.view(steps, 1, 1, *image_shape)}, time=cfg.time)
        monitor.get("s")  # what the examples read back after each sample
        network.reset_state_variables()
    sync()
    return time.perf_counter() - t0


def _pick_threads(network, monitor, ds, cfg: CellConfig, device: str) -> int:
    """Torch intra-op thread count that runs stock BindsNET fastest here (1 or default).

    A batch-1, 100-neuron network gains little from intra-op threads, and on a busy
    machine their spin-waiting can slow it down many times over; so the stock side gets
    whichever is faster on a short warm-up, the fairest setting for it.
    """
    default = torch.get_num_threads()
    if device != "cpu" or default == 1:
        return default
    times = {}
    for threads in (default, 1):
        torch.set_num_threads(threads)
        times[threads] = _stock_loop(network, monitor, ds.x_train,
                                     _indices(STOCK_WARMUP, len(ds.x_train)), cfg,
                                     ds.image_shape, device)
    return min(times, key=times.get)


def _stock(ds, cfg: CellConfig, n: int, device: str) -> tuple[float, float, int]:
    """Stock BindsNET train and eval network-samples per second on ``n`` images each.

    Returns the two rates and the torch thread count they were measured with.
    """
    network, monitor = _stock_network(cfg, ds.n_input, ds.image_shape, device)
    default = torch.get_num_threads()
    try:
        network.train(mode=True)
        threads = _pick_threads(network, monitor, ds, cfg, device)  # also the warm-up
        torch.set_num_threads(threads)
        train_s = _stock_loop(network, monitor, ds.x_train,
                              _indices(n, len(ds.x_train), STOCK_WARMUP), cfg,
                              ds.image_shape, device)
        network.train(mode=False)
        _stock_loop(network, monitor, ds.x_test, _indices(STOCK_WARMUP, len(ds.x_test)),
                    cfg, ds.image_shape, device)
        eval_s = _stock_loop(network, monitor, ds.x_test,
                             _indices(n, len(ds.x_test), STOCK_WARMUP), cfg,
                             ds.image_shape, device)
    finally:
        torch.set_num_threads(default)
    return n / train_s, n / eval_s, threads


def _replica_set(cfgs: list[CellConfig], ds, gains: list[float], execution: Execution):
    # The engine a run of these cells would get (the protocol's trainer picks it).
    return trainer_of(cfgs[0]).build(cfgs, ds, gains, execution)


def _sync(execution: Execution) -> None:
    if execution.device == "cuda":
        torch.cuda.synchronize()


def _ours_train(ds, cfgs: list[CellConfig], n: int, execution: Execution):
    """Train fresh replicas on the same ``n`` images; returns (set, samples per second)."""
    gains = input_gains(cfgs, ds)
    R = len(cfgs)
    # Warm-up on a throwaway set: loads (or compiles) the kernels before the clock.
    warm = _replica_set(cfgs, ds, gains, execution)
    warm.train(ds.x_train, ds.y_train,
               np.tile(_indices(OURS_WARMUP, len(ds.x_train)), (R, 1)))
    rs = _replica_set(cfgs, ds, gains, execution)
    orders = np.tile(_indices(n, len(ds.x_train)), (R, 1))
    _sync(execution)
    t0 = time.perf_counter()
    rs.train(ds.x_train, ds.y_train, orders)
    _sync(execution)
    return rs, R * n / (time.perf_counter() - t0)


def _ours_eval(rs, ds, m: int) -> float:
    """``respond`` of every replica on the same ``m`` test images: samples per second."""
    R = rs.R
    rs.respond(ds.x_test, np.tile(_indices(OURS_WARMUP, len(ds.x_test)), (R, 1)), phase=2)
    orders = np.tile(_indices(m, len(ds.x_test)), (R, 1))
    t0 = time.perf_counter()
    rs.respond(ds.x_test, orders, phase=2)  # returns numpy: already synchronised
    return R * m / (time.perf_counter() - t0)


def run_bench(*, replicas: int = 45, samples: int = 500, samples_r1: int = 2000,
              eval_samples: int = 2000, stock_samples: int = 30,
              data_dir: str | os.PathLike | None = None, device: str = "auto",
              dataset: str = "mnist") -> dict[str, Any]:
    """Time stock BindsNET and the fused kernel on the same images; return the numbers.

    Args:
        replicas: R, the replicas trained together (cells of the ``factorial`` grid).
        samples: training samples per replica for the R-replica run.
        samples_r1: training samples for the single classic replica.
        eval_samples: test samples per replica for the R-replica ``respond``.
        stock_samples: timed samples for stock BindsNET, in training and in evaluation
            (after ``STOCK_WARMUP`` untimed ones each).
        data_dir: data root for MNIST (else ``$STDP_BENCH_DATA``, else ``./data``).
        device: ``"auto"`` (cuda when torch sees one), ``"cpu"`` or ``"cuda"``. On cuda
            both stock BindsNET and ours (the torch replica engine) run on the GPU; on
            the CPU ours is the fused kernel.
        dataset: ``"mnist"`` (28x28) or ``"digits"`` (8x8, offline; for tests).

    Returns:
        ``device``; ``stock_train_sps``, ``train_sps_r1``, ``train_sps_rN`` (the R-replica
        run, whatever R is), ``stock_eval_sps``, ``eval_sps`` in network-samples per
        second; ``train_ratio_r1``, ``train_ratio_rN``, ``eval_ratio`` (ours / stock);
        ``peak_rss_mb`` of this process; and ``stock_samples``, ``samples`` (per replica,
        R-replica run), ``replicas``, ``time_steps``.
    """
    from stdp_bench.data import load_dataset

    execution = Execution.resolve(device, "auto")
    _check_counts(samples=samples, samples_r1=samples_r1, eval_samples=eval_samples,
                  stock_samples=stock_samples)
    ds = load_dataset(dataset, data_dir)
    classic = CellConfig(dataset=dataset)
    cells = bench_cells(replicas, dataset)

    use_cuda = execution.device == "cuda"
    stock_device = execution.device
    label = _device_label(execution)

    stock_train, stock_eval, threads = _stock(ds, classic, stock_samples, stock_device)
    if not use_cuda:
        label += f"; stock BindsNET with {threads} torch thread{'s' * (threads > 1)}"
    _, train_r1 = _ours_train(ds, [classic], samples_r1, execution)
    rs, train_rn = _ours_train(ds, cells, samples, execution)
    eval_sps = _ours_eval(rs, ds, eval_samples)

    return {
        "device": label,
        "engine": execution.engine,
        "stock_train_sps": stock_train,
        "train_sps_r1": train_r1,
        "train_sps_rN": train_rn,
        "train_ratio_r1": train_r1 / stock_train,
        "train_ratio_rN": train_rn / stock_train,
        "stock_eval_sps": stock_eval,
        "eval_sps": eval_sps,
        "eval_ratio": eval_sps / stock_eval,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stock_samples": stock_samples,
        "samples": samples,
        "replicas": len(cells),
        "time_steps": int(classic.time / classic.dt),
    }


def scaled_count(base: int, n_neurons: int, floor: int) -> int:
    """Samples to time at ``n_neurons``: ``base`` at 100 neurons, fewer as the network
    grows (the cost per sample grows with it), never fewer than ``floor``.

    >>> scaled_count(2000, 100, 100), scaled_count(2000, 1600, 100), scaled_count(30, 6400, 3)
    (2000, 125, 3)
    """
    return max(floor, base * 100 // n_neurons)


def run_scaling(neurons: list[int], *, samples_r1: int = 2000, eval_samples: int = 2000,
                stock_samples: int = 30, stock_max_neurons: int = 6400,
                data_dir: str | os.PathLike | None = None, device: str = "auto",
                dataset: str = "mnist") -> dict[str, Any]:
    """Throughput of one classic network at each size in ``neurons``, ours and stock.

    At each size n: stock BindsNET (when ``n <= stock_max_neurons``) and one replica of
    ours (the classic cell with ``n_neurons = n``) train on the same images, then respond
    to the same test images. Sample counts shrink with n (:func:`scaled_count`): at 100
    neurons ours trains on ``5 * samples_r1`` and responds to ``10 * eval_samples``
    images (at least 500 and 2,000 at any size), so that each timing lasts a second or
    more; stock gets ``stock_samples`` (at least 3). Evaluation of one replica runs its
    samples in blocks on every core, so ``eval_sps`` is a two-core figure on a two-core
    machine; training is one network, one sample after the other.

    Returns ``device``, ``engine``, ``time_steps``, ``neurons`` and, per size n, the keys
    ``train_sps_n{n}``, ``eval_sps_n{n}``, ``train_samples_n{n}``, ``eval_samples_n{n}``
    and, where stock ran, ``stock_train_sps_n{n}``, ``stock_eval_sps_n{n}``,
    ``stock_samples_n{n}``, ``train_ratio_n{n}``, ``eval_ratio_n{n}``.
    """
    from stdp_bench.data import load_dataset

    execution = Execution.resolve(device, "auto")
    if not neurons:
        raise ConfigError("neurons is empty; give sizes such as 100,400,1600,6400")
    for n in neurons:
        if n < 1:
            raise ConfigError(f"neurons: {n} must be at least 1")
    _check_counts(samples_r1=samples_r1, eval_samples=eval_samples,
                  stock_samples=stock_samples)
    ds = load_dataset(dataset, data_dir)
    classic = CellConfig(dataset=dataset)
    result: dict[str, Any] = {"device": _device_label(execution), "engine": execution.engine,
                              "time_steps": int(classic.time / classic.dt),
                              "neurons": list(neurons)}
    stock_threads = set()
    for n in neurons:
        cfg = classic.with_settings(n_neurons=n)
        if n <= stock_max_neurons:
            k = scaled_count(stock_samples, n, 3)
            st_train, st_eval, threads = _stock(ds, cfg, k, execution.device)
            stock_threads.add(threads)
            result.update({f"stock_train_sps_n{n}": st_train, f"stock_eval_sps_n{n}": st_eval,
                           f"stock_samples_n{n}": k})
        k_train = scaled_count(5 * samples_r1, n, 500)
        k_eval = scaled_count(10 * eval_samples, n, 2000)
        rs, train_sps = _ours_train(ds, [cfg], k_train, execution)
        eval_sps = _ours_eval(rs, ds, k_eval)
        result.update({f"train_sps_n{n}": train_sps, f"eval_sps_n{n}": eval_sps,
                       f"train_samples_n{n}": k_train, f"eval_samples_n{n}": k_eval})
        if f"stock_train_sps_n{n}" in result:
            result[f"train_ratio_n{n}"] = train_sps / result[f"stock_train_sps_n{n}"]
            result[f"eval_ratio_n{n}"] = eval_sps / result[f"stock_eval_sps_n{n}"]
    if stock_threads and execution.device == "cpu":
        shown = "/".join(str(t) for t in sorted(stock_threads))
        result["device"] += f"; stock BindsNET with {shown} torch thread(s)"
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def format_scaling(result: dict[str, Any]) -> str:
    """Human-readable table of a :func:`run_scaling` result, one row per size."""
    lines = [f"device: {result['device']}   ({result['time_steps']} steps per sample, "
             f"one network)",
             f"{'neurons':>7} {'stock train':>12} {'ours train':>11} {'x':>7} "
             f"{'stock eval':>11} {'ours eval':>10} {'x':>7}",
             "-" * 70]

    def cell(key: str, fmt: str) -> str:
        return format(result[key], fmt) if key in result else "-"

    for n in result["neurons"]:
        lines.append(f"{n:>7} {cell(f'stock_train_sps_n{n}', '.2f'):>12} "
                     f"{cell(f'train_sps_n{n}', '.1f'):>11} "
                     f"{cell(f'train_ratio_n{n}', '.0f'):>7} "
                     f"{cell(f'stock_eval_sps_n{n}', '.2f'):>11} "
                     f"{cell(f'eval_sps_n{n}', '.1f'):>10} "
                     f"{cell(f'eval_ratio_n{n}', '.0f'):>7}")
    lines.append("samples/s; x: ours / stock")
    lines.append(f"peak RSS: {result['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def format_table(result: dict[str, Any], *, samples_r1: int | None = None,
                 eval_samples: int | None = None) -> str:
    """Human-readable table of a :func:`run_bench` result."""
    R = result["replicas"]
    r1 = f"{samples_r1} samples" if samples_r1 else ""
    ev = f"{R} x {eval_samples} samples" if eval_samples else f"{R} replicas"
    rows = [
        ("stock BindsNET, train (batch 1)", result["stock_train_sps"], 1.0,
         f"{result['stock_samples']} samples"),
        ("ours, train, R=1 (classic)", result["train_sps_r1"], result["train_ratio_r1"], r1),
        (f"ours, train, R={R} (factorial)", result["train_sps_rN"],
         result["train_ratio_rN"], f"{R} x {result['samples']} samples"),
        ("stock BindsNET, eval (batch 1)", result["stock_eval_sps"], 1.0,
         f"{result['stock_samples']} samples"),
        (f"ours, eval, R={R} (respond)", result["eval_sps"], result["eval_ratio"], ev),
    ]
    lines = [f"device: {result['device']}   ({result['time_steps']} steps per sample)",
             f"{'run':<34} {'net-samples/s':>14} {'x stock':>9}  workload",
             "-" * 78]
    for name, sps, ratio, work in rows:
        lines.append(f"{name:<34} {sps:>14.1f} {ratio:>9.1f}  {work}")
    lines.append(f"peak RSS: {result['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    """``--neurons`` as sizes; a bad entry is a ConfigError naming it.

    >>> parse_sizes("100, 400")
    [100, 400]
    """
    sizes = []
    for part in text.split(","):
        try:
            sizes.append(int(part.strip()))
        except ValueError:
            raise ConfigError(f"--neurons: {part.strip()!r} is not a whole number; give "
                              f"sizes such as 100,400,1600,6400") from None
    return sizes
