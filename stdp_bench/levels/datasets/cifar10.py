"""CIFAR-10: 32x32 colour photos in pickled batches, read with torchvision's class.

``color = "rgb"`` feeds the three channels, ``"gray"`` their luma (stdp_bench.data).

>>> LEVEL.shape, SOURCES["cifar10"].files[-1]
((3, 32, 32), 'test_batch')
"""

from __future__ import annotations

import os
from pathlib import Path

from stdp_bench.levels.datasets.mnist_family import images
from stdp_bench.levels.datasets.source import Images, Source
from stdp_bench.levels.spec import Level

LEVEL = Level(axis="dataset", name="cifar10", module=__name__, shape=(3, 32, 32),
              n_classes=10, doc="CIFAR-10 colour photos (50,000 / 10,000); color = gray or rgb")


def read(root: str, download: bool) -> tuple[Images, Images]:
    """Train and test splits of the batches in ``root/cifar-10-batches-py``."""
    from torchvision.datasets import CIFAR10

    class PresentCIFAR10(CIFAR10):
        """CIFAR10 that trusts files it finds: its md5 checks refuse every file but the
        official ones (test fixtures included); downloads are still checked."""

        def _check_integrity(self) -> bool:
            return all(os.path.isfile(os.path.join(self.root, self.base_folder, name))
                       for name, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            # Only the class names live there, and the labels are indices already.
            self.classes = []

    return tuple(images(PresentCIFAR10(root=root, train=train, download=download))
                 for train in (True, False))


def sizes(root: Path) -> tuple[int, int]:
    """50,000 and 10,000: every batch of the official files holds 10,000 images, and the
    reader needs all six present (the pickles have no header to count from without
    unpickling them whole)."""
    return 5 * 10_000, 10_000


SOURCES = {"cifar10": Source("cifar-10-batches-py",
                             tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
                             read, sizes)}
