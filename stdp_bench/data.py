"""Datasets as float arrays in [0, 1], and deterministic disjoint subsets per seed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from stdp_bench.config import CellConfig, ConfigError

@dataclass(frozen=True)
class Dataset:
    """Train and test splits, flattened: ``x`` is (N, n_input) float32 in [0, 1]."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int]
    n_classes: int = 10

    @property
    def n_input(self) -> int:
        """Number of input pixels."""
        return int(self.x_train.shape[1])


def data_root(data_dir: str | Path | None = None) -> Path:
    """``--data-dir``, else ``$STDP_BENCH_DATA``, else ``./data``."""
    if data_dir:
        return Path(data_dir)
    return Path(os.environ.get("STDP_BENCH_DATA", "data"))


@lru_cache(maxsize=4)
def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    # A fixed split, independent of any seed, so every cell tests on the same 497 images.
    order = np.random.default_rng(12345).permutation(len(y))
    test, train = order[:497], order[497:]
    return Dataset("digits", x[train], y[train], x[test], y[test], (8, 8))


@lru_cache(maxsize=4)
def _mnist(root: str, download: bool) -> Dataset:
    from torchvision.datasets import MNIST

    try:
        train = MNIST(root=root, train=True, download=download)
        test = MNIST(root=root, train=False, download=download)
    except Exception as exc:  # torchvision raises RuntimeError or URLError
        raise ConfigError(
            f"MNIST not found under '{root}' ({exc.__class__.__name__}: {exc}). Put the four "
            "IDX files in DATA/MNIST/raw/ and pass --data-dir DATA (or set STDP_BENCH_DATA), "
            "e.g. STDP_BENCH_DATA=../shared/datasets") from None

    def flat(ds) -> tuple[np.ndarray, np.ndarray]:
        x = ds.data.numpy().reshape(len(ds.data), -1).astype(np.float32) / 255.0
        return x, ds.targets.numpy().astype(np.int64)

    xtr, ytr = flat(train)
    xte, yte = flat(test)
    return Dataset("mnist", xtr, ytr, xte, yte, (28, 28))


def _load_digits(data_dir: str | Path | None) -> Dataset:
    return _digits()


def _load_mnist(data_dir: str | Path | None) -> Dataset:
    download = os.environ.get("STDP_BENCH_DOWNLOAD", "0") == "1"
    return _mnist(str(data_root(data_dir)), download)


# One loader per level of the dataset axis (stdp_bench/levels/datasets.py).
LOADERS = {"digits": _load_digits, "mnist": _load_mnist}


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load a dataset by name. MNIST downloads only when ``STDP_BENCH_DOWNLOAD=1``."""
    loader = LOADERS.get(name)
    if loader is None:
        raise ConfigError(f"unknown dataset '{name}'; allowed: {', '.join(LOADERS)}")
    return loader(data_dir)


@dataclass(frozen=True)
class Subsets:
    """Indices into the dataset for one seed: training, labelling and evaluation."""

    train: np.ndarray  # into x_train, in presentation order
    label: np.ndarray  # into x_train; disjoint from train unless label_source = "train"
    evaluate: np.ndarray  # into x_test (split="test") or x_train (split="validation")
    eval_from_train: bool

    def eval_split(self, ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of the split that ``evaluate`` indexes."""
        if self.eval_from_train:
            return ds.x_train, ds.y_train
        return ds.x_test, ds.y_test


def make_subsets(ds: Dataset, n_train: int, n_label: int, n_test: int, seed: int,
                 split: str = "test", label_source: str = "heldout") -> Subsets:
    """Deterministic subsets for ``seed``; the test split is never used to label.

    ``label_source="heldout"`` labels on samples disjoint from training; ``"train"`` on the
    last ``n_label`` training samples (Diehl & Cook's protocol). With
    ``split="validation"`` the evaluation set is carved from the training split too,
    disjoint from the training and labelling samples.
    """
    rng = np.random.default_rng([seed, 7919])
    order = rng.permutation(len(ds.y_train))
    from_train = label_source == "train"
    if from_train and n_label > n_train:
        raise ConfigError(f"label_source = 'train' needs n_label <= n_train; got n_label = "
                          f"{n_label}, n_train = {n_train}")
    n_held = 0 if from_train else n_label
    hint = ' (label_source = "train" would label on training samples instead)'
    need = n_train + n_held + (n_test if split == "validation" else 0)
    if need > len(order):
        raise ConfigError(
            f"dataset '{ds.name}' has {len(order)} training samples but n_train"
            f"{'' if from_train else ' + n_label'}"
            f"{' + n_test' if split == 'validation' else ''} = {need}"
            f"{'' if from_train else hint}")
    train = order[:n_train]
    label = train[n_train - n_label:] if from_train else order[n_train:n_train + n_label]
    if split == "validation":
        return Subsets(train, label, order[n_train + n_held:need], True)
    test_order = np.random.default_rng([seed, 104729]).permutation(len(ds.y_test))
    return Subsets(train, label, np.sort(test_order[:min(n_test, len(test_order))]), False)


def cell_subsets(ds: Dataset, cfg: CellConfig) -> Subsets:
    """:func:`make_subsets` with a cell's sizes, seed, split and label source."""
    return make_subsets(ds, cfg.n_train, cfg.n_label, cfg.n_test, cfg.seed, cfg.split,
                        cfg.label_source)
