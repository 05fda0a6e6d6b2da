"""Jobs as Ray tasks: joining or starting Ray, submitting tasks, collecting results (the
``ray`` backend of :mod:`stdp_bench.backends`, which keeps one Ray connection for all of
a command's batches)."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from stdp_bench.config import ConfigError
from stdp_bench.threads import set_threads

if TYPE_CHECKING:
    from stdp_bench.backends import Progress, TaskKind

RAY_CONNECT_SECONDS = 10.0  # --address: how long to wait for the cluster's port to answer
T = TypeVar("T")
R = TypeVar("R")


def run_ray(tasks: list[T], kind: "TaskKind[T, R]", *, address: str | None = None,
            num_cpus: int | None = None, cpus_per_job: float = 1.0, max_retries: int = 3,
            gpus_per_job: int = 0, on_progress: "Progress | None" = None
            ) -> Iterator[tuple[T, R]]:
    """Yield ``(task, result)`` as each Ray task finishes (see the module docstring).

    Ray is initialized here if it is not yet, and then shut down when the tasks end;
    :class:`Backend` initializes it once for all of a run's batches instead.
    """
    ray = _import_ray()
    started_here = _init_ray(address, num_cpus)
    remote = ray.remote(num_cpus=cpus_per_job, num_gpus=gpus_per_job,
                        max_retries=max_retries, retry_exceptions=False)(_ray_job)
    refs = {remote.remote(kind.run, task): task for task in tasks}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                task = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - worker lost beyond its retries
                    result = kind.lost(task, f"Ray task failed after {max_retries} "
                                             f"retries: {type(exc).__name__}: {exc}")
                if on_progress is not None:
                    on_progress(kind.size(task))
                yield task, result
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'stdp_bench[ray]'") from None
    return ray


def _init_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join the cluster at ``address``, or start a new local instance with ``num_cpus``
    CPUs when there is none; True if this call did (and its caller shuts Ray down),
    False if Ray was already initialized in this process."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    if address:
        check_reachable(address)
    # ray.init replaces this process's SIGTERM handler with one that exits at once;
    # the caller's (the CLI stops the run's tasks and says how to resume) is kept.
    sigterm = _sigterm_handler()
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # "local": a new instance, as --address's help says; without it ray.init
            # would join the cluster RAY_ADDRESS or an earlier `ray start` names (and
            # hang on a stale one).
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"--backend ray: cannot reach a Ray cluster at "
                          f"{address or 'a new local instance'}: {exc}") from None
    finally:
        _restore_sigterm_handler(sigterm)
    return True


def _ray_job(run: Callable[[Any, "Progress | None"], Any], task: Any) -> Any:
    # Inside a Ray worker: the task's CPU share decides its thread count.
    import ray

    set_threads(int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    return run(task, None)


def _sigterm_handler() -> Any:
    """This process's SIGTERM handler, or None where it cannot be set (not the main
    thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGTERM)


def _restore_sigterm_handler(handler: Any) -> None:
    if handler is not None:
        signal.signal(signal.SIGTERM, handler)


def ray_address(address: str) -> str | None:
    """``HOST:PORT`` of the cluster ``address`` names: itself, or for ``auto`` the one
    Ray would join (``RAY_ADDRESS``, else the cluster last started on this machine, else
    any running here); None when ``auto`` finds none."""
    if address != "auto":
        return address
    # Ray's own resolution of "auto" (what ray.init does first), so the check below
    # tries the address ray.init would.
    from ray._private.services import canonicalize_bootstrap_address

    try:
        return canonicalize_bootstrap_address(address)
    except ConnectionError:
        return None


def check_reachable(address: str, timeout: float = RAY_CONNECT_SECONDS) -> None:
    """Fail within ``timeout`` seconds if nothing listens at the cluster ``address``
    (``auto`` or ``HOST:PORT``): ``ray.init`` would retry for minutes.

    >>> check_reachable("nowhere")
    Traceback (most recent call last):
    ...
    stdp_bench.levels.spec.ConfigError: --address 'nowhere' must be auto or HOST:PORT
    """
    target = ray_address(address)
    if target is None:
        raise ConfigError("cannot reach a Ray cluster at auto: none runs on this machine "
                          "and RAY_ADDRESS is not set; start one (ray start --head), give "
                          "--address HOST:PORT, or leave --address out to start a local "
                          "instance")
    shown = address if target == address else f"{address} ({target})"
    # A Ray Client address (ray://HOST:PORT) is checked the same way: its port answers.
    host, sep, port = target.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} must be auto or HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(f"cannot reach a Ray cluster at {shown} within {timeout:.0f} s; "
                          f"{reason}: is its head running (ray start --head) and its port "
                          "open to this machine?") from None
