"""The MNIST family: 28x28 grey IDX files read with torchvision's classes.

>>> [(d.name, d.n_classes) for d in LEVELS][-3:]
[('emnist_digits', 10), ('emnist_letters', 26), ('emnist_balanced', 47)]
>>> SOURCES["fashion_mnist"].folder
'FashionMNIST/raw'
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.datasets.source import Images, Source
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


def _emnist(split: str, label_offset: int = 0) -> Source:
    files = tuple(f"emnist-{split}-{part}-{kind}-ubyte" for part in ("train", "test")
                  for kind in ("images-idx3", "labels-idx1"))
    # EMNIST's IDX images are stored transposed.
    return Source("EMNIST/raw", files, _reader("EMNIST", split, True, label_offset))


SOURCES = {
    "mnist": Source("MNIST/raw", _IDX, _reader("MNIST")),
    "fashion_mnist": Source("FashionMNIST/raw", _IDX, _reader("FashionMNIST")),
    "kmnist": Source("KMNIST/raw", _IDX, _reader("KMNIST")),
    "emnist_digits": _emnist("digits"),
    "emnist_letters": _emnist("letters", label_offset=1),  # labelled 1..26 on disk
    "emnist_balanced": _emnist("balanced"),
}
