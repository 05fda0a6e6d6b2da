"""numba glue of the engines.

A :class:`~stdp_bench.levels.spec.KernelFunction` found as a global of jitted code is
compiled (once per process) with ``nogil``, so level modules stay free of numba at
import; every kernel module imports this module before numba types any of its
functions. Also the tie-break draws of the torch engines, from the one random number
generator (:mod:`stdp_bench.levels.random`).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.core.typing.typeof import typeof
from numba.extending import typeof_impl

from stdp_bench.levels import random
from stdp_bench.levels.spec import KernelFunction, kernel_function


@typeof_impl.register(KernelFunction)
def _typeof_kernel_function(val: KernelFunction, c):  # noqa: ANN001 (numba's context)
    if val.compiled is None:
        val.compiled = nb.njit(cache=True, nogil=True)(val.py_func)
    return typeof(val.compiled, c.purpose)


@kernel_function
def no_drive(p, j, label, n_classes):
    """The drive of an unsupervised rule: none (never called; see ``RULE_SUPERVISED``)."""
    return np.float32(0.0)


# Phases of the random streams: tie-break draws of the torch engines use their own, so
# they never reuse an encoder's numbers (phases of presentations are small integers).
TIE_PHASE_BIT = 1 << 32


@nb.njit(cache=True, nogil=True)
def _tie_draws(seeds, keys, phase, T, out):
    state = np.zeros(1, dtype=np.uint64)
    for b in range(seeds.shape[0]):
        for t in range(T):
            state[0] = random.stream_seed(seeds[b], phase, keys[b], t)
            out[t, b] = random.uniform(state)


def tie_draws(seeds: np.ndarray, keys: np.ndarray, phase: int, T: int) -> np.ndarray:
    """Uniform draws ``[T, B]`` for the one-spike tie-breaks of the torch engines.

    Row b, step t draws from the stream of (``seeds[b]``, phase, ``keys[b]``, t), so a
    draw depends on the replica, the presentation and the step only, never on the
    batch. The kernel engine breaks ties from the presentation's own stream instead;
    the two engines agree on spikes except after a tie (tests replay the kernel's).
    """
    out = np.zeros((T, len(seeds)), np.float64)
    _tie_draws(np.ascontiguousarray(seeds, np.uint64), np.ascontiguousarray(keys, np.int64),
               phase | TIE_PHASE_BIT, T, out)
    return out
