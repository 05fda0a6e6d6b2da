"""Gradient-trained comparison baselines: plain ANNs and surrogate-gradient spiking nets.

Cells with ``family = "ann"`` or ``"surrogate"`` run here instead of the STDP engine,
through the same runner, record schema, tables and plots.

* ``architecture = "mlp"``: 784-N-10 (N = ``n_neurons``, the STDP network's size).
* ``architecture = "cnn"``: 12C5-MP2-64C5-MP2-FC10 (5x5 convolutions padded on images
  smaller than 20 pixels so that 8x8 digits fit).

The ANN uses ReLU. The surrogate net uses snnTorch's ``Leaky`` neurons (decay
``surrogate_beta``, threshold 1, reset by subtraction) with the fast-sigmoid surrogate
derivative of slope ``surrogate_slope``, trained end to end by backpropagation through
time over ``time`` steps. Its output layer is a non-spiking leaky integrator and the
logits are that membrane potential averaged over the steps; ``mem_reg`` adds
``mem_reg * mean(v_out^2)`` to the loss (the membrane-potential regulariser of the seed
documents' spiking CNNs). snnTorch is used because it is the maintained library for
exactly these neurons and surrogates, and its ``Leaky`` is plain torch, so it runs on
CUDA unchanged.

Encoders (``encoder``) for the surrogate net: ``direct`` feeds the pixel values as a
current at every step; ``poisson``, ``bernoulli`` and ``rank_order`` give the same codes
as the STDP engine (``poisson``: Poisson-distributed inter-spike intervals of mean
1000 / (rate dt) steps, BindsNET's scheme; ``bernoulli``: one trial per step;
``rank_order``: one spike per nonzero pixel, brighter earlier), at ``intensity_hz``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from stdp_bench.config import CellConfig
from stdp_bench.levels import registry

Progress = Callable[[int], None]


def _pad(image_shape: tuple[int, int]) -> int:
    return 2 if min(image_shape) < 20 else 0


def _cnn_flat(image_shape: tuple[int, int]) -> int:
    pad = _pad(image_shape)
    h, w = image_shape
    for _ in range(2):
        h, w = (h + 2 * pad - 4) // 2, (w + 2 * pad - 4) // 2
    return 64 * h * w


class ANN(nn.Module):
    """ReLU MLP (784-N-10) or, ``convolutional``, CNN (12C5-MP2-64C5-MP2-FC10)."""

    spiking = False

    def __init__(self, cfg: CellConfig, n_input: int, input_shape: tuple[int, int, int],
                 n_classes: int, convolutional: bool) -> None:
        super().__init__()
        self.input_shape = input_shape
        if not convolutional:
            self.body = nn.Sequential(nn.Linear(n_input, cfg.n_neurons), nn.ReLU(),
                                      nn.Linear(cfg.n_neurons, n_classes))
        else:
            pad = _pad(input_shape[1:])
            self.body = nn.Sequential(
                nn.Unflatten(1, input_shape),
                nn.Conv2d(input_shape[0], 12, 5, padding=pad), nn.MaxPool2d(2), nn.ReLU(),
                nn.Conv2d(12, 64, 5, padding=pad), nn.MaxPool2d(2), nn.ReLU(),
                nn.Flatten(), nn.Linear(_cnn_flat(input_shape[1:]), n_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and activity statistics (non-zero activations per sample)."""
        active = torch.zeros(len(x), device=x.device)
        h = x
        for layer in self.body:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                active = active + (h > 0).flatten(1).sum(1)
        return h, {"active": active}

    def images(self, x: torch.Tensor, gen: torch.Generator
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits of images ``x`` [B, n_input] (the ANN reads pixels as they are)."""
        return self(x)

    def penalty(self, stats: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """What the loss adds to the cross-entropy: nothing."""
        return 0.0


class SurrogateSNN(nn.Module):
    """LIF spiking MLP or CNN (snnTorch ``Leaky``) with a membrane-potential readout."""

    spiking = True

    def __init__(self, cfg: CellConfig, n_input: int, input_shape: tuple[int, int, int],
                 n_classes: int, convolutional: bool) -> None:
        import snntorch as snn
        from snntorch import surrogate

        super().__init__()
        self.input_shape = input_shape
        self.beta = cfg.surrogate_beta
        self.cfg = cfg
        self.steps = max(1, int(cfg.time / cfg.dt))
        grad = surrogate.fast_sigmoid(slope=cfg.surrogate_slope)
        if not convolutional:
            self.convs = nn.ModuleList()
            self.fcs = nn.ModuleList([nn.Linear(n_input, cfg.n_neurons)])
            out_in = cfg.n_neurons
        else:
            pad = _pad(input_shape[1:])
            self.convs = nn.ModuleList([nn.Conv2d(input_shape[0], 12, 5, padding=pad),
                                        nn.Conv2d(12, 64, 5, padding=pad)])
            self.fcs = nn.ModuleList()
            out_in = _cnn_flat(input_shape[1:])
        self.lifs = nn.ModuleList([snn.Leaky(beta=self.beta, spike_grad=grad)
                                   for _ in range(len(self.convs) + len(self.fcs))])
        self.out = nn.Linear(out_in, n_classes)

    def forward(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``x_seq`` [T, B, n_input] -> logits [B, classes], spike and synop counts."""
        T, B = x_seq.shape[:2]
        mems = [lif.init_leaky() for lif in self.lifs]
        v_out = torch.zeros(B, self.out.out_features, device=x_seq.device)
        v_sum = torch.zeros_like(v_out)
        v_sq = torch.zeros((), device=x_seq.device)
        spikes = torch.zeros(B, device=x_seq.device)
        synops = torch.zeros(B, device=x_seq.device)
        for t in range(T):
            h = x_seq[t]
            k = 0
            if len(self.convs):
                h = h.view(B, *self.input_shape)
                for conv in self.convs:
                    h = nn.functional.max_pool2d(conv(h), 2)
                    h, mems[k] = self.lifs[k](h, mems[k])
                    n_spk = h.flatten(1).sum(1)
                    spikes = spikes + n_spk
                    # A pooled conv1 spike reaches 64 maps x 5 x 5 positions of conv2;
                    # a conv2 spike reaches every readout neuron.
                    synops = synops + n_spk * (64 * 25 if k == 0 else self.out.out_features)
                    k += 1
                h = h.flatten(1)
            for fc in self.fcs:
                h, mems[k] = self.lifs[k](fc(h), mems[k])
                n_spk = h.sum(1)
                spikes = spikes + n_spk
                synops = synops + n_spk * self.out.out_features
                k += 1
            # Non-spiking leaky integrator: the readout neurons never reset.
            v_out = self.beta * v_out + self.out(h)
            v_sum = v_sum + v_out
            v_sq = v_sq + (v_out ** 2).mean()
        return v_sum / T, {"spikes": spikes, "synops": synops, "v_sq": v_sq / T}

    def images(self, x: torch.Tensor, gen: torch.Generator
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits of images ``x`` [B, n_input], encoded by the cell's encoder."""
        c = self.cfg
        return self(encode_batch(x, c.encoder, self.steps, c.intensity_hz, c.dt, gen))

    def penalty(self, stats: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """The membrane-potential regulariser ``mem_reg * mean(v_out^2)``."""
        return self.cfg.mem_reg * stats["v_sq"] if self.cfg.mem_reg > 0 else 0.0


# The model of each gradient-trained family (the ``family`` setting's choices).
MODELS: dict[str, type[ANN] | type[SurrogateSNN]] = {"ann": ANN, "surrogate": SurrogateSNN}


def encode_batch(x: torch.Tensor, encoder: str, time_steps: int, rate_hz: float,
                 dt: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """[T, B, n] input for the surrogate net from images ``x`` [B, n] in [0, 1], by the
    encoder level's batched torch code (its module's ``torch_encode_batch``)."""
    module = registry.module(registry.get("encoder", encoder))
    if not hasattr(module, "torch_encode_batch"):
        raise ValueError(f"encoder {encoder!r} has no batched torch encoder "
                         "(torch_encode_batch) for the surrogate baselines")
    return module.torch_encode_batch(x, time_steps, rate_hz, dt, gen)


def input_synops(model: nn.Module, xe: torch.Tensor, cfg: CellConfig, steps: int,
                 gen: torch.Generator) -> float:
    """Synaptic operations of the input layer per sample: input events x fan-out."""
    sample = xe[: min(200, len(xe))]
    with torch.no_grad():
        enc = encode_batch(sample, cfg.encoder, steps, cfg.intensity_hz, cfg.dt, gen)
    events = float((enc != 0).float().sum((0, 2)).mean())
    first = model.convs[0] if len(model.convs) else model.fcs[0]
    fan = first.out_channels * 25 if isinstance(first, nn.Conv2d) else first.out_features
    return events * fan


def ann_macs(model: nn.Module, image_shape: tuple[int, int]) -> int:
    total = 0
    h, w = image_shape
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            total += layer.in_features * layer.out_features
        elif isinstance(layer, nn.Conv2d):
            pad = layer.padding[0]
            h, w = h + 2 * pad - 4, w + 2 * pad - 4
            total += layer.in_channels * layer.out_channels * 25 * h * w
            h, w = h // 2, w // 2
    return total
