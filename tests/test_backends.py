"""Backends and faults: Ray with a killed worker, local workers, a killed driver, a
terminated driver (SIGTERM), concurrent runs, a full disk, an unreachable cluster, and
divergence.

Every test compares the finished table with one from the in-process local backend for
the same grid and seeds: a fault may cost time, never a result, a duplicate or a change.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pandas as pd
import psutil
import pytest
from typer.testing import CliRunner

from stdp_bench import results
from stdp_bench.backends import JobContext, WorkerPool, grid_jobs, run_local
from stdp_bench.cli import app
from stdp_bench.execution import Execution
from stdp_bench.grid import Job, expand, group_jobs
from stdp_bench.grid_file import parse_grid
from stdp_bench.records import Status
from stdp_bench.train import job_samples

from conftest import descendants, free_port, kill_descendant, private_ray_head, stop_tree

log = logging.getLogger("stdp_bench.faults")

GRID = """
name = "faults"
description = "8 small digits cells for backend and fault tests"
[settings]
dataset = "digits"
n_neurons = 16
time = 120
n_train = 200
n_label = 150
n_test = 200
intensity_hz = 256.0
norm = 10.0
[factors]
encoder = ["poisson", "bernoulli"]
neuron = ["lif", "adaptive"]
rule = ["stdp", "none"]
"""


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("grid") / "faults.toml"
    path.write_text(GRID)
    return path


@pytest.fixture(scope="module")
def reference(grid_file, tmp_path_factory) -> pd.DataFrame:
    """The table of the in-process local backend."""
    out = tmp_path_factory.mktemp("ref") / "res"
    res = CliRunner().invoke(app, ["run", str(grid_file), "--out", str(out), "--quiet",
                                   "--replicas", "1"])
    assert res.exit_code == 0, res.output
    return _key(pd.read_parquet(out / "results.parquet"))


def _key(table: pd.DataFrame) -> pd.DataFrame:
    return (table[["cell_id", "readout", "status", "accuracy", "exc_spikes_per_sample"]]
            .sort_values(["cell_id", "readout"]).reset_index(drop=True))


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stdp_bench", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _check_complete(out: Path, reference: pd.DataFrame) -> None:
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 8 * 4 and table["cell_id"].nunique() == 8
    assert len(list((out / "cells").glob("*.json"))) == 8
    assert not list(out.rglob("*.tmp"))
    pd.testing.assert_frame_equal(_key(table), reference)


@pytest.mark.slow
def test_ray_cluster_survives_a_killed_worker(grid_file, reference, tmp_path):
    with private_ray_head() as (address, env, head):
        out = tmp_path / "ray"
        t0 = time.time()
        proc = _cli("run", str(grid_file), "--out", str(out), "--quiet", "--replicas", "1",
                    "--backend", "ray", "--address", address, env=env)
        # The generous timeout: with two grid workers busy on a 2-core machine, no Ray
        # task had started after 120 s, and the whole Ray grid then took 270 s.
        killed = kill_descendant(head, "ray::_ray_job", proc)
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output
        _check_complete(out, reference)
        log.warning("ray fault test: head %s, killed worker pid %d mid-task; grid "
                    "finished in %.1f s with 8/8 cells, table equal to the local "
                    "backend's", address, killed, time.time() - t0)


@pytest.mark.slow
def test_local_workers_survive_a_killed_worker(grid_file, reference, tmp_path):
    out = tmp_path / "local2"
    proc = _cli("run", str(grid_file), "--out", str(out), "--quiet", "--replicas", "1",
                "--workers", "2")
    killed = kill_descendant(proc, "multiprocessing.spawn", proc)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    _check_complete(out, reference)
    log.warning("local fault test: killed worker pid %d; pool rebuilt, job retried, "
                "table equal", killed)


@pytest.mark.slow
def test_killed_driver_resumes_and_second_run_is_refused(grid_file, reference, tmp_path):
    out = tmp_path / "driver"
    proc = _cli("run", str(grid_file), "--out", str(out), "--quiet", "--replicas", "1")
    end = time.time() + 300
    while time.time() < end and len(list((out / "cells").glob("*.json"))) < 2:
        time.sleep(0.05)
    # A second run on the same folder is refused while the first is alive.
    second = CliRunner().invoke(app, ["run", str(grid_file), "--out", str(out), "--quiet"])
    assert second.exit_code == 1 and "in use by another run" in second.output
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert 2 <= len(kept) < 8  # the OS released the killed driver's lock
    res = CliRunner().invoke(app, ["run", str(grid_file), "--out", str(out), "--quiet",
                                   "--replicas", "1"])
    assert res.exit_code == 0, res.output
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert all(after[name] == stamp for name, stamp in kept.items())  # nothing redone
    _check_complete(out, reference)
    log.warning("driver fault test: driver SIGKILLed with %d/8 cells written; rerun "
                "reused them untouched and finished the rest", len(kept))


@pytest.mark.slow
def test_sigterm_stops_the_workers_and_a_rerun_resumes(grid_file, reference, tmp_path):
    out = tmp_path / "term"
    proc = _cli("run", str(grid_file), "--out", str(out), "--quiet", "--replicas", "1",
                "--workers", "2")
    end = time.time() + 300
    while (time.time() < end and proc.poll() is None
           and not list((out / "cells").glob("*.json"))):
        time.sleep(0.05)
    started = descendants(proc)  # the workers (and multiprocessing's helper), before
    workers = [p for p in started if "multiprocessing.spawn" in " ".join(_cmdline(p))]
    assert len(workers) == 2, [p.cmdline() for p in started]
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)  # the process this test started, nothing else
    try:
        output, _ = proc.communicate(timeout=60)
        stopped_in = time.time() - t0
        _, alive = psutil.wait_procs(started, timeout=10)
    finally:  # whatever failed: nothing this test started outlives it
        if proc.poll() is None:
            proc.kill()
        for p in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()  # psutil checks it is still the process seen (pid reuse)
    assert proc.returncode == 143, output
    assert ("terminated: finished cells are saved; rerun the same command to resume"
            in output.splitlines()), output
    assert "Traceback" not in output
    assert not alive, [p.pid for p in alive]
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert 1 <= len(kept) < 8
    # The rerun in this process: which cells are left is the driver's decision, whatever
    # runs them, and a second pool would only add its workers' start (~5 s).
    res = CliRunner().invoke(app, ["run", str(grid_file), "--out", str(out), "--quiet",
                                   "--replicas", "1"])
    assert res.exit_code == 0, res.output
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert all(after[name] == stamp for name, stamp in kept.items())  # nothing redone
    _check_complete(out, reference)
    log.warning("sigterm test: driver stopped in %.1f s with exit 143 and %d/8 cells "
                "written; its %d processes (workers %s) all ended; rerun finished the "
                "rest, table equal", stopped_in, len(kept), len(started),
                [p.pid for p in workers])


CHUNKS = {"name": "chunks", "settings": {
    "dataset": "digits", "n_neurons": 10, "time": 40, "n_train": 300, "n_label": 100,
    "n_test": 100, "intensity_hz": 256.0, "norm": 10.0}, "factors": {"seed": [0, 1]}}


def _spawned_workers() -> set[psutil.Process]:
    """This process's live multiprocessing workers (children started with spawn)."""
    return {p for p in psutil.Process().children()
            if "spawn_main" in " ".join(_cmdline(p)) and p.is_running()}


def _exists(proc: psutil.Process) -> bool:
    """Still in the process table (running, or a zombie not reaped yet)."""
    try:
        proc.status()
        return True
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_workers_report_progress_a_chunk_of_samples_at_a_time():
    grid = parse_grid(CHUNKS)
    jobs = group_jobs(expand(grid), 1)
    assert len(jobs) == 2
    ctx = JobContext(grid=grid.name, factors=tuple(grid.factors), data_dir=None,
                     execution=Execution(), commit=None, plugins=())
    before = _spawned_workers()
    pool = WorkerPool(2)  # kept across batches, as tune keeps it across rungs

    def batch(these: list[Job] = jobs) -> list[int | None]:
        events: list[int | None] = []  # samples counted, or None where a job ended
        for _, records in run_local(these, grid_jobs(ctx), on_progress=events.append,
                                    pool=pool):
            assert [r.status for r in records] == [Status.OK]
            events.append(None)
        return events

    try:
        events = batch()
        counts = [n for n in events if n is not None]
        # 300 training samples in chunks of 100, then labelling and test: 5 counts a job.
        assert len(counts) > len(jobs) and events.index(None) > 1
        assert sum(counts) == sum(job_samples(j) for j in jobs) == 2 * 500
        workers = _spawned_workers() - before
        assert len(workers) == 2
        # The next batch runs on the same worker processes: none started, none ended.
        assert sum(n for n in batch() if n is not None) == 2 * 500
        assert _spawned_workers() - before == workers
        # A worker killed while idle between batches (the processes this test's pool
        # started, nothing else): the next batch gets a new pool and all its results.
        victim = next(iter(workers))
        victim.kill()
        # Until the pool has seen the death (it reaps the worker then, and refuses new
        # jobs): a batch sent earlier could still run on the other worker alone, the
        # death seen only after it. Not victim.wait(): reaping the pool's own child
        # here would hide its end from the pool (its shutdown then spins).
        end = time.time() + 30
        while _exists(victim) and time.time() < end:
            time.sleep(0.05)
        assert not _exists(victim), "the pool did not reap its killed worker in 30 s"
        # One job: one new worker to start is enough to show the new pool.
        assert sum(n for n in batch(jobs[:1]) if n is not None) == 500
        assert len(_spawned_workers() - before - workers) == 1
        assert not _spawned_workers() & workers  # the broken pool's survivor was stopped
    finally:
        pool.close()
    assert not _spawned_workers() - before  # closing the pool ends its workers


def test_unreachable_ray_address_fails_within_seconds_with_one_line(grid_file, tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "ray"
    t0 = time.time()
    res = CliRunner().invoke(app, ["run", str(grid_file), "--out", str(out), "--quiet",
                                   "--backend", "ray", "--address", address])
    assert time.time() - t0 < 60
    assert res.exit_code == 1
    assert res.output == (f"error: cannot reach a Ray cluster at {address} within 10 s; "
                          "Connection refused: is its head running (ray start --head) and "
                          "its port open to this machine?\n")
    assert not out.exists()  # failed before anything was written


def test_ray_auto_address_checks_the_cluster_ray_would_join(grid_file, tmp_path,
                                                            monkeypatch):
    port = free_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")  # what auto joins first
    res = CliRunner().invoke(app, ["run", str(grid_file), "--out", str(tmp_path / "t"),
                                   "--quiet", "--backend", "ray", "--address", "auto"])
    assert res.exit_code == 1
    # Ray names this machine by its address, not the loopback's.
    assert re.fullmatch(rf"error: cannot reach a Ray cluster at auto \([0-9.]+:{port}\) "
                        r"within 10 s; Connection refused: is its head running \(ray "
                        r"start --head\) and its port open to this machine\?\n",
                        res.output), res.output


@pytest.mark.slow
def test_ray_without_an_address_starts_and_stops_its_own_instance(tmp_path):
    grid = tmp_path / "own.toml"
    grid.write_text("""
name = "own"
[settings]
dataset = "digits"
n_neurons = 10
time = 40
n_train = 60
n_label = 60
n_test = 60
""")
    # RAY_ADDRESS names a cluster (here one that does not answer): ray.init without an
    # address would try to join it; without --address, none is joined.
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{free_port()}",
           "RAY_USAGE_STATS_ENABLED": "0"}
    out = tmp_path / "res"
    proc = _cli("run", str(grid), "--out", str(out), "--quiet", "--backend", "ray",
                env=env)
    seen: dict[psutil.Process, str] = {}  # every process the run started: its command
    end = time.time() + 300  # 25 s here; before the fix it hung joining RAY_ADDRESS
    try:
        while proc.poll() is None and time.time() < end:
            for p in descendants(proc):
                if p not in seen:
                    seen[p] = " ".join(_cmdline(p))
            time.sleep(0.1)
        output, _ = proc.communicate(timeout=60)
    finally:  # whatever failed: nothing this test started outlives it
        if proc.poll() is None:
            stop_tree(proc)
    assert proc.returncode == 0, output
    table = pd.read_parquet(out / "results.parquet")
    assert table["cell_id"].nunique() == 1 and (table["status"] == "ok").all()
    assert any("raylet" in cmd for cmd in seen.values()), seen
    _, alive = psutil.wait_procs(list(seen), timeout=30)
    assert not alive, [(p.pid, seen[p]) for p in alive]
    log.warning("ray local test: the run started its own instance (%d processes) and "
                "left none running", len(seen))


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def test_full_disk_stops_with_one_line_and_keeps_records(grid_file, reference, tmp_path,
                                                          monkeypatch):
    out = tmp_path / "full"
    real = results.write_json_atomic
    calls = {"n": 0}

    def failing(path, obj):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, obj)

    monkeypatch.setattr(results, "write_json_atomic", failing)
    res = CliRunner().invoke(app, ["run", str(grid_file), "--out", str(out), "--quiet",
                                   "--replicas", "1"])
    assert res.exit_code == 1
    assert "cannot write results to" in res.output and "No space left on device" in res.output
    assert "Traceback" not in res.output
    kept = sorted((out / "cells").glob("*.json"))
    assert len(kept) == 2 and all(json.loads(p.read_text())["status"] == "ok" for p in kept)
    monkeypatch.setattr(results, "write_json_atomic", real)
    res = CliRunner().invoke(app, ["run", str(grid_file), "--out", str(out), "--quiet",
                                   "--replicas", "1"])
    assert res.exit_code == 0, res.output
    _check_complete(out, reference)


def test_unwritable_results_folder_fails_before_work(grid_file, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    res = CliRunner().invoke(app, ["run", str(grid_file), "--out", str(blocker / "res")])
    assert res.exit_code == 1 and "cannot write to" in res.output


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["kernel", "torch"])
@pytest.mark.slow
def test_divergence_is_recorded_with_the_sample(tmp_path, engine):
    grid = tmp_path / "div.toml"
    grid.write_text("""
name = "div"
[settings]
dataset = "digits"
n_neurons = 8
time = 60
n_train = 30
n_label = 20
n_test = 20
neuron = "lif"
intensity_hz = 256.0
wmax = 1e38
nu_post = 1e38
[factors]
rule = ["hebbian", "none"]
""")
    out = tmp_path / "res"
    res = CliRunner().invoke(app, ["run", str(grid), "--out", str(out), "--quiet",
                                   "--engine", engine, "--device", "cpu"])
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(out / "results.parquet").drop_duplicates("cell_id")
    div = table[table["rule"] == "hebbian"].iloc[0]
    assert div["status"] == "diverged"
    assert "non-finite weights or thresholds at training sample" in div["error"]
    assert div["diverged_at_sample"] >= 1
    assert table[table["rule"] == "none"].iloc[0]["status"] == "ok"


def test_a_worker_process_runs_replicas_on_its_share_of_the_cores():
    import numba
    import torch

    from stdp_bench.backends import _worker_init
    from stdp_bench.engine.kernel_engine import worker_threads

    numba_before, torch_before = numba.get_num_threads(), torch.get_num_threads()
    try:
        _worker_init(1)  # what run_local gives each of N workers on N cores
        assert worker_threads() == 1
    finally:
        numba.set_num_threads(numba_before)
        torch.set_num_threads(torch_before)
    assert worker_threads() == min(numba_before, len(os.sched_getaffinity(0)))


def test_workers_name_the_commit_pinned_when_the_run_started(grid_file, tmp_path,
                                                             monkeypatch):
    """The commit travels to spawned workers in the job's context: they never ask git
    (they would get the real checkout's, not the one patched here) nor read a variable."""
    from stdp_bench import orchestration

    monkeypatch.setattr(orchestration, "checkout_commit", lambda: "pinned-by-the-driver")
    monkeypatch.setenv("STDP_BENCH_COMMIT", "stale")
    res_dir = tmp_path / "res"
    res = CliRunner().invoke(app, ["run", str(grid_file), "--out", str(res_dir), "--quiet",
                                   "--workers", "2"])
    assert res.exit_code == 0, res.output
    commits = {json.loads(p.read_text())["provenance"]["commit"]
               for p in (res_dir / "cells").glob("*.json")}
    assert commits == {"pinned-by-the-driver"}


class _BreaksWhileSubmitting(WorkerPool):
    """A pool whose first executor breaks at its second submit (raising ``error``), as a
    new process pool does when a worker it started for the first task dies before the
    batch is handed over; later executors run tasks in this process."""

    def __init__(self, error: Exception) -> None:
        super().__init__(2)
        self.executors = 0
        self.error = error

    def executor(self):
        from concurrent.futures import Future
        from queue import SimpleQueue

        self.executors += 1
        broken = self.executors == 1
        submits = []
        error = self.error

        class Executor:
            def submit(self, fn, *args):
                submits.append(args)
                if broken and len(submits) == 2:
                    raise error
                fut = Future()
                fut.set_result(fn(*args))
                return fut

            def shutdown(self, wait=True, cancel_futures=False):
                pass

        return Executor(), SimpleQueue(), True

    def discard(self, terminate: bool = False) -> None:
        pass

    close = discard


@pytest.mark.parametrize("error", [BrokenProcessPool("a child process terminated abruptly"),
                                   OSError("handle is closed")], ids=["broken", "closed"])
def test_a_pool_that_breaks_while_its_batch_is_submitted_is_replaced(error):
    from stdp_bench.backends import TaskKind

    kind = TaskKind(run=lambda task, _: task * 10, size=lambda task: 1,
                    lost=lambda task, msg: msg)
    pool = _BreaksWhileSubmitting(error)
    results = dict(run_local([1, 2, 3], kind, pool=pool))
    # The task handed to the broken pool and the two not yet handed over all ran on the
    # next one, once each.
    assert results == {1: 10, 2: 20, 3: 30} and pool.executors == 2
