"""What a dataset level provides besides its declaration: its files and their reader.

A dataset module exposes ``SOURCES = {level name: Source(...)}``; the data layer
(:mod:`stdp_bench.data_sources`) checks the files and calls the reader. Readers import
torchvision or tonic when called, so declaring a level imports neither.

>>> Source("MNIST/raw", ("t10k-images-idx3-ubyte",), read=None).missing(Path("/nowhere"))
['t10k-images-idx3-ubyte']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Images:
    """A split of a dataset as read: ``x`` (N, C, H, W) float32 in [0, 1], ``y`` int64."""

    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class Recordings:
    """A split of an event dataset: per sample, event times (us) and input indices
    (``channel * H * W + row * W + col``), in time order; labels ``y``."""

    times_us: list[np.ndarray]
    inputs: list[np.ndarray]
    y: np.ndarray


Reader = Callable[[str, bool], tuple["Images | Recordings", "Images | Recordings"]]
# (training, test) sample counts from the files under the data root, without reading them.
Sizer = Callable[[Path], tuple[int, int]]


@dataclass(frozen=True)
class Source:
    """One dataset's files: the folder under the data root, the files expected there
    (``<class>`` stands for each class folder, ``*`` for any name), its reader
    ``read(root, download) -> (train, test)`` and, optionally, ``sizes(root) -> (n_train,
    n_test)`` from headers or file counts, so a run's preflight need not read the data
    (without it the preflight reads the dataset)."""

    folder: str
    files: tuple[str, ...]
    read: Reader | None
    sizes: Sizer | None = None

    def missing(self, root: Path) -> list[str]:
        """The expected files (patterns) with nothing matching them under ``root``."""
        base = root / self.folder
        return [f for f in self.files
                if not any(base.glob(f.replace("<class>", "*")))]
