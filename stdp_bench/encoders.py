"""Dense spike trains of any encoder level, for stock BindsNET runs and users.

>>> import torch
>>> enc = dense_encoder("rank_order", time=10, rate_hz=0.0)
>>> enc(torch.tensor([1.0, 0.0])).sum(0).tolist()
[1, 0]
"""

from __future__ import annotations

from typing import Any

from stdp_bench.levels import registry
from stdp_bench.levels.encoders.dense import (BernoulliEncoder, RankOrderEncoder,
                                              ScaledPoissonEncoder, bernoulli_rate,
                                              rank_order_fixed, rank_order_times)

__all__ = ["BernoulliEncoder", "RankOrderEncoder", "ScaledPoissonEncoder", "bernoulli_rate",
           "dense_encoder", "rank_order_fixed", "rank_order_times"]


def dense_encoder(name: str, time: int, rate_hz: float, dt: float = 1.0) -> Any:
    """The dense BindsNET-style encoder (a callable ``Encoder``) of encoder level ``name``."""
    module = registry.module(registry.get("encoder", name))
    if not hasattr(module, "dense_encoder"):
        raise ValueError(f"encoder {name!r} has no dense (BindsNET) encoder")
    return module.dense_encoder(time=time, dt=dt, rate_hz=rate_hz)
