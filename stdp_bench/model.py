"""A trained cell, reloaded from its model file: respond to images and classify them.

>>> import tempfile
>>> from stdp_bench.grid_file import parse_grid
>>> from stdp_bench.runner import run_grid
>>> from stdp_bench.data import load_dataset
>>> out = Path(tempfile.mkdtemp()) / "doc"
>>> grid = parse_grid({"name": "doc", "settings": {"dataset": "digits", "n_neurons": 10,
...                    "time": 40, "n_train": 50, "n_label": 100, "n_test": 50}})
>>> table = run_grid(grid, out, progress=False)
>>> model = load_model(next(out.glob("artifacts/*/model.npz")))
>>> ds = load_dataset("digits")
>>> classes = model.predict(ds.x_test[:5])
>>> sorted(classes)[:2], classes["linear"].shape
(['all_activity', 'linear'], (5,))
>>> model.respond(ds.x_test[:5]).shape
(5, 10)
>>> sorted(model.refit(ds.x_train[:60], ds.y_train[:60], ["proportion_weighting"]).fitted)
['proportion_weighting']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from stdp_bench.cell_checks import check_cell
from stdp_bench.config import SETTINGS, CellConfig, ConfigError, make_cell
from stdp_bench.engine.interface import Engine
from stdp_bench.engine.responses import Responses
from stdp_bench.execution import ENGINES, Execution
from stdp_bench.levels import registry
from stdp_bench.model_file import ModelFileError, read_model, split_arrays
from stdp_bench.readout import Params, apply_readouts, fit_readouts
from stdp_bench.threshold_calibration import CALIBRATIONS, calibrated_state
from stdp_bench.trainers import trainer_of


@dataclass(frozen=True)
class _Shape:
    """The data shape a model file's header gives (what building an engine needs)."""

    input_shape: tuple[int, int, int]
    n_classes: int

    @property
    def n_input(self) -> int:
        c, h, w = self.input_shape
        return c * h * w


class Model:
    """A trained network and its fitted readouts.

    ``respond`` and ``predict`` take images as the cell's dataset holds them: rows of
    ``channels x height x width`` values in [0, 1] (after the cell's ``color`` and
    ``preprocess``). The k-th image is presented at position k of the test pass, with
    the test pass's random streams, so the images and order of a cell's test samples
    give back exactly the spikes, and the classes, its record scored.
    """

    def __init__(self, header: dict[str, Any], engine: Engine,
                 fitted: dict[str, Params], cfg: CellConfig, *, fitted_here: bool = True
                 ) -> None:
        self.header = header
        self.engine = engine
        self.fitted = fitted
        self.cfg = cfg
        self.n_classes = int(header["n_classes"])
        # False when the network changed after its readouts were fitted (calibrated).
        self.fitted_here = fitted_here

    @property
    def readouts(self) -> list[str]:
        """Names of the readouts this model predicts with."""
        return sorted(self.fitted)

    def responses(self, images: np.ndarray) -> Responses:
        """The frozen network's full responses to ``images`` (counts, events, outputs)."""
        x = np.ascontiguousarray(images, dtype=np.float32)
        return self.engine.respond(x, np.arange(len(x))[None], phase=2)

    def respond(self, images: np.ndarray) -> np.ndarray:
        """Spike counts ``[N, neurons]`` (a baseline's: its activity per sample)."""
        return self.responses(images).counts[0]

    def _require(self, readout: str) -> None:
        if readout not in self.fitted:
            raise ConfigError(f"readout {readout!r} is not in this model; it has: "
                              f"{', '.join(self.readouts)}")

    def _require_fitted(self) -> None:
        if not self.fitted_here:
            raise ConfigError("this model's thresholds were calibrated after its readouts "
                              "were fitted; label it again first (Model.refit)")

    def refit(self, images: np.ndarray, labels: np.ndarray,
              readouts: Sequence[str] | None = None) -> "Model":
        """This network with its readouts (or ``readouts`` only) fitted again on its
        frozen responses to ``images`` (of classes ``labels``), presented as a run
        presents its labelling samples: the k-th image at position k of the labelling
        pass. Given a cell's own labelling samples it gives back the readouts its run
        fitted; given more (Diehl & Cook label on the whole training set), it shows what a
        larger labelling set is worth without training again."""
        names = self.readouts if readouts is None else readouts
        for name in names:
            self._require(name)
        levels = [registry.get("readout", name) for name in names]
        x = np.ascontiguousarray(images, dtype=np.float32)
        fit = self.engine.respond(x, np.arange(len(x))[None], phase=1).replica(0)
        fitted = fit_readouts(levels, fit, np.asarray(labels), self.n_classes, self.cfg)
        return Model(self.header, self.engine, fitted, self.cfg)

    def calibrated(self, calibration: str, where: str = "calibration") -> "Model":
        """This network with its thresholds set from its weights as ``calibration`` (a
        ``threshold_calibration`` value other than "none") sets them. Its responses
        change, so it predicts only once :meth:`refit` has labelled it again; ``where``
        names the caller in error messages."""
        SETTINGS["threshold_calibration"].check(calibration, where)
        if calibration == "none":
            raise ConfigError(f"{where}: 'threshold_calibration' = 'none' is what an "
                              "uncalibrated model has already, and a calibrated cell's model "
                              "file no longer keeps its learned thresholds; allowed: "
                              f"{', '.join(CALIBRATIONS)}")
        cfg = self.cfg.with_settings(threshold_calibration=calibration)
        check_cell(cfg, where)
        engine = _engine(self.header, cfg, self.engine.device,
                         calibrated_state(self.engine.state(), [cfg]))
        return Model(self.header, engine, self.fitted, cfg, fitted_here=False)

    def predict(self, images: np.ndarray, readout: str | None = None
                ) -> dict[str, np.ndarray] | np.ndarray:
        """Classes of ``images`` by every readout (a dict), or by ``readout`` alone."""
        self._require_fitted()
        if readout is not None:
            self._require(readout)
        fitted = self.fitted if readout is None else {readout: self.fitted[readout]}
        preds = apply_readouts(fitted, self.responses(images).replica(0), self.n_classes,
                               self.cfg)
        return preds if readout is None else preds[readout]


def load_model(path: str | Path, device: str = "cpu") -> Model:
    """The model saved at ``path`` (a ``model.npz``), its engine the one that trained it
    (kernel or torch replicas, BindsNET layers, a baseline), built as the cell's trainer
    builds it on ``device`` and loaded with the saved state. A file from another format
    version, or a corrupted one, raises :class:`~stdp_bench.model_file.ModelFileError`
    (one line)."""
    header, arrays = read_model(Path(path))
    try:
        settings = dict(header["settings"])
        cfg = make_cell(settings)
        if cfg.cell_id() != header["cell_id"]:
            raise ModelFileError(f"{path}: its settings give cell {cfg.cell_id()}, not the "
                                 f"{header['cell_id']} it names (edited or corrupted)")
        # Read here so that a header without them fails as incomplete, in one line.
        _Shape(tuple(header["input_shape"]), int(header["n_classes"]))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path}: its header is incomplete ({exc!r})") from None
    state, fitted = split_arrays(arrays)
    return Model(header, _engine(header, cfg, device, state),
                 {name: fitted.get(name, {}) for name in header["readouts"]}, cfg)


def _engine(header: dict[str, Any], cfg: CellConfig, device: str,
            state: dict[str, np.ndarray]) -> Engine:
    """The engine that trained the model ``header`` describes, built as the cell's
    trainer builds it on ``device`` and loaded with ``state``."""
    shape = _Shape(tuple(header["input_shape"]), int(header["n_classes"]))
    # A replica engine's state is its own (the kernel's is not the torch network's).
    engine_name = header.get("engine")
    # BindsNET's conv / local layers are what --engine torch runs for those cells.
    engine_name = "torch" if engine_name == "bindsnet" else engine_name
    execution = Execution.resolve(device, engine_name if engine_name in ENGINES else "auto")
    engine = trainer_of(cfg).build([cfg], shape, [float(header["input_gain"])], execution)
    engine.load_state(state)
    return engine
