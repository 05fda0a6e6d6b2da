"""No plasticity: the control (weights stay at their random initial values).

>>> LEVEL.plastic
False
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.spec import Level, kernel_function

LEVEL = Level(axis="rule", name="none", module=__name__,
              doc="no plasticity (control)", plastic=False)

RECORD = np.dtype([("unused", np.float32)])


def kernel_params(cfg) -> dict[str, float]:
    """No parameters (numba records need one field)."""
    return {"unused": 0.0}


@kernel_function
def kernel_update(p, W, xin, xe, aux, spiked, idx, lo, hi, fired, nfire, active, nact,
                  label, n_classes, scratch):
    """Never called: the kernel skips plasticity for non-plastic rules."""
    return


def stock_rule():
    """The stock BindsNET rule class."""
    from bindsnet.learning import NoOp

    return NoOp


def torch_update(p, W, rows, s_in, x_in, s_out, x_out, aux, labels, n_classes: int) -> None:
    """Never called (not plastic)."""
    return
