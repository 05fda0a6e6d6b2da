"""Image front ends applied before encoding: difference-of-Gaussians on/off channels
(``dog``), Kheradpisheh et al.'s front end with its threshold and local normalisation
(``dog_k2018``, :func:`dog_k2018`), and Mozafari et al.'s six-channel one
(``dog_m2019``, :func:`dog_m2019`).

Kheradpisheh et al. (2018) feed their convolutional STDP network DoG-filtered images:
a centre-surround filter (sigma 1 and 2 pixels in a 7 x 7 window for MNIST), its
positive part as an ON channel and its negative part as an OFF channel. Each image's
two maps are scaled together so the strongest response is 1, as rate codes expect
values in [0, 1]. Every input channel gets its own ON and OFF map.

>>> import numpy as np
>>> x = np.zeros((1, 1, 9, 9), np.float32); x[0, 0, 4, 4] = 1.0
>>> y = dog_on_off(x)
>>> y.shape, float(y.max()), bool(y[0, 0, 4, 4] == 1.0), bool(y[0, 1, 4, 4] == 0.0)
((1, 2, 9, 9), 1.0, True, True)
"""

from __future__ import annotations

import numpy as np

DOG_SIGMAS_PX = (1.0, 2.0)
DOG_WINDOW_PX = 7


def dog_kernel(sigmas: tuple[float, float] = DOG_SIGMAS_PX,
               window: int = DOG_WINDOW_PX) -> np.ndarray:
    """Centre minus surround, each Gaussian normalised to sum 1 over the window.

    >>> abs(float(dog_kernel().sum())) < 1e-6
    True
    """
    r = np.arange(window) - (window - 1) / 2
    d2 = r[:, None] ** 2 + r[None, :] ** 2

    def gauss(s: float) -> np.ndarray:
        g = np.exp(-d2 / (2 * s * s))
        return g / g.sum()

    return (gauss(sigmas[0]) - gauss(sigmas[1])).astype(np.float32)


def dog_on_off(x: np.ndarray, chunk: int = 10_000) -> np.ndarray:
    """``(N, C, H, W)`` images in [0, 1] -> ``(N, 2C, H, W)``: ON and OFF of each channel."""
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    k = torch.from_numpy(dog_kernel())[None, None].repeat(c, 1, 1, 1)
    out = np.empty((n, 2 * c, h, w), np.float32)
    with torch.no_grad():
        for lo in range(0, n, chunk):
            d = F.conv2d(torch.from_numpy(np.ascontiguousarray(x[lo:lo + chunk])), k,
                         padding=DOG_WINDOW_PX // 2, groups=c)
            on_off = torch.stack([d.clamp(min=0), (-d).clamp(min=0)], 2).flatten(1, 2)
            top = on_off.flatten(1).max(1).values.clamp(min=1e-12)
            out[lo:lo + chunk] = (on_off / top.view(-1, 1, 1, 1)).numpy()
    return out


# Kheradpisheh et al. (2018)'s front end as SpykeTorch's KheradpishehDeep runs it
# (ANCHORS.md): 7 x 7 DoG kernels, sigmas (1, 2) ON and (2, 1) OFF, on images in 0..255;
# responses at or below 50 dropped; each response divided by the mean response in the
# (2 * 8 + 1)^2 window around it.
K2018_SIGMAS_PX = ((1.0, 2.0), (2.0, 1.0))
K2018_THRESHOLD = 50.0
K2018_NORM_RADIUS = 8


def spyketorch_dog_kernel(sigma1: float, sigma2: float,
                          window: int = DOG_WINDOW_PX) -> np.ndarray:
    """SpykeTorch's DoG kernel: ``(g1 / s1^2 - g2 / s2^2) / (2 pi)`` with
    ``g = exp(-r^2 / (2 s^2))``, minus its mean, over its maximum (so its peak is 1:
    unlike :func:`dog_kernel`, whose Gaussians each sum to 1).

    >>> k = spyketorch_dog_kernel(1.0, 2.0)
    >>> float(k.max()), float(k[3, 3]), abs(float(k.mean())) < 1e-6
    (1.0, 1.0, True)
    """
    r = np.arange(window) - (window - 1) / 2
    d2 = r[:, None] ** 2 + r[None, :] ** 2
    g1 = np.exp(-0.5 * d2 / sigma1 ** 2) / sigma1 ** 2
    g2 = np.exp(-0.5 * d2 / sigma2 ** 2) / sigma2 ** 2
    k = (g1 - g2) / (2 * np.pi)
    k = k - k.mean()
    return (k / k.max()).astype(np.float32)


def local_normalization(y: np.ndarray, radius: int, eps: float = 1e-12) -> np.ndarray:
    """Each value of ``(N, C, H, W)`` over the mean of its channel's values in the
    ``(2 r + 1)^2`` window around it (zeros outside the image count), as SpykeTorch's
    ``local_normalization`` divides.

    >>> y = np.zeros((1, 1, 3, 3), np.float32); y[0, 0, 1, 1] = 9.0
    >>> float(local_normalization(y, 1)[0, 0, 1, 1])  # 9 over (9 / 9)
    9.0
    """
    import torch
    import torch.nn.functional as F

    n, c, h, w = y.shape
    side = 2 * radius + 1
    t = torch.from_numpy(np.ascontiguousarray(y, np.float32)).reshape(n * c, 1, h, w)
    box = torch.full((1, 1, side, side), 1.0 / side ** 2)
    with torch.no_grad():
        means = F.conv2d(t, box, padding=radius) + eps
    return (t / means).reshape(n, c, h, w).numpy()


def dog_k2018(x: np.ndarray, chunk: int = 10_000) -> np.ndarray:
    """``(N, C, H, W)`` images in [0, 1] -> ``(N, 2C, H, W)``: each channel's ON and OFF
    responses to :data:`K2018_SIGMAS_PX` on the 0..255 scale, those at or below
    :data:`K2018_THRESHOLD` set to 0, locally normalised (:func:`local_normalization`,
    radius :data:`K2018_NORM_RADIUS`), then scaled per image so the strongest is 1 (the
    rate codes want [0, 1]; the latency code only reads the order).

    >>> x = np.zeros((1, 1, 9, 9), np.float32); x[0, 0, 4, 4] = 1.0
    >>> y = dog_k2018(x)
    >>> y.shape, float(y.max()), bool(y[0, 0, 4, 4] == 1.0), float(y[0, 1, 4, 4])
    ((1, 2, 9, 9), 1.0, True, 0.0)
    >>> float(dog_k2018(x * 0.1).max())  # 25.5 at the peak: under the threshold
    0.0
    """
    kernels = np.stack([spyketorch_dog_kernel(*s) for s in K2018_SIGMAS_PX])
    return _filter_bank(x, kernels, K2018_THRESHOLD, K2018_NORM_RADIUS, keep_equal=False,
                        chunk=chunk)


def _filter_bank(x: np.ndarray, kernels: np.ndarray, threshold: float, radius: int, *,
                 keep_equal: bool, chunk: int) -> np.ndarray:
    """SpykeTorch's ``Filter`` and ``local_normalization`` as both front ends use them:
    each of the ``K`` square ``kernels`` (same size, odd) on each channel of the 0..255
    image, zero-padded to keep its size (channel c's responses are outputs ``Kc ..
    Kc + K - 1``); responses under ``threshold`` (and at it, unless ``keep_equal``) set
    to 0; locally normalised at ``radius``; scaled per image so the strongest is 1."""
    import torch

    n, c, h, w = x.shape
    K, size = kernels.shape[0], kernels.shape[-1]
    k = torch.from_numpy(np.ascontiguousarray(kernels, np.float32))[:, None].repeat(
        c, 1, 1, 1)  # [K*C, 1, size, size]
    out = np.empty((n, K * c, h, w), np.float32)
    with torch.no_grad():
        for lo in range(0, n, chunk):
            img = torch.from_numpy(np.ascontiguousarray(x[lo:lo + chunk])) * 255.0
            d = torch.nn.functional.conv2d(img, k, padding=size // 2, groups=c)
            kept = d >= threshold if keep_equal else d > threshold
            d = torch.where(kept, d, torch.zeros_like(d))
            y = torch.from_numpy(local_normalization(d.numpy(), radius))
            top = y.flatten(1).max(1).values.clamp(min=1e-12)
            out[lo:lo + chunk] = (y / top.view(-1, 1, 1, 1)).numpy()
    return out


# Mozafari et al. (2019)'s front end as SpykeTorch's MozafariMNIST2018 runs it: six DoG
# kernels, ON and OFF at three scales (window, sigma1, sigma2), each padded to the
# largest window and applied with padding 6, on images in 0..255; responses *under* 50
# dropped (SpykeTorch's Filter keeps a response of exactly 50; dog_k2018 drops it, a
# known difference left so that its committed results stand); local normalisation
# radius 8.
M2019_KERNELS = ((3, 3 / 9, 6 / 9), (3, 6 / 9, 3 / 9), (7, 7 / 9, 14 / 9),
                 (7, 14 / 9, 7 / 9), (13, 13 / 9, 26 / 9), (13, 26 / 9, 13 / 9))
M2019_THRESHOLD = 50.0
M2019_NORM_RADIUS = 8


def dog_m2019(x: np.ndarray, chunk: int = 10_000) -> np.ndarray:
    """``(N, C, H, W)`` images in [0, 1] -> ``(N, 6C, H, W)``: channel c's responses to
    the six kernels of :data:`M2019_KERNELS` (outputs ``6c .. 6c + 5``, in that order)
    on the 0..255 scale, those under :data:`M2019_THRESHOLD` set to 0, locally
    normalised (radius :data:`M2019_NORM_RADIUS`), then scaled per image so the
    strongest is 1.

    >>> x = np.zeros((1, 1, 15, 15), np.float32); x[0, 0, 7, 7] = 1.0
    >>> y = dog_m2019(x)
    >>> y.shape, float(y.max()), [bool(y[0, ch, 7, 7] > 0) for ch in range(6)]
    ((1, 6, 15, 15), 1.0, [True, False, True, False, True, False])
    """
    size = max(k[0] for k in M2019_KERNELS)
    kernels = np.zeros((len(M2019_KERNELS), size, size), np.float32)
    for i, (window, s1, s2) in enumerate(M2019_KERNELS):
        p = (size - window) // 2  # centred in the largest window, as SpykeTorch pads
        kernels[i, p:p + window, p:p + window] = spyketorch_dog_kernel(s1, s2, window)
    return _filter_bank(x, kernels, M2019_THRESHOLD, M2019_NORM_RADIUS, keep_equal=True,
                        chunk=chunk)
