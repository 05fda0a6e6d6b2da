"""Kernel code shared by the teacher levels that force the label's neurons to fire
(``teacher_force``, ``teacher_sym``). Not a level itself.

While learning, every step the neurons of the sample's class (``j % n_classes == label``)
get ``teacher_drive_mv`` added to their membrane and every other neuron gets
``teacher_block_mv`` taken off it (BindsNET's ``injects_v``). A strong block holds the
other classes' neurons below threshold, so during training only the label's neurons
spike: they win the competition and take the plasticity (the levels also gate it to the
label's neurons, for a block weak enough to let others fire). Among the label's neurons
the drive is equal, so the input
still decides which of them fires first, and lateral inhibition still makes them compete:
each class's neurons learn that class's variants, as the unsupervised network's neurons
learn the whole data set's. With plasticity off (labelling, testing) nothing is injected.
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.rules.pair import torch_class_mask
from stdp_bench.levels.spec import kernel_function

RECORD = np.dtype([("nu_pre", np.float32), ("nu_post", np.float32),
                   ("drive", np.float32), ("block", np.float32)])


def kernel_params(cfg) -> dict[str, float]:
    """Learning rates, the label's drive and the others' block."""
    return {"nu_pre": cfg.nu_pre, "nu_post": cfg.nu_post, "drive": cfg.teacher_drive_mv,
            "block": cfg.teacher_block_mv}


@kernel_function
def kernel_drive(p, j, label, n_classes):
    """Voltage injected into neuron j this step: ``+drive`` for the label's neurons,
    ``-block`` for the others."""
    if j % n_classes == label:
        return p.drive
    return -p.block


def torch_drive(p, labels, n: int, n_classes: int):
    """Torch twin of :func:`kernel_drive`: the ``[B, n]`` voltage injected each step."""
    import torch

    mine = torch_class_mask(labels, n, n_classes)
    return torch.where(mine, p["drive"].unsqueeze(1), -p["block"].unsqueeze(1))
