"""scikit-learn's 8x8 digits: bundled, so tests and smoke runs need no files.

>>> LEVEL.shape, SOURCES
((1, 8, 8), {})
"""

from __future__ import annotations

from stdp_bench.levels.spec import Level

LEVEL = Level(axis="dataset", name="digits", module=__name__, shape=(1, 8, 8), n_classes=10,
              doc="scikit-learn's 8x8 digits (1,797 images, bundled; tests and smoke runs)")
# No files under the data root (stdp_bench.data reads it from scikit-learn).
SOURCES: dict = {}
