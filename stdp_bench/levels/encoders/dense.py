"""Dense spike encoders: BindsNET ``Encoder`` subclasses (torch; not a level).

The encoder levels' kernel steps encode inside the fused kernel's loop; the classes here
give the same codes as dense ``[time, n]`` trains, for stock BindsNET runs, parity tests
and users. Each level's ``dense_encoder`` returns one (importing this module only then,
so the registry stays free of torch). They fix two defects of BindsNET 0.3.4: ``bernoulli``
and ``rank_order`` divide the caller's tensor in place, and ``rank_order`` drops the
dimmest nonzero pixel.
"""

from __future__ import annotations

import torch
from bindsnet.encoding import BernoulliEncoder as _StockBernoulli
from bindsnet.encoding import PoissonEncoder
from bindsnet.encoding import RankOrderEncoder as _StockRankOrder



def bernoulli_rate(datum: torch.Tensor, time: int, dt: float = 1.0,
                   rate_hz: float = 128.0) -> torch.Tensor:
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


def rank_order_fixed(datum: torch.Tensor, time: int, dt: float = 1.0) -> torch.Tensor:
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
        self.enc_kwargs = {"dt": dt, "rate_hz": rate_hz}


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


class ScaledPoissonEncoder(PoissonEncoder):
    """BindsNET's Poisson encoder fed ``datum * rate_hz`` (datum in [0, 1])."""

    def __init__(self, time: int, dt: float = 1.0, rate_hz: float = 128.0) -> None:
        super().__init__(time, dt=dt)
        self.rate_hz = rate_hz

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return super().__call__(img * self.rate_hz)


__all__ = ["BernoulliEncoder", "RankOrderEncoder", "ScaledPoissonEncoder", "bernoulli_rate",
           "rank_order_fixed", "rank_order_times"]
