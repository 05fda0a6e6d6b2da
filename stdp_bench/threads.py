"""Thread counts of a worker process (a local worker or a Ray task)."""

from __future__ import annotations


def set_threads(threads: int) -> None:
    """Numba and torch threads of this process (numba is already imported by now, so its
    environment variable would come too late; ``set_num_threads`` works at run time)."""
    import numba
    import torch

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(max(1, threads))
