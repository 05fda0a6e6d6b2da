"""Hebbian: both pre-before-post and post-before-pre potentiate (BindsNET ``Hebbian``).

>>> import numpy as np
>>> p = np.rec.array([(0.1, 0.5, 0.0)], dtype=RECORD)[0]
>>> W = np.full((1, 1), 0.5, np.float32)
>>> xin, xe = np.array([1.0], np.float32), np.array([1.0], np.float32)
>>> one = np.array([0])  # input 0 fired; neuron 0 fired and is the one active neuron
>>> kernel_update(p, W, xin, xe, None, xe > 0, one, 0, 1, one, 1, one, 1, -1, 10, None)
>>> round(float(W[0, 0]), 6)
1.1
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.rules.pair import RECORD, kernel_params, pair_update, torch_pair_update
from stdp_bench.levels.spec import Level, kernel_function

LEVEL = Level(axis="rule", name="hebbian", module=__name__,
              doc="Hebbian: coincident activity potentiates (BindsNET Hebbian)",
              uses=("nu_pre", "nu_post", "tc_trace_ms", "wmin", "wmax", "norm"))

__all__ = ["LEVEL", "RECORD", "kernel_params", "kernel_update", "torch_update", "stock_rule"]


@kernel_function
def kernel_update(p, W, xin, xe, aux, spiked, idx, lo, hi, fired, nfire, active, nact,
                  label, n_classes, scratch):
    """One Hebbian step on ``W`` (n_in, n)."""
    pair_update(p, W, xin, xe, idx, lo, hi, fired, nfire, active, nact, np.float32(1.0),
                -1, n_classes)


def torch_update(p, W, rows, s_in, x_in, s_out, x_out, aux, labels, n_classes: int) -> None:
    """Torch twin of :func:`kernel_update` (see :func:`~stdp_bench.levels.rules.pair.torch_pair_update`)."""
    torch_pair_update(p, W, rows, s_in, x_in, s_out, x_out, 1.0)


def stock_rule():
    """The stock BindsNET rule class."""
    from bindsnet.learning import Hebbian

    return Hebbian
