"""Levels of the ``dataset`` axis (loaders in :mod:`stdp_bench.data`).

>>> [d.name for d in LEVELS]
['digits', 'mnist']
"""

from __future__ import annotations

from stdp_bench.levels.spec import Level

LEVELS = (
    Level(axis="dataset", name="digits", module=__name__,
          doc="scikit-learn's 8x8 digits (1,797 images, bundled; tests and smoke runs)"),
    Level(axis="dataset", name="mnist", module=__name__,
          doc="MNIST 28x28 (60,000 train / 10,000 test) from --data-dir"),
)
