"""Where jobs run: in this process, in local worker processes, or as Ray tasks.

Every backend yields each job's records as soon as that job ends; the driver (the
runner) is the only writer of the results folder, so workers never touch it and a
cluster's nodes need not share a file system with the driver. Weight arrays travel back
inside the records (``record["_arrays"]``) and the driver writes them.

* ``local`` with ``workers = 1`` runs jobs one after another in this process, with a
  per-sample progress bar.
* ``local`` with ``workers = N > 1`` runs N jobs at once in spawned processes. A worker
  that dies (killed, out of memory) takes its job down with it; the pool is rebuilt and
  the job retried, up to ``max_retries`` times, before the job's cells get ``error``
  records.
* ``ray`` submits every job as a Ray task (``num_cpus`` per task, a GPU when the
  execution device is cuda). Ray retries a task whose worker died (``max_retries``); a
  task that still fails gives its cells ``error`` records. ``address`` joins a running
  cluster (``auto`` or ``HOST:PORT``); without one a local Ray instance is started.
  Every node needs stdp_bench installed and the data root at the same path.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Callable

from stdp_bench.config import ConfigError
from stdp_bench.grid import Job
from stdp_bench.train import Execution, error_records, job_samples, run_job

BACKENDS = ("local", "ray")
Progress = Callable[[int], None]


@dataclass(frozen=True)
class JobContext:
    """What every job needs besides its cells (picklable: it travels to workers)."""

    grid: str
    factors: tuple[str, ...]
    data_dir: str | None
    execution: Execution


def _run(job: Job, ctx: JobContext, on_progress: Progress | None = None) -> list[dict]:
    return run_job(job, grid=ctx.grid, factors=list(ctx.factors), data_dir=ctx.data_dir,
                   on_progress=on_progress, execution=ctx.execution)


def _set_threads(threads: int) -> None:
    """Numba and torch threads of this process (numba is already imported by now, so its
    environment variable would come too late; ``set_num_threads`` works at run time)."""
    import numba
    import torch

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(max(1, threads))


def _worker_init(threads: int) -> None:
    # N workers share the machine's cores: each gets its share of the threads.
    _set_threads(threads)


def run_local(jobs: list[Job], ctx: JobContext, *, workers: int = 1, max_retries: int = 2,
              on_progress: Progress | None = None) -> Iterator[list[dict]]:
    """Yield each job's records as it finishes, running ``workers`` jobs at a time."""
    if workers < 1:
        raise ConfigError(f"--workers {workers} must be at least 1")
    if workers == 1:
        for job in jobs:
            yield _run(job, ctx, on_progress)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    attempts = {id(job): 0 for job in jobs}
    pending = list(jobs)
    while pending:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                   initializer=_worker_init, initargs=(threads,))
        futures: dict[Future, Job] = {pool.submit(_run, job, ctx): job for job in pending}
        pending = []
        try:
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = futures.pop(fut)
                    try:
                        records = fut.result()
                    except BrokenProcessPool:
                        # A worker died; every job still in this pool is lost with it.
                        attempts[id(job)] += 1
                        if attempts[id(job)] > max_retries:
                            yield error_records(job, ctx.grid, list(ctx.factors),
                                                f"worker process died {attempts[id(job)]} "
                                                "times running this job")
                        else:
                            pending.append(job)
                        continue
                    if on_progress is not None:
                        on_progress(job_samples(job))
                    yield records
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def run_ray(jobs: list[Job], ctx: JobContext, *, address: str | None = None,
            num_cpus: int | None = None, cpus_per_job: float = 1.0, max_retries: int = 3,
            on_progress: Progress | None = None) -> Iterator[list[dict]]:
    """Yield each job's records as its Ray task finishes (see the module docstring)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'stdp_bench[ray]'") from None
    started_here = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"--backend ray: cannot reach a Ray cluster at "
                              f"{address or 'a new local instance'}: {exc}") from None
        started_here = True
    gpus = 1 if ctx.execution.device == "cuda" else 0
    task = ray.remote(num_cpus=cpus_per_job, num_gpus=gpus, max_retries=max_retries,
                      retry_exceptions=False)(_ray_job)
    refs = {task.remote(job, ctx): job for job in jobs}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                job = refs.pop(ref)
                try:
                    records = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - worker lost beyond its retries
                    records = error_records(job, ctx.grid, list(ctx.factors),
                                            f"Ray task failed after {max_retries} retries: "
                                            f"{type(exc).__name__}: {exc}")
                if on_progress is not None:
                    on_progress(job_samples(job))
                yield records
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def _ray_job(job: Job, ctx: JobContext) -> list[dict]:
    # Inside a Ray worker: the task's CPU share decides its thread count.
    import ray

    _set_threads(int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    return _run(job, ctx)


def check_backend(backend: str, address: str | None) -> None:
    """Reject a backend name or option combination before anything is written."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    if backend == "local" and address:
        raise ConfigError("--address is for --backend ray")
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("--backend ray needs Ray: pip install 'stdp_bench[ray]'")


def run_jobs(jobs: list[Job], ctx: JobContext, *, backend: str = "local", workers: int = 1,
             address: str | None = None, on_progress: Progress | None = None
             ) -> Iterator[list[dict]]:
    """Dispatch to a backend by name; yields each job's records as it finishes."""
    check_backend(backend, address)
    if backend == "local":
        return run_local(jobs, ctx, workers=workers, on_progress=on_progress)
    return run_ray(jobs, ctx, address=address, num_cpus=workers if workers > 1 else None,
                   on_progress=on_progress)

