"""SIGTERM handled as Ctrl-C: what schedulers, ``kill`` and ``docker stop`` send.

Python's default for SIGTERM ends the process at once: no ``finally`` runs, so worker
processes outlive it and the results table is not rebuilt. Inside
:func:`sigterm_as_interrupt`, SIGTERM raises :class:`Terminated` in the main thread
instead, a ``KeyboardInterrupt``, so everything that cleans up after Ctrl-C (workers
stopped, table rebuilt, lock released) cleans up after SIGTERM too.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (a ``KeyboardInterrupt``, so Ctrl-C's cleanup runs)."""


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """The exit status a shell gives a process that ``interrupt`` stopped.

    >>> exit_code(KeyboardInterrupt()), exit_code(Terminated())
    (130, 143)
    """
    return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread; the
    previous handler is back afterwards.

    Only the first SIGTERM raises: later ones are ignored, so that a repeated signal
    cannot interrupt the cleanup the first one started (SIGKILL still ends the process).
    Outside the main thread (where Python allows no handler) the block runs unchanged.

    >>> import os
    >>> before = signal.getsignal(signal.SIGTERM)
    >>> try:
    ...     with sigterm_as_interrupt():
    ...         os.kill(os.getpid(), signal.SIGTERM)
    ... except Terminated as exc:
    ...     print(repr(exc))
    Terminated('SIGTERM')
    >>> signal.getsignal(signal.SIGTERM) is before
    True
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        # None: the previous handler was not set from Python; the default is the best guess.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
