"""Kernel code shared by the pair-based rules (``stdp``, ``hebbian``, ``teacher``).

Not a level itself. Updates touch rows of inputs that fired this step (scaled by the
post trace, so only in the columns of neurons active in this presentation) and columns
of neurons that fired (scaled by the pre trace), in the order of BindsNET's ``PostPre``:
traces already include this step's spikes.
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.spec import kernel_function

RECORD = np.dtype([("nu_pre", np.float32), ("nu_post", np.float32),
                   ("drive", np.float32)])


def kernel_params(cfg) -> dict[str, float]:
    """Learning rates (and the teacher's drive, 0 for unsupervised rules)."""
    return {"nu_pre": cfg.nu_pre, "nu_post": cfg.nu_post, "drive": cfg.teacher_drive_mv}


@kernel_function
def pair_update(p, W, xin, xe, idx, lo, hi, fired, nfire, active, nact, sign, label,
                n_classes):
    """``W[i, :] += sign nu_pre xe`` for inputs i that fired, ``W[:, j] += nu_post xin``
    for neurons j that fired; with ``label >= 0`` only neurons ``j % n_classes == label``
    learn (the teacher's gate). ``xe`` is zero outside ``active[:nact]``."""
    n_in = W.shape[0]
    if p.nu_pre != np.float32(0.0):
        for e in range(lo, hi):
            i = idx[e]
            for q in range(nact):
                j = active[q]
                if label >= 0 and j % n_classes != label:
                    continue
                W[i, j] += sign * (xe[j] * p.nu_pre)
    if p.nu_post != np.float32(0.0):
        for q in range(nfire):
            j = fired[q]
            if label >= 0 and j % n_classes != label:
                continue
            for i in range(n_in):
                W[i, j] += xin[i] * p.nu_post


def torch_class_mask(labels, n: int, n_classes: int):
    """``[B, n]``: neuron j stands for sample b's class (``j % n_classes == labels[b]``),
    the neurons a teacher drives and lets learn.

    >>> import torch
    >>> torch_class_mask(torch.tensor([1]), 5, 2).tolist()
    [[False, True, False, True, False]]
    """
    import torch

    cls = torch.arange(n, device=labels.device) % n_classes
    return cls.unsqueeze(0) == labels.unsqueeze(1)


def torch_pair_update(p, W, rows, s_in, x_in, s_out, x_out, sign: float, gate=None) -> None:
    """Torch twin of :func:`pair_update` for batch rows of replicas ``rows``.

    ``W`` is ``[R, n_in, n]``; ``s_in``/``x_in`` ``[B, n_in]``, ``s_out``/``x_out``
    ``[B, n]``; ``p`` maps names to ``[B]`` tensors; ``gate`` ``[B, n]`` marks the
    columns allowed to learn (None: all).
    """
    import torch

    b, i = s_in.nonzero(as_tuple=True)
    if len(b):
        r = rows[b]
        nu_pre = p["nu_pre"][b].unsqueeze(1)
        w = W[r, i]  # [k, n]
        keep = nu_pre != 0 if gate is None else gate[b] & (nu_pre != 0)
        W[r, i] = w + torch.where(keep, sign * (x_out[b] * nu_pre), torch.zeros_like(w))
    if gate is not None:
        s_out = s_out & gate
    b2, j = s_out.nonzero(as_tuple=True)
    if len(b2):
        r2 = rows[b2]
        nu_post = p["nu_post"][b2].unsqueeze(1)
        w = W[r2, :, j]  # [k, n_in]
        W[r2, :, j] = torch.where(nu_post != 0, w + x_in[b2] * nu_post, w)
