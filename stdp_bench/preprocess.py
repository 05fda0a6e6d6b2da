"""Image front ends applied before encoding: difference-of-Gaussians on/off channels.

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
