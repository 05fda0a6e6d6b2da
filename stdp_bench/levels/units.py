"""Conversions shared by level modules (torch is imported only when one is called)."""

from __future__ import annotations


def decay(dt: float, tc: float) -> float:
    """Per-step decay factor ``exp(-dt / tc)``, computed exactly as BindsNET does.

    BindsNET computes its decays with float32 torch ops; the same ops here give the same
    bits, which the parity tests need.

    >>> round(decay(1.0, 20.0), 6)
    0.951229
    """
    import torch

    return float(torch.exp(-torch.tensor(dt) / torch.tensor(tc)))
