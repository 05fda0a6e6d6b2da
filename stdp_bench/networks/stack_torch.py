"""The torch twin of a layer stack: SpykeTorch's dense formulation, written out with
torch's conv2d and max_pool2d (the parity reference of
:mod:`stdp_bench.engine.stack_kernel`, and what ``stdp-bench bench --architecture
kheradpisheh`` compares it with).

A spike wave ``[T, C, H, W]`` holds 1 from a unit's first spike on. A conv layer's
potentials are the convolution of its input wave (non-leaky units: an input adds its
weight from its spike on), a unit fires where its potential exceeds the threshold, and
pooling a wave passes each window's earliest spike. Training a conv layer on one image
applies pointwise inhibition, k winners and the rule's update to the winners' fields
(the module docstring of :mod:`stdp_bench.engine.stack_kernel` lists the steps).

>>> import torch
>>> from stdp_bench.levels.stack_spec import stack_layers
>>> layers = stack_layers("conv(maps=2,kernel=2,threshold=0.5);pool(kernel=2)")
>>> W = [torch.ones(2, 1, 2, 2) * 0.3, None]
>>> tin = torch.tensor([[[0, 1, 9], [2, 9, 9], [9, 9, 9]]])  # T = 9: never
>>> [t.tolist() for t in stack_times(tin, layers, W, 9)][1]  # two inputs by step 1
[[[1, 9], [9, 9]], [[1, 9], [9, 9]]]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stdp_bench.levels.stack_spec import Layer


def wave(times: torch.Tensor, T: int) -> torch.Tensor:
    """The spike wave ``[T, ...]`` of first-spike steps ``times`` (``T``: never)."""
    steps = torch.arange(T).view(T, *([1] * times.dim()))
    return (steps >= times.unsqueeze(0)).float()


def first_steps(w: torch.Tensor) -> torch.Tensor:
    """A wave's first-spike steps (``T`` where it never fires)."""
    return (w.shape[0] - w.sum(0)).long()


def earliest_per_place(pot: torch.Tensor) -> torch.Tensor:
    """Pointwise inhibition of thresholded potentials ``[T, F, h, w]`` (zero where a unit
    has not fired): at each place only the map that fired first keeps its potentials;
    ties go to the larger potential at that step, then the lower map."""
    T = pot.shape[0]
    fired = pot > 0
    any_fired = fired.any(1)  # [T, h, w]
    first = torch.where(any_fired.any(0), (~any_fired).sum(0), torch.zeros_like(any_fired[0],
                                                                               dtype=torch.long))
    first = first.clamp(max=T - 1)
    at_first = pot.gather(0, first.expand(1, pot.shape[1], *first.shape)).squeeze(0)
    # argmax takes the first of equal maxima: the lower map.
    winner = at_first.argmax(0)  # [h, w]
    keep = torch.zeros_like(at_first, dtype=torch.bool)
    keep.scatter_(0, winner.unsqueeze(0), any_fired.any(0).unsqueeze(0))
    return pot * keep.unsqueeze(0)


def k_winners(pot: torch.Tensor, kwta: int, radius: int) -> list[tuple[int, int, int]]:
    """Up to ``kwta`` (map, row, column) winners of thresholded potentials ``[T, F, h, w]``:
    the earliest spike, then the larger potential at it, then the lower index; a winner
    removes its map and every map within ``radius`` places."""
    T, Fm, h, w = pot.shape
    fired = pot > 0
    t_first = torch.where(fired.any(0), (~fired).sum(0), torch.full_like(fired[0], T,
                                                                         dtype=torch.long))
    value = pot.gather(0, t_first.clamp(max=T - 1).unsqueeze(0)).squeeze(0)
    alive = fired.any(0)
    winners = []
    for _ in range(kwta):
        if not alive.any():
            break
        t_min = t_first[alive].min()
        ties = alive & (t_first == t_min)
        v = torch.where(ties, value, torch.full_like(value, -float("inf")))
        flat = int(torch.argmax(v.flatten()))  # the first of equal maxima
        f, y, x = flat // (h * w), (flat // w) % h, flat % w
        winners.append((f, y, x))
        alive[f] = False
        alive[:, max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1] = False
    return winners


def stack_times(tin: torch.Tensor, layers: tuple[Layer, ...], weights: list, T: int,
                trained: int = -1) -> list[torch.Tensor]:
    """First-spike steps of the input and of every layer's output (the layers up to
    ``trained`` when it is given, that one's input inhibited where it asks); ``weights[l]``
    is conv layer l's ``[F, C, k, k]`` kernel (float64 potentials: the kernel's float32
    sums agree up to rounding)."""
    out = [tin]
    x = wave(tin, T)
    upto = len(layers) if trained < 0 else trained + 1
    for n, lay in enumerate(layers[:upto]):
        if lay.kind == "conv":
            if n == trained and lay.inhibit_input:
                x = wave(first_steps(earliest_per_place(x)), T)
            pot = F.conv2d(F.pad(x.double(), (lay.pad,) * 4), weights[n].double(),
                           stride=lay.stride)
            x = (pot > lay.threshold).float()
        else:
            x = F.max_pool2d(x, lay.kernel, lay.stride, lay.pad)
        out.append(first_steps(x))
    return out


def train_image(tin: torch.Tensor, layers: tuple[Layer, ...], weights: list, T: int,
                layer: int, a_plus: float, a_minus: float, wmin: float = 0.0,
                wmax: float = 1.0) -> list[tuple[int, int, int]]:
    """One image's training of conv layer ``layer`` with Kheradpisheh's multiplicative
    STDP, in place on ``weights[layer]``; returns the winners."""
    lay = layers[layer]
    times = stack_times(tin, layers, weights, T, trained=layer)
    x = wave(times[layer], T)
    if lay.inhibit_input:
        x = wave(first_steps(earliest_per_place(x)), T)
    t_in = first_steps(x)
    pot = F.conv2d(F.pad(x.double(), (lay.pad,) * 4), weights[layer].double(),
                   stride=lay.stride)
    pot = pot * (pot > lay.threshold)
    pot = earliest_per_place(pot)
    winners = k_winners(pot, lay.winners, lay.radius)
    t_out = torch.where((pot > 0).any(0), (~(pot > 0)).sum(0),
                        torch.full(pot.shape[1:], T, dtype=torch.long))
    padded = F.pad(t_in, (lay.pad,) * 4, value=T)
    W = weights[layer]
    k, s = lay.kernel, lay.stride
    for f, y, xx in winners:
        field = padded[:, y * s:y * s + k, xx * s:xx * s + k]
        before = field <= t_out[f, y, xx]
        w = W[f]
        soft = w * (1 - w)
        W[f] = torch.where(before, w + a_plus * soft, w - a_minus * soft).clamp(wmin, wmax)
    return winners
