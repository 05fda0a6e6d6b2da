"""Where each dataset's files lie under the data root, and how they are read.

Images are read with torchvision's dataset classes, N-MNIST recordings with tonic's, in
the folder layout those libraries use, so a root they filled works here as it is. A
run checks the files first (:func:`missing_files`) and stops with one line naming the
dataset, the folder and the files expected there; it downloads only when asked
(``STDP_BENCH_DOWNLOAD=1``).

>>> source("fashion_mnist").folder, source("fashion_mnist").files[0]
('FashionMNIST/raw', 'train-images-idx3-ubyte')
>>> source("nmnist").files
('Train/<class>/*.bin', 'Test/<class>/*.bin')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from stdp_bench.levels.spec import ConfigError

DOWNLOAD_ENV = "STDP_BENCH_DOWNLOAD"

_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte")


def _emnist_files(split: str) -> tuple[str, ...]:
    return tuple(f"emnist-{split}-{part}-{kind}-ubyte" for part in ("train", "test")
                 for kind in ("images-idx3", "labels-idx1"))


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


@dataclass(frozen=True)
class Source:
    """One dataset's files: the folder under the data root and the files expected there
    (``<class>`` stands for each class folder, ``*`` for any name), and its reader."""

    folder: str
    files: tuple[str, ...]
    read: Callable[[str, bool], tuple[Images | Recordings, Images | Recordings]]

    def missing(self, root: Path) -> list[str]:
        """The expected files (patterns) with nothing matching them under ``root``."""
        base = root / self.folder
        return [f for f in self.files
                if not any(base.glob(f.replace("<class>", "*")))]


def _torchvision_split(ds, transpose: bool, label_offset: int) -> Images:
    data = ds.data if isinstance(ds.data, np.ndarray) else ds.data.numpy()
    if data.ndim == 3:  # (N, H, W) grey images
        data = data[:, None]
    else:  # CIFAR's (N, H, W, C)
        data = data.transpose(0, 3, 1, 2)
    if transpose:
        data = data.transpose(0, 1, 3, 2)
    y = np.asarray(ds.targets, dtype=np.int64) - label_offset
    return Images(np.ascontiguousarray(data, dtype=np.float32) / 255.0, y)


def _mnist_family(cls_name: str, split: str | None = None, transpose: bool = False,
                  label_offset: int = 0):
    def read(root: str, download: bool) -> tuple[Images, Images]:
        import torchvision.datasets as tv

        cls = getattr(tv, cls_name)
        extra = {} if split is None else {"split": split}
        return tuple(_torchvision_split(cls(root=root, train=train, download=download,
                                            **extra), transpose, label_offset)
                     for train in (True, False))
    return read


def _cifar10(root: str, download: bool) -> tuple[Images, Images]:
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

    return tuple(_torchvision_split(PresentCIFAR10(root=root, train=train, download=download),
                                    False, 0) for train in (True, False))


def _nmnist(root: str, download: bool) -> tuple[Recordings, Recordings]:
    from tonic.datasets import NMNIST

    class PresentNMNIST(NMNIST):
        """tonic's NMNIST that reads whatever recordings its folders hold: the stock
        class asks for the zip and at least 10,000 extracted files, or downloads."""

        def _check_exists(self) -> bool:
            return not download or super()._check_exists()

    H, W, C = NMNIST.sensor_size
    out = []
    for train in (True, False):
        ds = PresentNMNIST(save_to=root, train=train)
        times, inputs = [], []
        for k in range(len(ds)):
            ev, _ = ds[k]
            times.append(ev["t"].astype(np.int64))
            # tonic's sensor_size is (width, height, polarities); rows are y.
            inputs.append((ev["p"] * (H * W) + ev["y"] * W + ev["x"]).astype(np.int64))
        out.append(Recordings(times, inputs, np.asarray(ds.targets, dtype=np.int64)))
    return tuple(out)


SOURCES: dict[str, Source] = {
    "mnist": Source("MNIST/raw", _IDX, _mnist_family("MNIST")),
    "fashion_mnist": Source("FashionMNIST/raw", _IDX, _mnist_family("FashionMNIST")),
    "kmnist": Source("KMNIST/raw", _IDX, _mnist_family("KMNIST")),
    # EMNIST's IDX images are stored transposed; letters are labelled 1..26.
    "emnist_digits": Source("EMNIST/raw", _emnist_files("digits"),
                            _mnist_family("EMNIST", "digits", transpose=True)),
    "emnist_letters": Source("EMNIST/raw", _emnist_files("letters"),
                             _mnist_family("EMNIST", "letters", transpose=True,
                                           label_offset=1)),
    "emnist_balanced": Source("EMNIST/raw", _emnist_files("balanced"),
                              _mnist_family("EMNIST", "balanced", transpose=True)),
    "cifar10": Source("cifar-10-batches-py",
                      tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
                      _cifar10),
    "nmnist": Source("NMNIST", ("Train/<class>/*.bin", "Test/<class>/*.bin"), _nmnist),
}


def source(name: str) -> Source:
    """The files and reader of dataset ``name`` (one read from the data root)."""
    found = SOURCES.get(name)
    if found is None:
        raise ConfigError(f"dataset '{name}' has no files to read; datasets read from the "
                          f"data root: {', '.join(SOURCES)}")
    return found


def download_requested() -> bool:
    """Whether ``STDP_BENCH_DOWNLOAD=1`` allows fetching missing files."""
    return os.environ.get(DOWNLOAD_ENV, "0") == "1"


def check_present(name: str, root: Path) -> None:
    """Raise a one-line ConfigError naming the dataset, the folder and the expected files
    when any is missing (and downloads are not allowed)."""
    src = source(name)
    missing = src.missing(root)
    if missing and not download_requested():
        raise ConfigError(
            f"dataset '{name}': missing in {root / src.folder}: {', '.join(missing)} "
            f"(expected there: {', '.join(src.files)}); put the files there, point "
            f"--data-dir or STDP_BENCH_DATA at another root, or set {DOWNLOAD_ENV}=1 to "
            "download")


def read(name: str, root: Path) -> tuple[Images | Recordings, Images | Recordings]:
    """Train and test splits of dataset ``name`` under ``root``."""
    check_present(name, root)
    download = download_requested()
    try:
        return source(name).read(str(root), download)
    except (RuntimeError, OSError, ValueError) as exc:
        # Files present but unreadable (truncated, wrong format) or a failed download.
        raise ConfigError(f"dataset '{name}': cannot read {root / source(name).folder} "
                          f"({exc.__class__.__name__}: {exc})") from None
