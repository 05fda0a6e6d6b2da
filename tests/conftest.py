"""Shared test helpers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

# tmp_path folders in memory where the machine has a large enough tmpfs (Linux's
# /dev/shm; not Docker's default 64 MB one): every tune commits its study to SQLite a
# few hundred times, each commit a few fsyncs (~11 ms on this project's disk), and
# results are fsynced as they are written: nine of test_tune.py's in-process tests took
# 61 s with their folders on disk and 19 s on tmpfs, where fsync returns at once (the
# code paths are the same). pytest reads PYTEST_DEBUG_TEMPROOT (its documented
# temp root) when the first tmp_path is made, after this; --basetemp or a root set by
# the caller still wins.
_SHM = Path("/dev/shm")
if "PYTEST_DEBUG_TEMPROOT" not in os.environ and _SHM.is_dir() and os.access(_SHM, os.W_OK):
    try:
        if shutil.disk_usage(_SHM).free >= 2 * 2**30:
            os.environ["PYTEST_DEBUG_TEMPROOT"] = str(_SHM)
    except OSError:
        pass


# Kernels compile at LLVM -O1 in tests (numba's default is -O3), into caches of their
# own. A fresh run compiles about 47 kernels, one per combination of levels the tests
# touch, at 4-8 s each: roughly half of the suite's wall time (estimated from the cache
# files' timestamps). On this project's 2-core machine, with fresh caches and run
# alternately, 55 compile-heavy tests (test_parity, test_map_parity, test_conv,
# test_kernel) took 159 s and 160 s at -O3, 140 s and 151 s at -O1. stdp_bench never
# asks numba for fastmath, so
# LLVM keeps IEEE float semantics at every level: the numbers are bit-identical and each
# parity and golden test pins what -O3 computes; only speed differs. The caches of their
# own keep -O1 code away from the ones `stdp-bench` uses. Set NUMBA_OPT (and the two cache
# variables) before pytest to test another level.
_OPT = os.environ.setdefault("NUMBA_OPT", "1")
_TEST_CACHE = Path(__file__).resolve().parent.parent / ".pytest_cache" / f"numba-O{_OPT}"
os.environ.setdefault("NUMBA_CACHE_DIR", str(_TEST_CACHE / "numba"))
os.environ.setdefault("STDP_BENCH_CACHE", str(_TEST_CACHE / "stdp_bench"))
if "numba" in sys.modules:  # read at numba's import; later imports see the above
    sys.modules["numba"].config.reload_config()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(root: subprocess.Popen) -> list[psutil.Process]:
    """The live processes started by ``root`` (its children, theirs, and so on)."""
    try:
        return psutil.Process(root.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_descendant(root: subprocess.Popen, pattern: str, watch: subprocess.Popen,
                    timeout: float = 300) -> int:
    """SIGKILL the first descendant of ``root`` whose command line contains ``pattern``,
    while ``watch`` still runs; returns its pid. Only processes this test started (and
    theirs) are candidates, never another process on the machine."""
    end = time.time() + timeout
    while time.time() < end and watch.poll() is None:
        for proc in descendants(root):
            try:
                if pattern in " ".join(proc.cmdline()):
                    proc.send_signal(signal.SIGKILL)
                    return proc.pid
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        time.sleep(0.02)
    output = watch.communicate(timeout=60)[0] if watch.poll() is not None else "(running)"
    raise AssertionError(f"no descendant matching {pattern!r} appeared; output:\n{output}")


def run_watched(cmd: list[str], roots: list[subprocess.Popen], log: Path,
                env: dict[str, str] | None = None, timeout: float = 600
                ) -> tuple[int, str, dict[int, str]]:
    """Run ``cmd`` to its end (output to ``log``), noting every process seen below it
    or below ``roots`` on the way: returns its exit status, its output and the command
    line of each pid seen. Processes that live a few tenths of a second may be missed."""
    seen: dict[int, str] = {}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    end = time.time() + timeout
    try:
        while proc.poll() is None and time.time() < end:
            for root in (proc, *roots):
                for child in descendants(root):
                    if child.pid not in seen:
                        try:
                            seen[child.pid] = " ".join(child.cmdline())
                        except (psutil.NoSuchProcess, psutil.AccessDenied):
                            continue
            time.sleep(0.1)
    finally:
        if proc.poll() is None:  # past the timeout: nothing this test started lives on
            stop_tree(proc)
    return proc.returncode, log.read_text(), seen


def stop_tree(root: subprocess.Popen, grace: float = 30, root_first: bool = False) -> None:
    """Terminate ``root`` and everything it started; kill what outlives ``grace``.

    ``root_first``: SIGTERM goes to ``root`` alone, which stops its own children, and
    only what is still alive after ``grace`` is killed. The tree is listed before the
    signal: children whose parent exited are no longer its descendants."""
    procs = [*descendants(root)]
    try:
        procs.insert(0, psutil.Process(root.pid))
    except psutil.NoSuchProcess:
        pass
    for proc in procs[:1] if root_first else procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    root.wait(timeout=grace)


@contextmanager
def private_ray_head(base_env: dict[str, str] | None = None
                     ) -> Iterator[tuple[str, dict[str, str], subprocess.Popen]]:
    """A Ray head on 127.0.0.1 with 2 CPUs, run in the foreground (``--block``) so that
    its servers and workers are descendants of the process started here: yields its
    address, the environment its clients need (no usage reporting, and no token
    authentication: a token left in ~/.ray by an earlier local instance would otherwise
    be demanded) and the head process. The head and its workers get ``base_env`` (else
    this process's environment), e.g. a ``PYTHONPATH`` holding a plugin. On exit only
    that process tree is stopped."""
    ray_bin = Path(sys.executable).with_name("ray")
    port = free_port()
    env = {**(os.environ if base_env is None else base_env),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        end = time.time() + 180
        while True:
            assert head.poll() is None, head.communicate()[0]
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.time() < end, "the Ray head did not open its port in 180 s"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", env, head
    finally:
        # `ray start --block` stops its servers and workers itself on SIGTERM, in about
        # 2 s. SIGTERM to all of them at once left the raylet, GCS and monitors alive
        # for stop_tree's whole 30 s grace (then killed), in every test with a head.
        stop_tree(head, root_first=True)
