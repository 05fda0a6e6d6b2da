"""Levels of the ``dataset`` axis (readers in :mod:`stdp_bench.data_sources`).

Each level declares its input shape (channels, height, width) and class count;
``cifar10`` is 3 x 32 x 32 with ``color = "rgb"`` and 1 x 32 x 32 with ``"gray"``, and
``preprocess = "dog"`` doubles the channels (on and off).

>>> [d.name for d in LEVELS]  # doctest: +NORMALIZE_WHITESPACE
['digits', 'mnist', 'fashion_mnist', 'kmnist', 'emnist_digits', 'emnist_letters',
 'emnist_balanced', 'cifar10', 'nmnist']
>>> [(d.shape, d.n_classes) for d in LEVELS if d.events]
[((2, 34, 34), 10)]
"""

from __future__ import annotations

from stdp_bench.levels.spec import Level

_MNIST_LIKE = (1, 28, 28)

LEVELS = (
    Level(axis="dataset", name="digits", module=__name__, shape=(1, 8, 8), n_classes=10,
          doc="scikit-learn's 8x8 digits (1,797 images, bundled; tests and smoke runs)"),
    Level(axis="dataset", name="mnist", module=__name__, shape=_MNIST_LIKE, n_classes=10,
          doc="MNIST handwritten digits (60,000 train / 10,000 test)"),
    Level(axis="dataset", name="fashion_mnist", module=__name__, shape=_MNIST_LIKE,
          n_classes=10, doc="Fashion-MNIST clothing (60,000 / 10,000)"),
    Level(axis="dataset", name="kmnist", module=__name__, shape=_MNIST_LIKE, n_classes=10,
          doc="Kuzushiji-MNIST cursive Japanese (60,000 / 10,000)"),
    Level(axis="dataset", name="emnist_digits", module=__name__, shape=_MNIST_LIKE,
          n_classes=10, doc="EMNIST digits (240,000 / 40,000)"),
    Level(axis="dataset", name="emnist_letters", module=__name__, shape=_MNIST_LIKE,
          n_classes=26, doc="EMNIST letters, case merged (124,800 / 20,800)"),
    Level(axis="dataset", name="emnist_balanced", module=__name__, shape=_MNIST_LIKE,
          n_classes=47, doc="EMNIST balanced digits and letters (112,800 / 18,800)"),
    Level(axis="dataset", name="cifar10", module=__name__, shape=(3, 32, 32), n_classes=10,
          doc="CIFAR-10 colour photos (50,000 / 10,000); color = gray or rgb"),
    Level(axis="dataset", name="nmnist", module=__name__, shape=(2, 34, 34), n_classes=10,
          events=True, duration_ms=300.0,
          doc="N-MNIST event-camera digits, 2 polarities (60,000 / 10,000; tonic)"),
)
