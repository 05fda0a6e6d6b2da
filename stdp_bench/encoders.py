"""Spike encoders: one registry line per level of the ``encoder`` factor.

The fused kernel encodes inside its loop (``engine.kernel.gen_events``); the classes here
are BindsNET ``Encoder`` subclasses giving the same codes as dense ``[time, n]`` trains,
for stock BindsNET runs, parity tests and users. They fix two defects of BindsNET 0.3.4:
``bernoulli`` and ``rank_order`` divide the caller's tensor in place, and ``rank_order``
drops the dimmest nonzero pixel.
"""

from __future__ import annotations

import numpy as np
import torch
from bindsnet.encoding import BernoulliEncoder as _StockBernoulli
from bindsnet.encoding import PoissonEncoder
from bindsnet.encoding import RankOrderEncoder as _StockRankOrder

from stdp_bench.engine import kernel

ENCODERS: dict[str, int] = {
    "poisson": kernel.ENC_POISSON,
    "bernoulli": kernel.ENC_BERNOULLI,
    "rank_order": kernel.ENC_RANK_ORDER,
}


def bernoulli_rate(datum: torch.Tensor, time: int, dt: float = 1.0,
                   rate_hz: float = 128.0, **_: object) -> torch.Tensor:
    """Bernoulli spikes with ``p = datum * rate_hz * dt / 1000`` per step (datum in [0, 1]).

    The caller's tensor is not modified. Returns ``[time / dt, *datum.shape]`` bytes.
    """
    assert (datum >= 0).all(), "Inputs must be non-negative"
    steps = int(time / dt)
    p = (datum.detach().clone().float() * (rate_hz * dt / 1000.0)).clamp_(max=1.0)
    return torch.bernoulli(p.unsqueeze(0).expand(steps, *p.shape)).byte()


def rank_order_times(datum: torch.Tensor, time: int, dt: float = 1.0) -> torch.Tensor:
    """Spike step (0-based) of each input under rank-order coding, -1 for silent inputs.

    Brightest inputs fire first; the dimmest nonzero input fires on the last step.
    """
    steps = int(time / dt)
    d = datum.detach().flatten().double()
    out = torch.full(d.shape, -1, dtype=torch.long)
    nz = d > 0
    if not nz.any():
        return out.view(datum.shape)
    rel = d.max() / d[nz]
    t = torch.ceil(rel * steps / rel.max()).long().clamp_(1, steps)
    out[nz] = t - 1
    return out.view(datum.shape)


def rank_order_fixed(datum: torch.Tensor, time: int, dt: float = 1.0,
                     **_: object) -> torch.Tensor:
    """Rank-order code without BindsNET 0.3.4's in-place division and dropped pixel."""
    assert (datum >= 0).all(), "Inputs must be non-negative"
    steps = int(time / dt)
    times = rank_order_times(datum, time, dt).flatten()
    spikes = torch.zeros(steps, times.numel(), dtype=torch.uint8)
    fire = times >= 0
    spikes[times[fire], fire.nonzero().squeeze(1)] = 1
    return spikes.view(steps, *datum.shape)


class BernoulliEncoder(_StockBernoulli):
    """BindsNET's Bernoulli encoder with a rate in Hz matching the Poisson encoder's.

    >>> enc = BernoulliEncoder(time=1000, rate_hz=50.0)
    >>> x = torch.tensor([1.0, 0.0])
    >>> s = enc(x)
    >>> tuple(s.shape), bool(x[0] == 1.0), int(s[:, 1].sum())
    ((1000, 2), True, 0)
    """

    def __init__(self, time: int, dt: float = 1.0, rate_hz: float = 128.0) -> None:
        super().__init__(time, dt=dt)
        self.enc = bernoulli_rate
        self.enc_kwargs = {"rate_hz": rate_hz}


class RankOrderEncoder(_StockRankOrder):
    """BindsNET's rank-order encoder, fixed: input left untouched, every pixel spikes.

    >>> enc = RankOrderEncoder(time=10)
    >>> x = torch.tensor([1.0, 0.5, 0.1, 0.0])
    >>> s = enc(x)
    >>> s.sum(0).tolist(), x.tolist()
    ([1, 1, 1, 0], [1.0, 0.5, 0.10000000149011612, 0.0])
    """

    def __init__(self, time: int, dt: float = 1.0) -> None:
        super().__init__(time, dt=dt)
        self.enc = rank_order_fixed


def dense_encoder(name: str, time: int, rate_hz: float, dt: float = 1.0):
    """The dense BindsNET-style encoder for a level of the ``encoder`` factor."""
    if name == "poisson":
        return _ScaledPoisson(time=time, dt=dt, rate_hz=rate_hz)
    if name == "bernoulli":
        return BernoulliEncoder(time=time, dt=dt, rate_hz=rate_hz)
    if name == "rank_order":
        return RankOrderEncoder(time=time, dt=dt)
    raise ValueError(f"unknown encoder '{name}'; allowed: {', '.join(ENCODERS)}")


class _ScaledPoisson(PoissonEncoder):
    """BindsNET's Poisson encoder fed ``datum * rate_hz`` (datum in [0, 1])."""

    def __init__(self, time: int, dt: float = 1.0, rate_hz: float = 128.0) -> None:
        super().__init__(time, dt=dt)
        self.rate_hz = rate_hz

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return super().__call__(img * self.rate_hz)


def auto_gain(encoder: str, x_train: np.ndarray, rate_hz: float, time: int,
              dt: float = 1.0) -> float:
    """Input current gain that gives an encoder the Poisson code's mean input volume.

    Rate codes get 1. Rank order sends one spike per nonzero pixel, so its gain is the
    ratio of the mean Poisson spike count to the mean number of nonzero pixels.
    """
    if encoder in ("poisson", "bernoulli"):
        return 1.0
    if encoder == "rank_order":
        sample = x_train[: min(len(x_train), 5000)]
        rate_volume = float(sample.sum(1).mean()) * rate_hz * time / 1000.0
        spikes = float((sample > 0).sum(1).mean())
        return max(1.0, rate_volume / max(spikes, 1.0))
    raise ValueError(f"unknown encoder '{encoder}'; allowed: {', '.join(ENCODERS)}")


__all__ = ["ENCODERS", "BernoulliEncoder", "RankOrderEncoder", "auto_gain",
           "dense_encoder", "bernoulli_rate", "rank_order_fixed", "rank_order_times"]
