"""Re-score saved cells from their model files (``stdp-bench predict``).

On the split a cell was scored on, a reloaded model sees the same images at the same
positions, so it gets the same spikes and must give the accuracy its record holds, for
every readout; the table says whether it does. With ``n_label`` the readouts are fitted
again first, on that many labelling samples chosen as the cell's protocol chooses its own
(``label_source``: the last ``n_label`` of its training order, or held-out samples), so
a trained network can be labelled as another protocol labels it without training again.
With ``threshold_calibration`` its thresholds are first set from its weights
(:mod:`stdp_bench.threshold_calibration`) and the readouts fitted again, on the cell's own
labelling samples unless ``n_label`` says otherwise: what calibration would have given a
network trained without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stdp_bench.config import ConfigError
from stdp_bench.data import Dataset, Subsets, cell_dataset, cell_subsets
from stdp_bench.model import Model, load_model
from stdp_bench.results import load_records

SPLITS = ("test", "train")


def _samples(model: Model, data_dir: str | Path | None, n_label: int | None
             ) -> tuple[Dataset, Subsets]:
    """The cell's dataset and its subsets, with ``n_label`` labelling samples (else as
    many as it had), chosen as its protocol chooses them."""
    cfg = model.cfg if n_label is None else model.cfg.with_settings(n_label=n_label)
    ds = cell_dataset(cfg, data_dir)
    return ds, cell_subsets(ds, cfg)


def _scored(ds: Dataset, sub: Subsets, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The samples to score, in the order the cell saw them: ``test``, the evaluation
    samples its record was scored on; ``train``, its labelling samples."""
    if split == "train":
        return ds.x_train[sub.label], ds.y_train[sub.label]
    x, y = sub.eval_split(ds)
    return x[sub.evaluate], y[sub.evaluate]


def rescore(results_dir: str | Path, *, cell: str | None = None,
            data_dir: str | Path | None = None, split: str = "test",
            readout: str | None = None, n_label: int | None = None,
            threshold_calibration: str | None = None) -> pd.DataFrame:
    """Accuracy of every saved cell (or ``cell``, a record key or its prefix) per readout
    (or ``readout``), beside the record's own (``recorded``; on ``test`` only); with
    ``n_label``, of its readouts fitted again on that many labelling samples
    (``equal`` then compares only where that is the cell's own number); with
    ``threshold_calibration``, of its network with thresholds set so, labelled again
    (``equal`` is then None, even for a cell that ran calibrated already)."""
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r} is not allowed; allowed: {', '.join(SPLITS)}")
    results_dir = Path(results_dir)
    records = [r for r in load_records(results_dir)
               if "model" in r.artifacts and (cell is None or r.key.startswith(cell))]
    if not records:
        what = f"cell {cell!r}" if cell else "any cell"
        raise ConfigError(f"{results_dir}: no model file for {what} (artifacts/*/model.npz;"
                          " written for cells run since model files exist)")
    rows = []
    for rec in records:
        model = load_model(results_dir / rec.artifacts["model"])
        ds, sub = _samples(model, data_dir, n_label)
        if threshold_calibration is not None:
            model = model.calibrated(threshold_calibration,
                                     f"--threshold-calibration, cell {rec.key}")
        if n_label is not None or threshold_calibration is not None:
            model = model.refit(ds.x_train[sub.label], ds.y_train[sub.label],
                                None if readout is None else [readout])
        x, y = _scored(ds, sub, split)
        names = [readout] if readout is not None else model.readouts
        preds = model.predict(x) if readout is None else {readout: model.predict(x, readout)}
        for name in names:
            acc = float((preds[name] == y).mean())
            recorded = rec.accuracy(name) if split == "test" else None
            comparable = (split == "test" and n_label in (None, model.cfg.n_label)
                          and threshold_calibration is None)
            calibrated = ({} if threshold_calibration is None
                          else {"thresholds": threshold_calibration})
            rows.append({"cell": rec.key, "readout": name, **calibrated,
                         "labelled": len(sub.label),
                         "samples": len(y), "accuracy": acc, "recorded": recorded,
                         "equal": acc == recorded if comparable else None})
    return pd.DataFrame(rows)
