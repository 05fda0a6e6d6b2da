"""Datasets as float arrays in [0, 1] (or packed recordings), and deterministic disjoint
subsets per seed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from stdp_bench import data_sources
from stdp_bench.config import CellConfig, ConfigError
from stdp_bench.levels import registry
from stdp_bench.levels.datasets.source import Images, Recordings
from stdp_bench.levels.encoders.events import frames, pack_events
from stdp_bench.preprocess import dog_k2018, dog_m2019, dog_on_off

@dataclass(frozen=True)
class Dataset:
    """Train and test splits, flattened: ``x`` is (N, n_input) float32 in [0, 1], each row
    a sample's ``channels`` maps of ``image_shape``, channel after channel.

    With ``events`` the rows are recordings packed for the ``events`` encoder
    (:func:`stdp_bench.levels.encoders.events.pack_events`), not images; ``n_input``
    is still the input layer's size.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int]
    n_classes: int = 10
    channels: int = 1
    events: bool = False

    @property
    def n_input(self) -> int:
        """Number of input neurons (channels x height x width)."""
        return self.channels * self.image_shape[0] * self.image_shape[1]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)``."""
        return (self.channels, *self.image_shape)


def data_root(data_dir: str | Path | None = None) -> Path:
    """``--data-dir``, else ``$STDP_BENCH_DATA``, else ``./data``."""
    if data_dir:
        return Path(data_dir)
    return Path(os.environ.get("STDP_BENCH_DATA", "data"))


@lru_cache(maxsize=1)
def _digits() -> tuple[Images, Images]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    # A fixed split, independent of any seed, so every cell tests on the same 497 images.
    order = np.random.default_rng(12345).permutation(len(y))
    test, train = order[:497], order[497:]
    return Images(x[train], y[train]), Images(x[test], y[test])


# Four entries, as the MNIST loader had: a process running jobs of a grid across up to
# four datasets (or variants) reads each once; beyond that some are read twice.
_CACHED = 4


@lru_cache(maxsize=_CACHED)
def _read(name: str, root: str, download: bool) -> tuple[Images | Recordings, ...]:
    # download is part of the key: a failed offline read must not hide a later download.
    if name == "digits":
        return _digits()
    return data_sources.read(name, Path(root))


def _gray(x: np.ndarray) -> np.ndarray:
    # ITU-R 601 luma: the weights PIL's convert("L") uses.
    return np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), x, ([0], [1]))[:, None]


def _split(part: Images | Recordings, color: str, preprocess: str, events: bool,
           n_input: int) -> np.ndarray:
    if isinstance(part, Recordings):
        if events:
            return pack_events(part.times_us, part.inputs)
        return frames(part.times_us, part.inputs, n_input)
    x = part.x
    if color == "gray" and x.shape[1] == 3:
        x = _gray(x)
    if preprocess == "dog":
        x = dog_on_off(x)
    elif preprocess == "dog_k2018":
        x = dog_k2018(x)
    elif preprocess == "dog_m2019":
        x = dog_m2019(x)
    return x.reshape(len(x), -1)


@lru_cache(maxsize=_CACHED)
def _prepared(name: str, root: str, download: bool, color: str, preprocess: str,
              events: bool) -> Dataset:
    level = registry.get("dataset", name)
    train, test = _read(name, root, download)
    c, h, w = data_sources.input_shape(name, color, preprocess)
    xtr, xte = (_split(p, color, preprocess, events, c * h * w) for p in (train, test))
    return Dataset(name, xtr, train.y, xte, test.y, (h, w), level.n_classes, c,
                   events and level.events)


def load_dataset(name: str, data_dir: str | Path | None = None, *, color: str = "gray",
                 preprocess: str = "none", events: bool = False) -> Dataset:
    """Load a dataset by name from the data root (:mod:`stdp_bench.data_sources`): images
    (``cifar10`` in ``color`` gray or rgb) after ``preprocess``; an event dataset as
    recordings packed for the ``events`` encoder, else as frames of event counts.
    Downloads only when ``STDP_BENCH_DOWNLOAD=1``.

    >>> ds = load_dataset("digits", preprocess="dog")
    >>> ds.input_shape, ds.n_input, ds.x_train.shape[1], ds.n_classes
    ((2, 8, 8), 128, 128, 10)
    """
    if name not in registry.names("dataset"):
        raise ConfigError(f"unknown dataset '{name}'; allowed: "
                          f"{', '.join(registry.names('dataset'))}")
    return _prepared(name, str(data_root(data_dir)), data_sources.download_requested(),
                     color, preprocess, events)


def cell_dataset(cfg: CellConfig, data_dir: str | Path | None = None) -> Dataset:
    """The dataset as cell ``cfg`` feeds it: its colour, preprocessing and, for the
    ``events`` encoder, packed recordings."""
    return load_dataset(cfg.dataset, data_dir, color=cfg.color, preprocess=cfg.preprocess,
                        events=registry.get("encoder", cfg.encoder).events)


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
    need = check_subset_sizes(ds.name, len(ds.y_train), n_train, n_label, n_test, split,
                              label_source)
    rng = np.random.default_rng([seed, 7919])
    order = rng.permutation(len(ds.y_train))
    from_train = label_source == "train"
    n_held = 0 if from_train else n_label
    train = order[:n_train]
    label = train[n_train - n_label:] if from_train else order[n_train:n_train + n_label]
    if split == "validation":
        return Subsets(train, label, order[n_train + n_held:need], True)
    test_order = np.random.default_rng([seed, 104729]).permutation(len(ds.y_test))
    return Subsets(train, label, np.sort(test_order[:min(n_test, len(test_order))]), False)


def check_subset_sizes(name: str, available: int, n_train: int, n_label: int, n_test: int,
                       split: str = "test", label_source: str = "heldout") -> int:
    """Refuse subsets that dataset ``name``'s ``available`` training samples cannot hold;
    return how many of them the subsets take.

    >>> check_subset_sizes("digits", 1300, 1000, 200, 100)
    1200
    >>> check_subset_sizes("digits", 1300, 1200, 50, 200, "validation", "train")
    Traceback (most recent call last):
    ...
    stdp_bench.levels.spec.ConfigError: dataset 'digits' has 1300 training samples but ...
    """
    from_train = label_source == "train"
    if from_train and n_label > n_train:
        raise ConfigError(f"label_source = 'train' needs n_label <= n_train; got n_label = "
                          f"{n_label}, n_train = {n_train}")
    n_held = 0 if from_train else n_label
    hint = ' (label_source = "train" would label on training samples instead)'
    need = n_train + n_held + (n_test if split == "validation" else 0)
    if need > available:
        raise ConfigError(
            f"dataset '{name}' has {available} training samples but n_train"
            f"{'' if from_train else ' + n_label'}"
            f"{' + n_test' if split == 'validation' else ''} = {need}"
            f"{'' if from_train else hint}")
    return need


def split_sizes(name: str, data_dir: str | Path | None = None) -> tuple[int, int]:
    """``(training, test)`` sample counts of dataset ``name``: from its files' headers
    where its source says how (:func:`stdp_bench.data_sources.sizes`), else from the
    dataset as read (scikit-learn's digits, a plugin's dataset without ``sizes``, or
    missing files that ``STDP_BENCH_DOWNLOAD=1`` lets the reader fetch).

    >>> split_sizes("digits")
    (1300, 497)
    """
    root = data_root(data_dir)
    counted = data_sources.sizes(name, root)
    if counted is not None:
        return counted
    train, test = _read(name, str(root), data_sources.download_requested())
    return len(train.y), len(test.y)


def cell_subsets(ds: Dataset, cfg: CellConfig) -> Subsets:
    """:func:`make_subsets` with a cell's sizes, seed, split and label source."""
    return make_subsets(ds, cfg.n_train, cfg.n_label, cfg.n_test, cfg.seed, cfg.split,
                        cfg.label_source)
