"""N-MNIST: MNIST digits recorded by an event camera in three saccades, read with tonic.

Each recording is a list of events (x, y, time in us, polarity) on a 34 x 34 sensor:
2 x 34 x 34 inputs for the ``events`` encoder, about 300 ms long (three 100 ms
saccades, Orchard et al. 2015), which is the default presentation time.

>>> LEVEL.shape, LEVEL.events, LEVEL.duration_ms
((2, 34, 34), True, 300.0)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stdp_bench.levels.datasets.source import Recordings, Source
from stdp_bench.levels.spec import Level

LEVEL = Level(axis="dataset", name="nmnist", module=__name__, shape=(2, 34, 34),
              n_classes=10, events=True, duration_ms=300.0,
              doc="N-MNIST event-camera digits, 2 polarities (60,000 / 10,000; tonic)")


def read(root: str, download: bool) -> tuple[Recordings, Recordings]:
    """Train and test recordings under ``root/NMNIST/{Train,Test}/<digit>/``."""
    import tonic.datasets

    # Named NMNIST: tonic looks in the folder named after the dataset's class.
    class NMNIST(tonic.datasets.NMNIST):
        """tonic's NMNIST that reads whatever recordings its folders hold: the stock
        class asks for the zip and at least 10,000 extracted files, or downloads."""

        def _check_exists(self) -> bool:
            return not download or super()._check_exists()

    W, H, C = NMNIST.sensor_size  # (width, height, polarities); rows are y
    out = []
    for train in (True, False):
        ds = NMNIST(save_to=root, train=train)
        times, inputs = [], []
        for k in range(len(ds)):
            ev, _ = ds[k]
            # int32 (tonic reads int64): half the memory of 60,000 recordings; times in us
            # (below 2 ** 31, 35 minutes) and the 2,312 inputs fit it.
            times.append(ev["t"].astype(np.int32))
            inputs.append((ev["p"] * (H * W) + ev["y"] * W + ev["x"]).astype(np.int32))
        out.append(Recordings(times, inputs, np.asarray(ds.targets, dtype=np.int64)))
    return tuple(out)


def sizes(root: Path) -> tuple[int, int]:
    """Recordings per split: the files tonic's reader would take (every name ending in
    ``bin`` under ``NMNIST/Train`` and ``NMNIST/Test``), counted, not read."""
    def count(split: str) -> int:
        return sum(name.endswith("bin") for _, _, names in os.walk(Path(root) / "NMNIST" / split)
                   for name in names)
    return count("Train"), count("Test")


SOURCES = {"nmnist": Source("NMNIST", ("Train/<class>/*.bin", "Test/<class>/*.bin"), read,
                            sizes)}
