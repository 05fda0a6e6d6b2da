"""Symmetric STDP with a teacher signal, after Hao et al. (2020): both spike orders
potentiate (pre trace x ``nu_post`` on a post spike, post trace x ``nu_pre`` on a pre
spike; BindsNET's ``Hebbian``, no depression term: normalisation to ``norm`` after each
presentation is the only thing that takes weight away, their synaptic scaling), with
adaptive thresholds from the neuron level, and the label's neurons driven while the
others are held below threshold (:mod:`~stdp_bench.levels.rules.forcing`, gated like
``teacher_force``).

Where this departs from the paper's network (as its authors' code runs it): there the
excitatory layer learns without labels and the teacher drives a separate layer of ten
output neurons (Poisson at 100 Hz on the label's), which learn from the excitatory layer
with the same rule and classify by their spike counts. Here the teacher acts on groups
of the excitatory layer itself (neuron j stands for class ``j % n_classes``), as every
teacher level of this workbench does, and the readouts are the usual ones.

>>> import numpy as np
>>> p = np.rec.array([(0.1, 0.5, 0.0, 0.2)], dtype=RECORD)[0]
>>> W = np.full((1, 2), 0.5, np.float32)
>>> xin, xe = np.ones(1, np.float32), np.ones(2, np.float32)
>>> both = np.array([0, 1])  # input 0 and neurons 0, 1 fired; the label is class 0 of 2
>>> kernel_update(p, W, xin, xe, None, xe > 0, np.zeros(1, np.int64), 0, 1, both, 2, both,
...               2, 0, 2, None)
>>> [round(float(w), 6) for w in W[0]]  # 0.5 + 0.1 + 0.5 for the label's neuron only
[1.1, 0.5]
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.rules.forcing import RECORD, kernel_drive, kernel_params, torch_drive
from stdp_bench.levels.rules.pair import pair_update, torch_class_mask, torch_pair_update
from stdp_bench.levels.spec import Level, kernel_function

LEVEL = Level(axis="rule", name="teacher_sym", module=__name__,
              doc="symmetric STDP (both orders potentiate) with the forcing teacher, "
                  "after Hao et al. 2020 (supervised)",
              uses=("nu_pre", "nu_post", "tc_trace_ms", "teacher_drive_mv",
                    "teacher_block_mv", "wmin", "wmax", "norm"),
              supervised=True)

__all__ = ["LEVEL", "RECORD", "kernel_params", "kernel_update", "torch_update", "kernel_drive",
           "torch_drive", "stock_rule"]


@kernel_function
def kernel_update(p, W, xin, xe, aux, spiked, idx, lo, hi, fired, nfire, active, nact,
                  label, n_classes, scratch):
    """One step of symmetric STDP on the label's neurons."""
    pair_update(p, W, xin, xe, idx, lo, hi, fired, nfire, active, nact, np.float32(1.0),
                label, n_classes)


def torch_update(p, W, rows, s_in, x_in, s_out, x_out, aux, labels, n_classes: int) -> None:
    """Torch twin of :func:`kernel_update`."""
    gate = torch_class_mask(labels, s_out.shape[1], n_classes)
    torch_pair_update(p, W, rows, s_in, x_in, s_out, x_out, 1.0, gate)


def stock_rule():
    """The stock BindsNET rule class (drive and block are ``injects_v``)."""
    from bindsnet.learning import Hebbian

    return Hebbian
