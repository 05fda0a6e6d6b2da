"""Re-score saved cells from their model files (``stdp-bench predict``).

On the split a cell was scored on, a reloaded model sees the same images at the same
positions, so it gets the same spikes and must give the accuracy its record holds, for
every readout; the table says whether it does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stdp_bench.config import ConfigError
from stdp_bench.data import cell_dataset, cell_subsets
from stdp_bench.model import Model, load_model
from stdp_bench.results import load_records

SPLITS = ("test", "train")


def _images(model: Model, data_dir: str | Path | None, split: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """The cell's evaluation samples (``test``: the split its record was scored on) or
    its labelling samples (``train``), in the order the cell saw them."""
    ds = cell_dataset(model.cfg, data_dir)
    sub = cell_subsets(ds, model.cfg)
    if split == "train":
        return ds.x_train[sub.label], ds.y_train[sub.label]
    x, y = sub.eval_split(ds)
    return x[sub.evaluate], y[sub.evaluate]


def rescore(results_dir: str | Path, *, cell: str | None = None,
            data_dir: str | Path | None = None, split: str = "test",
            readout: str | None = None) -> pd.DataFrame:
    """Accuracy of every saved cell (or ``cell``, a record key or its prefix) per readout
    (or ``readout``), beside the record's own (``recorded``; on ``test`` only)."""
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
        x, y = _images(model, data_dir, split)
        names = [readout] if readout is not None else model.readouts
        preds = model.predict(x) if readout is None else {readout: model.predict(x, readout)}
        for name in names:
            acc = float((preds[name] == y).mean())
            recorded = rec.accuracy(name) if split == "test" else None
            rows.append({"cell": rec.key, "readout": name, "samples": len(y),
                         "accuracy": acc, "recorded": recorded,
                         "equal": None if recorded is None else acc == recorded})
    return pd.DataFrame(rows)
