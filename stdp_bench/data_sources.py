"""Checking and reading each dataset's files under the data root.

Every dataset level's module declares its :class:`~stdp_bench.levels.datasets.source.Source`
(``SOURCES``): the folder and files torchvision or tonic use, and a reader. A run checks
the files first (:func:`check_present`) and stops with one line naming the dataset, the
folder and the files expected there; it downloads only when asked
(``STDP_BENCH_DOWNLOAD=1``).

>>> source("fashion_mnist").folder, source("fashion_mnist").files[0]
('FashionMNIST/raw', 'train-images-idx3-ubyte')
>>> source("nmnist").files
('Train/<class>/*.bin', 'Test/<class>/*.bin')
>>> source("digits") is None  # bundled with scikit-learn
True
"""

from __future__ import annotations

import os
from pathlib import Path

from stdp_bench.levels import registry
from stdp_bench.levels.datasets.source import Images, Recordings, Source
from stdp_bench.levels.spec import ConfigError

DOWNLOAD_ENV = "STDP_BENCH_DOWNLOAD"


def source(name: str) -> Source | None:
    """The files and reader of dataset ``name``; None for one that needs no files."""
    module = registry.module(registry.get("dataset", name))
    return getattr(module, "SOURCES", {}).get(name)


def input_shape(name: str, color: str = "gray", preprocess: str = "none"
                ) -> tuple[int, int, int]:
    """``(channels, height, width)`` that dataset ``name`` feeds the input layer: grey
    turns colour into one channel, ``dog`` and ``dog_k2018`` double the channels,
    ``dog_m2019`` makes six of each.

    >>> input_shape("cifar10"), input_shape("cifar10", "rgb", "dog")
    ((1, 32, 32), (6, 32, 32))
    >>> input_shape("mnist", preprocess="dog_m2019")
    (6, 28, 28)
    """
    c, h, w = registry.get("dataset", name).shape
    if color == "gray":
        c = 1 if c == 3 else c
    per_channel = {"dog": 2, "dog_k2018": 2, "dog_m2019": 6}.get(preprocess, 1)
    return (per_channel * c, h, w)


def download_requested() -> bool:
    """Whether ``STDP_BENCH_DOWNLOAD=1`` allows fetching missing files."""
    return os.environ.get(DOWNLOAD_ENV, "0") == "1"


def check_present(name: str, root: Path) -> None:
    """Raise a one-line ConfigError naming the dataset, the folder and the expected files
    when any is missing (and downloads are not allowed)."""
    src = source(name)
    missing = src.missing(root) if src is not None else []
    if missing and not download_requested():
        what = ("no files" if len(missing) == len(src.files) else
                f"missing {', '.join(missing)}")
        raise ConfigError(
            f"dataset '{name}': {what} in {root / src.folder}; expected there: "
            f"{', '.join(src.files)}. Put the files there, point --data-dir or "
            f"STDP_BENCH_DATA at another root, or set {DOWNLOAD_ENV}=1 to download")


def sizes(name: str, root: Path) -> tuple[int, int] | None:
    """``(training, test)`` sample counts of dataset ``name`` from its files' headers or
    file counts (its source's ``sizes``), after the same missing-file check as
    :func:`read`; None when the source declares no way to count, or when files are
    missing and downloads are on (only the reader can fetch them)."""
    src = source(name)
    if src is None or src.sizes is None:
        return None
    if download_requested() and src.missing(root):
        return None
    check_present(name, root)
    try:
        return src.sizes(root)
    except (OSError, ValueError) as exc:
        # The message read() gives for files it cannot read.
        raise ConfigError(f"dataset '{name}': cannot read {root / src.folder} "
                          f"({exc.__class__.__name__}: {exc})") from None


def read(name: str, root: Path) -> tuple[Images | Recordings, Images | Recordings]:
    """Train and test splits of dataset ``name`` under ``root``."""
    src = source(name)
    if src is None or src.read is None:
        raise ConfigError(f"dataset '{name}' declares no files to read")
    check_present(name, root)
    try:
        return src.read(str(root), download_requested())
    except (RuntimeError, OSError, ValueError) as exc:
        # Files present but unreadable (truncated, wrong format) or a failed download.
        raise ConfigError(f"dataset '{name}': cannot read {root / src.folder} "
                          f"({exc.__class__.__name__}: {exc})") from None


def dataset_lines(root: Path) -> list[str]:
    """``stdp-bench datasets``: each dataset's input shape, classes and whether its files
    are under ``root``."""
    lines = [f"data root: {root.resolve()}"
             f"{' (downloads on: STDP_BENCH_DOWNLOAD=1)' if download_requested() else ''}",
             f"{'dataset':<16}{'input':<10}{'classes':>7}  files"]
    for level in registry.levels("dataset"):
        shape = "x".join(map(str, level.shape))
        src = source(level.name)
        if src is None:
            state = "bundled (scikit-learn)"
        else:
            missing = src.missing(root)
            state = (f"present in {src.folder}/" if not missing else
                     f"missing in {src.folder}/: {', '.join(missing)}")
        lines.append(f"{level.name:<16}{shape:<10}{level.n_classes:>7}  {state}")
    lines.append("cifar10 is 1x32x32 with color = gray (the default), 3x32x32 with rgb; "
                 "preprocess = dog or dog_k2018 doubles the channels, dog_m2019 makes "
                 "six of each.")
    return lines
