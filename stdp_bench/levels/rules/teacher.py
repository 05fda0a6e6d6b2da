"""Pair STDP with a teacher: while learning, the neurons of the sample's class
(``j % n_classes == label``) get ``teacher_drive_mv`` added to their membrane each step
(BindsNET's ``injects_v``) and only they learn.

>>> import numpy as np
>>> p = np.rec.array([(0.1, 0.5, 0.25)], dtype=RECORD)[0]
>>> float(kernel_drive(p, 3, 3, 10)), float(kernel_drive(p, 4, 3, 10))
(0.25, 0.0)
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.rules.pair import (RECORD, kernel_params, pair_update, torch_class_mask,
                                          torch_pair_update)
from stdp_bench.levels.spec import Level, kernel_function

LEVEL = Level(axis="rule", name="teacher", module=__name__,
              doc="pair STDP gated and driven by the label (supervised)",
              uses=("nu_pre", "nu_post", "tc_trace_ms", "teacher_drive_mv", "wmin", "wmax",
                    "norm"),
              supervised=True)

__all__ = ["LEVEL", "RECORD", "kernel_params", "kernel_update", "torch_update", "kernel_drive",
           "torch_drive", "stock_rule"]


@kernel_function
def kernel_drive(p, j, label, n_classes):
    """Depolarisation neuron j gets this step."""
    if j % n_classes == label:
        return p.drive
    return np.float32(0.0)


@kernel_function
def kernel_update(p, W, xin, xe, aux, spiked, idx, lo, hi, fired, nfire, active, nact,
                  label, n_classes, scratch):
    """One step of pair STDP restricted to the label's neurons."""
    pair_update(p, W, xin, xe, idx, lo, hi, fired, nfire, active, nact, np.float32(-1.0),
                label, n_classes)


def torch_update(p, W, rows, s_in, x_in, s_out, x_out, aux, labels, n_classes: int) -> None:
    """Torch twin of :func:`kernel_update` (see :func:`~stdp_bench.levels.rules.pair.torch_pair_update`)."""
    gate = torch_class_mask(labels, s_out.shape[1], n_classes)
    torch_pair_update(p, W, rows, s_in, x_in, s_out, x_out, -1.0, gate)


def torch_drive(p, labels, n: int, n_classes: int):
    """Torch twin of :func:`kernel_drive`: ``[B, n]`` voltage injected each step."""
    return torch_class_mask(labels, n, n_classes).float() * p["drive"].unsqueeze(1)


def stock_rule():
    """The stock BindsNET rule class (the drive is ``injects_v``, the gate is ours)."""
    from bindsnet.learning import PostPre

    return PostPre
