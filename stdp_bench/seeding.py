"""Seeding for third-party code that draws from the global random generators.

BindsNET's ``assign_labels`` breaks ties with ``torch.rand``, its ``LocalConnection``
draws weights from numpy's global generator, and ``torch.nn`` layers initialise from
torch's. :func:`global_rngs_seeded` seeds those for one block and restores them after,
so library code leaves the caller's random state as it found it.

>>> import torch
>>> before = torch.rand(1, generator=None)
>>> state = torch.get_rng_state()
>>> with global_rngs_seeded(3):
...     a = torch.rand(1)
>>> with global_rngs_seeded(3):
...     b = torch.rand(1)
>>> bool(a == b), torch.equal(torch.get_rng_state(), state)
(True, True)
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch


@contextmanager
def global_rngs_seeded(seed: int, cuda: bool = False) -> Iterator[None]:
    """Seed torch's (CPU, and the current CUDA device's with ``cuda``) and numpy's global
    generators with ``seed`` inside the block; restore their states on exit."""
    devices = [torch.cuda.current_device()] if cuda else []
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed % (2 ** 32))
        try:
            yield
        finally:
            np.random.set_state(np_state)
