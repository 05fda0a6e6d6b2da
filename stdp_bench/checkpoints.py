"""Checkpoints inside a job: where a long training run stands, saved atomically so a
killed run (kill -9, SIGTERM, Ctrl-C, a reboot) continues from there.

A checkpoint holds the engine's state (all replicas), the training statistics so far,
the learning-curve points so far and the wall-clock seconds spent, at a training
position. Engines continue exactly from a state (their random streams are keyed by
position), so a resumed job ends bit-identical to an uninterrupted one in everything
but its timings. Files live in ``OUT/checkpoints/``, one per job, named by the job's
cells; the driver removes a job's file once its records are written.

>>> import tempfile, numpy as np
>>> store = Checkpoints(Path(tempfile.mkdtemp()), ("cell_a", "cell_b"), every=100)
>>> store.load() is None
True
>>> store.save({"position": 200, "keys": ["cell_a", "cell_b"]},
...            {"state/W": np.zeros((2, 3), np.float32)})
>>> header, arrays = store.load()
>>> header["position"], arrays["state/W"].shape
(200, (2, 3))
>>> store.remove(); store.load() is None
True
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stdp_bench.model_file import ModelFileError, read_model, save_model

CHECKPOINTS_DIR = "checkpoints"
# Training runs in chunks of this many positions between wall-clock checks when
# checkpoints are timed (each chunk is a call of the engine's train; a few per second).
TIMED_CHUNK = 500


def checkpoint_path(root: Path, keys: tuple[str, ...]) -> Path:
    """The file of the job whose cells have record keys ``keys`` (in job order)."""
    digest = hashlib.sha256("+".join(keys).encode()).hexdigest()[:16]
    return Path(root) / CHECKPOINTS_DIR / f"{digest}.npz"


@dataclass
class Checkpoints:
    """The checkpoint of one job: save every ``every`` training positions, or, when
    ``every`` is 0, at the first chunk boundary after ``seconds`` of wall time."""

    root: Path
    keys: tuple[str, ...]
    every: int = 0
    seconds: float = 300.0
    _last: float = field(default_factory=time.monotonic, init=False)

    @property
    def path(self) -> Path:
        """Where this job's checkpoint lives."""
        return checkpoint_path(self.root, self.keys)

    def boundaries(self, lo: int, hi: int) -> list[int]:
        """Positions in ``(lo, hi]`` at which training pauses to consider a checkpoint.

        >>> Checkpoints(Path("."), ("a",), every=300).boundaries(0, 1000)
        [300, 600, 900, 1000]
        """
        step = self.every or TIMED_CHUNK
        return [*range((lo // step + 1) * step, hi, step), hi]

    def due(self, position: int) -> bool:
        """Whether to save at ``position`` (a boundary)."""
        if self.every:
            return position % self.every == 0
        return time.monotonic() - self._last >= self.seconds

    def save(self, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Write the checkpoint atomically (readers see the old one or the whole new one)."""
        save_model(self.path, {"checkpoint": True, **header}, arrays)
        self._last = time.monotonic()

    def load(self) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """The job's checkpoint, or None when there is none (or it is unreadable, or of
        other cells: it is then ignored, and overwritten by the next save)."""
        if not self.path.exists():
            return None
        try:
            header, arrays = read_model(self.path)
        except ModelFileError:
            return None
        if tuple(header.get("keys", ())) != self.keys:
            return None
        return header, arrays

    def remove(self) -> None:
        """Delete the job's checkpoint (its records are written)."""
        self.path.unlink(missing_ok=True)
