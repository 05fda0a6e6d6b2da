"""Pair STDP with a teacher that forces the label's neurons to fire: while learning they
get ``teacher_drive_mv`` a step and every other neuron loses ``teacher_block_mv`` a step
(:mod:`stdp_bench.levels.rules.forcing`), and only the label's neurons learn (pair STDP,
``stdp``'s update, gated as ``teacher`` gates it). A strong block (the default, 10 mV)
keeps every other neuron silent; a weak one (0.2 mV, ``grids/dc2015_teacher.toml``) lets
one through when its input is strong: it raises its threshold, as it would without a
teacher, but learns nothing. Forced thresholds only ever see their own class, so cells
of this level let them settle before the freeze (``settle``; README: "A teacher that
forces spikes").

This is the study's "output neurons are forced to spike for their corresponding labels".
The older ``teacher`` level adds a weak drive and the gate, but leaves every other neuron
free to fire, win the image and raise its threshold without learning it.

>>> import numpy as np
>>> p = np.rec.array([(1e-4, 1e-2, 1.0, 5.0)], dtype=RECORD)[0]
>>> float(kernel_drive(p, 13, 3, 10)), float(kernel_drive(p, 14, 3, 10))
(1.0, -5.0)
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.rules.forcing import RECORD, kernel_drive, kernel_params, torch_drive
from stdp_bench.levels.rules.pair import pair_update
from stdp_bench.levels.spec import Level, kernel_function

# The update is the old teacher's (pair STDP gated to the label's neurons): only the
# drive and the block differ. Its torch twin and BindsNET class serve as they are; the
# kernel step is this level's own, so numba compiles it for this level's record.
from stdp_bench.levels.rules.teacher import stock_rule, torch_update

LEVEL = Level(axis="rule", name="teacher_force", module=__name__,
              doc="pair STDP; the label's neurons are driven to fire, the others held "
                  "below threshold (supervised)",
              uses=("nu_pre", "nu_post", "tc_trace_ms", "teacher_drive_mv",
                    "teacher_block_mv", "wmin", "wmax", "norm"),
              supervised=True)

__all__ = ["LEVEL", "RECORD", "kernel_params", "kernel_update", "torch_update", "kernel_drive",
           "torch_drive", "stock_rule"]


@kernel_function
def kernel_update(p, W, xin, xe, aux, spiked, idx, lo, hi, fired, nfire, active, nact,
                  label, n_classes, scratch):
    """One step of pair STDP on the label's neurons (with a weak block, another class's
    neuron may still fire: it raises its threshold but does not learn)."""
    pair_update(p, W, xin, xe, idx, lo, hi, fired, nfire, active, nact, np.float32(-1.0),
                label, n_classes)
