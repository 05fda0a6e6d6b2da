"""Training curves in TensorBoard (``stdp-bench run|tune --tensorboard DIR``).

At every learning-curve point of a job and at its end, each replica's readout
accuracies, spikes per test sample, silent fraction and mean adaptive threshold go to
``DIR/<cell id>`` as scalars (step: training samples so far), with its weights (receptive
fields, or a conv / local layer's filters) as one tiled image. Everything comes from
what the protocol computes at those points anyway (the responses it scores, the
engine's state and arrays), so the training loop itself is untouched; with no
``DIR`` nothing here runs. tensorboardX writes the event files (BindsNET depends on it,
so it adds nothing to install).

>>> import numpy as np
>>> tiles(np.arange(8.0).reshape(2, 4), (2, 1)).shape  # 4 fields of 2x1, 2 by 2
(7, 5)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from stdp_bench.config import CellConfig
from stdp_bench.records import Metrics

# Tiled images show at most this many neurons (maps) each.
TILES = 100


def tiles(fields: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Columns of ``fields`` (``[h*w, n]``) as a square grid of ``h x w`` tiles with a
    one-pixel gap, each scaled to [0, 1]; at most :data:`TILES` of them."""
    h, w = int(shape[-2]), int(shape[-1])
    f = np.asarray(fields, dtype=np.float32)[: h * w, :TILES]
    n = f.shape[1]
    side = int(np.ceil(np.sqrt(n)))
    out = np.zeros((side * (h + 1) + 1, side * (w + 1) + 1), np.float32)
    lo, hi = f.min(axis=0), f.max(axis=0)
    f = (f - lo) / np.where(hi > lo, hi - lo, 1.0)
    for i in range(n):
        y, x = divmod(i, side)
        out[1 + y * (h + 1):1 + y * (h + 1) + h, 1 + x * (w + 1):1 + x * (w + 1) + w] = \
            f[:, i].reshape(h, w)
    return out


def _fields(arrays: dict[str, np.ndarray], image_shape: Sequence[int]
            ) -> tuple[np.ndarray, Sequence[int]] | None:
    if "weights" in arrays:  # [n_input, n_neurons]; a multi-channel input shows channel 0
        return arrays["weights"], image_shape
    if "filters" in arrays:  # [maps, (channels,) k, k]
        filt = np.asarray(arrays["filters"])
        k = filt.shape[-2:]
        first = filt.reshape(len(filt), -1, k[0] * k[1])[:, 0]
        return first.T, k
    return None


class TensorBoardLog:
    """The event files of one job's replicas, one folder per cell id under ``root``."""

    def __init__(self, root: str | Path, cfgs: Sequence[CellConfig],
                 image_shape: Sequence[int]) -> None:
        from tensorboardX import SummaryWriter

        self.writers = [SummaryWriter(str(Path(root) / c.cell_id())) for c in cfgs]
        self.image_shape = image_shape

    def point(self, r: int, step: int, accuracies: dict[str, float], activity: Metrics,
              state: dict[str, np.ndarray], arrays: dict[str, np.ndarray]) -> None:
        """Replica r after ``step`` training samples."""
        w = self.writers[r]
        for name, acc in accuracies.items():
            w.add_scalar(f"accuracy/{name}", acc, step)
        for key in ("exc_spikes_per_sample", "silent_fraction"):
            if activity.get(key) is not None:
                w.add_scalar(f"activity/{key}", float(activity[key]), step)
        theta = state.get("theta")
        if theta is not None:
            w.add_scalar("activity/mean_theta", float(np.mean(theta[r])), step)
        fields = _fields(arrays, self.image_shape)
        if fields is not None:
            w.add_image("weights", tiles(*fields), step, dataformats="HW")

    def close(self) -> None:
        for w in self.writers:
            w.close()
