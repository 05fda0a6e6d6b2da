"""What a finished cell reports: a typed record, from the protocol to the results folder.

A :class:`CellRecord` travels between modules as an object; it becomes JSON only in
:mod:`stdp_bench.results`, the one module that stores records. Nothing here imports
torch, numba or pandas.

>>> rec = CellRecord(cell_id="0123abcd4567", grid="smoke", factors=["rule"],
...                  settings={"seed": 0}, provenance=Provenance(seed=0, engine="kernel"))
>>> rec.status, rec.status.finished, Status("silent").finished, Status.ERROR.finished
(<Status.OK: 'ok'>, True, True, False)
>>> rec.key, rec.accuracy("linear")
('0123abcd4567', None)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

# Version of the record layout on disk; 1 was the untyped dict of rounds 1-2 (the same
# fields, read unchanged).
SCHEMA = 2

# A cell's metrics in the order they were measured (the table's columns follow it).
Metrics = dict[str, float | int | None]


class Status(str, Enum):
    """How a cell ended. ``ok``, ``silent`` and ``diverged`` are results (kept on a
    rerun); ``error`` is a failure a rerun tries again."""

    OK = "ok"
    SILENT = "silent"  # trained and scored, but no excitatory spike on the test set
    DIVERGED = "diverged"  # weights, thresholds or loss stopped being finite
    ERROR = "error"  # the cell could not be run; ``error`` holds the traceback

    @property
    def finished(self) -> bool:
        """Whether a rerun keeps this record instead of running the cell again."""
        return self is not Status.ERROR


@dataclass(frozen=True)
class ReadoutScore:
    """One readout's score on the test (or validation) samples."""

    accuracy: float
    confusion: list[list[int]]  # true x predicted counts; abstentions left out


@dataclass
class Provenance:
    """Where a number comes from: seed, code, machine, engine and wall-clock times."""

    seed: int
    config_hash: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    commit: str | None = None
    started: str | None = None
    ended: str | None = None
    job_id: str = ""
    replicas: int = 1
    device: str = "cpu"
    engine: str = ""
    # Fields a record carried that this version does not know (kept, written back).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CurvePoint:
    """Every readout's accuracy after ``train_samples`` training presentations."""

    train_samples: int
    accuracy: dict[str, float]


@dataclass
class ModelParts:
    """What a model file keeps of a trained cell besides its record: the engine's state,
    what every readout learned, and the input gain the engine was built with."""

    state: dict[str, np.ndarray]
    fitted: dict[str, dict[str, np.ndarray]]
    gain: float = 1.0


@dataclass
class CellRecord:
    """One cell's settings, status, metrics, readout scores and provenance."""

    cell_id: str
    grid: str
    settings: dict[str, Any]
    provenance: Provenance
    factors: list[str] = field(default_factory=list)
    status: Status = Status.OK
    error: str | None = None
    image_shape: list[int] | None = None
    # What the input layer sees: (channels, height, width), and the class count.
    input_shape: list[int] | None = None
    n_classes: int | None = None
    metrics: Metrics = field(default_factory=dict)
    readouts: dict[str, ReadoutScore] = field(default_factory=dict)
    curve: list[CurvePoint] | None = None
    # Relative paths of the files written beside the record (name -> path).
    artifacts: dict[str, str] = field(default_factory=dict)
    # Tuned grids run each cell at its default and its tuned settings.
    stage: str | None = None
    schema: int = SCHEMA
    # Arrays for the results folder to write under ``artifacts/KEY/`` (never in JSON),
    # and the trained model (``artifacts/KEY/model.npz``, :mod:`stdp_bench.model_file`).
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    model: ModelParts | None = field(default=None, repr=False, compare=False)
    # Fields a record carried that this version does not know (kept, written back).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Name of the record: its cell id, prefixed by its stage when it has one."""
        return record_key(self.cell_id, self.stage)

    def accuracy(self, readout: str) -> float | None:
        """The accuracy of ``readout``; None when the cell has no such score."""
        score = self.readouts.get(readout)
        return None if score is None else score.accuracy

    def fail(self, status: Status, error: str) -> None:
        """Mark the record as ended by ``status`` with its reason."""
        self.status = status
        self.error = error


def record_key(cell_id: str, stage: str | None) -> str:
    """Name of a cell's record: ``cell_id``, or ``STAGE-cell_id`` for a cell of a tuned
    grid's final runs (its default and tuned settings may coincide, so the stage keeps
    the two records apart).

    >>> record_key("0123abcd4567", None), record_key("0123abcd4567", "tuned")
    ('0123abcd4567', 'tuned-0123abcd4567')
    """
    return cell_id if stage is None else f"{stage}-{cell_id}"
