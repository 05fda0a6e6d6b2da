"""The MNIST family: 28x28 grey IDX files read with torchvision's classes.

>>> [(d.name, d.n_classes) for d in LEVELS][-3:]
[('emnist_digits', 10), ('emnist_letters', 26), ('emnist_balanced', 47)]
>>> SOURCES["fashion_mnist"].folder
'FashionMNIST/raw'
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from stdp_bench.levels.datasets.source import Images, Sizer, Source
from stdp_bench.levels.spec import Level

_SHAPE = (1, 28, 28)
_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte")

LEVELS = (
    Level(axis="dataset", name="mnist", module=__name__, shape=_SHAPE, n_classes=10,
          doc="MNIST handwritten digits (60,000 train / 10,000 test)"),
    Level(axis="dataset", name="fashion_mnist", module=__name__, shape=_SHAPE, n_classes=10,
          doc="Fashion-MNIST clothing (60,000 / 10,000)"),
    Level(axis="dataset", name="kmnist", module=__name__, shape=_SHAPE, n_classes=10,
          doc="Kuzushiji-MNIST cursive Japanese (60,000 / 10,000)"),
    Level(axis="dataset", name="emnist_digits", module=__name__, shape=_SHAPE, n_classes=10,
          doc="EMNIST digits (240,000 / 40,000)"),
    Level(axis="dataset", name="emnist_letters", module=__name__, shape=_SHAPE, n_classes=26,
          doc="EMNIST letters, case merged (124,800 / 20,800)"),
    Level(axis="dataset", name="emnist_balanced", module=__name__, shape=_SHAPE,
          n_classes=47, doc="EMNIST balanced digits and letters (112,800 / 18,800)"),
)


def images(ds, transpose: bool = False, label_offset: int = 0) -> Images:
    """A torchvision dataset's arrays as :class:`Images` (grey (N, H, W) or CIFAR's
    (N, H, W, C) uint8), optionally transposed, labels shifted to start at 0."""
    data = ds.data if isinstance(ds.data, np.ndarray) else ds.data.numpy()
    data = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)
    if transpose:
        data = data.transpose(0, 1, 3, 2)
    y = np.asarray(ds.targets, dtype=np.int64) - label_offset
    return Images(np.ascontiguousarray(data, dtype=np.float32) / 255.0, y)


def _reader(cls_name: str, split: str | None = None, transpose: bool = False,
            label_offset: int = 0):
    def read(root: str, download: bool) -> tuple[Images, Images]:
        import torchvision.datasets as tv

        cls = getattr(tv, cls_name)
        extra = {} if split is None else {"split": split}
        return tuple(images(cls(root=root, train=train, download=download, **extra),
                            transpose, label_offset) for train in (True, False))
    return read


# IDX magic numbers: unsigned bytes, 3 dimensions (images) or 1 (labels).
_IMAGES_MAGIC, _LABELS_MAGIC = 0x803, 0x801


def idx_count(path: Path, magic: int) -> int:
    """The item count in an IDX file's header (big-endian magic, then the count),
    checking the magic; the data itself is not read."""
    with open(path, "rb") as f:
        head = f.read(8)
    found, count = struct.unpack(">II", head) if len(head) == 8 else (None, 0)
    if found != magic:
        raise ValueError(f"{path.name} has no IDX header with magic {magic:#x}")
    return count


def _idx_sizes(folder: str, files: tuple[str, ...]) -> Sizer:
    """Sizes from the headers of ``files``: train images, labels, test images, labels."""
    def sizes(root: Path) -> tuple[int, int]:
        base = Path(root) / folder
        counts = []
        for images, labels in (files[:2], files[2:]):
            n = idx_count(base / images, _IMAGES_MAGIC)
            if idx_count(base / labels, _LABELS_MAGIC) != n:
                raise ValueError(f"{images} and {labels} hold different counts")
            counts.append(n)
        return counts[0], counts[1]
    return sizes


def _idx_source(folder: str, files: tuple[str, ...], read) -> Source:
    return Source(folder, files, read, _idx_sizes(folder, files))


def _emnist(split: str, label_offset: int = 0) -> Source:
    files = tuple(f"emnist-{split}-{part}-{kind}-ubyte" for part in ("train", "test")
                  for kind in ("images-idx3", "labels-idx1"))
    # EMNIST's IDX images are stored transposed.
    return _idx_source("EMNIST/raw", files, _reader("EMNIST", split, True, label_offset))


SOURCES = {
    "mnist": _idx_source("MNIST/raw", _IDX, _reader("MNIST")),
    "fashion_mnist": _idx_source("FashionMNIST/raw", _IDX, _reader("FashionMNIST")),
    "kmnist": _idx_source("KMNIST/raw", _IDX, _reader("KMNIST")),
    "emnist_digits": _emnist("digits"),
    "emnist_letters": _emnist("letters", label_offset=1),  # labelled 1..26 on disk
    "emnist_balanced": _emnist("balanced"),
}
