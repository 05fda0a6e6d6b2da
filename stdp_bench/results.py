"""Per-cell JSON records on disk, and the tidy tables built from them.

One finished grid cell is one file ``OUT/cells/<cell_id>.json``; the tables
(``results.parquet`` / ``results.csv``) are always derived from those files, so they
can be deleted and rebuilt at any time. Only pandas and numpy are needed at import
(scipy is imported where the confidence interval is computed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stdp_bench.atomic_files import replace_atomically
from stdp_bench.levels import registry
from stdp_bench.model_file import join_arrays, save_model
from stdp_bench.records import (CellRecord, CurvePoint, Provenance, ReadoutScore,
                                Status)

CELLS_DIR = "cells"
TABLE_STEM = "results"  # results.parquet and results.csv
PARQUET_NAME = f"{TABLE_STEM}.parquet"
# A tuned grid's folder also holds its Optuna studies and the table of their trials.
STUDY_DB = "study.db"
TRIALS_STEM = "trials"  # trials.parquet and trials.csv
STAGES = ("default", "tuned")  # the final runs of a tuned grid, per cell

CORE_COLUMNS = ("cell_id", "grid", "status", "error", "readout", "accuracy")
PROVENANCE_COLUMNS = ("config_hash", "commit", "started", "ended", "job_id", "replicas", "device")
# Per-cell activity means reported next to the metric by summarize().
ACTIVITY_COLUMNS = ("exc_spikes_per_sample", "silent_fraction")


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write ``obj`` as JSON to ``path`` so readers see the old file or the whole new one."""
    text = json.dumps(obj, indent=2) + "\n"

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()

    replace_atomically(path, write)


def _checked_key(record: CellRecord) -> str:
    cell_id = record.cell_id
    if not isinstance(cell_id, str) or not cell_id or Path(cell_id).name != cell_id \
            or cell_id.startswith("."):
        raise ValueError(f"record has no usable cell_id (got {cell_id!r})")
    return record.key


_RECORD_FIELDS = ("schema", "cell_id", "grid", "status", "error", "factors", "settings",
                  "image_shape", "input_shape", "n_classes", "metrics", "readouts",
                  "provenance", "artifacts", "stage", "curve")
_PROVENANCE_FIELDS = ("seed", "config_hash", "versions", "commit", "started", "ended",
                      "job_id", "replicas", "device", "engine")


def record_to_json(record: CellRecord) -> dict[str, Any]:
    """The record as the JSON object stored in ``cells/KEY.json`` (arrays left out).

    >>> rec = CellRecord(cell_id="0123abcd4567", grid="g", settings={"seed": 1},
    ...                  provenance=Provenance(seed=1, engine="kernel"))
    >>> record_from_json(record_to_json(rec)) == rec
    True
    """
    p = record.provenance
    prov = {name: getattr(p, name) for name in _PROVENANCE_FIELDS} | p.extra
    out: dict[str, Any] = {
        "schema": record.schema, "cell_id": record.cell_id, "grid": record.grid,
        "status": record.status.value, "error": record.error,
        "factors": list(record.factors), "settings": record.settings,
        "image_shape": record.image_shape, "input_shape": record.input_shape,
        "n_classes": record.n_classes, "metrics": record.metrics,
        "readouts": {name: {"accuracy": s.accuracy, "confusion": s.confusion}
                     for name, s in record.readouts.items()},
        "provenance": prov, "artifacts": record.artifacts}
    if record.stage is not None:
        out["stage"] = record.stage
    if record.curve is not None:
        out["curve"] = [{"train_samples": c.train_samples, "accuracy": c.accuracy}
                        for c in record.curve]
    return out | record.extra


def record_from_json(data: dict[str, Any]) -> CellRecord:
    """A :class:`CellRecord` from a stored JSON object (schema 1 or 2); fields this
    version does not know are kept in ``extra`` and written back unchanged."""
    prov = dict(data.get("provenance") or {})
    readouts = {}
    for name, score in (data.get("readouts") or {}).items():
        score = score if isinstance(score, dict) else {}
        acc = score.get("accuracy")
        readouts[name] = ReadoutScore(accuracy=float("nan") if acc is None else acc,
                                      confusion=score.get("confusion") or [])
    curve = data.get("curve")
    return CellRecord(
        schema=int(data.get("schema", 1)), cell_id=data.get("cell_id"),
        grid=data.get("grid"), status=Status(data.get("status", Status.OK.value)),
        error=data.get("error"), factors=list(data.get("factors") or []),
        settings=dict(data.get("settings") or {}), image_shape=data.get("image_shape"),
        input_shape=data.get("input_shape"), n_classes=data.get("n_classes"),
        metrics=dict(data.get("metrics") or {}), readouts=readouts,
        provenance=Provenance(
            seed=prov.pop("seed", (data.get("settings") or {}).get("seed", 0)),
            **{k: prov.pop(k) for k in _PROVENANCE_FIELDS[1:] if k in prov}, extra=prov),
        artifacts=dict(data.get("artifacts") or {}), stage=data.get("stage"),
        curve=None if curve is None else [CurvePoint(int(c["train_samples"]),
                                                     dict(c["accuracy"])) for c in curve],
        extra={k: v for k, v in data.items() if k not in _RECORD_FIELDS})


def write_record(out_dir: Path, record: CellRecord) -> Path:
    """Write one cell record to ``out_dir/cells/<key>.json`` atomically (the key is the
    cell id, prefixed by the stage of a tuned grid's record); return the path."""
    path = Path(out_dir) / CELLS_DIR / f"{_checked_key(record)}.json"
    write_json_atomic(path, record_to_json(record))
    return path


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)


MODEL_NAME = "model.npz"


def model_header(record: CellRecord) -> dict[str, Any]:
    """What a model file says about its cell (:mod:`stdp_bench.model_file`)."""
    p = record.provenance
    return {"cell_id": record.cell_id, "stage": record.stage, "grid": record.grid,
            "settings": record.settings, "image_shape": record.image_shape,
            "input_shape": record.input_shape, "n_classes": record.n_classes,
            "engine": p.engine, "device": p.device,
            "input_gain": record.model.gain if record.model else None,
            "readouts": sorted(record.model.fitted) if record.model else [],
            "versions": p.versions, "commit": p.commit}


def write_cell(out_dir: Path, record: CellRecord) -> Path:
    """Write a record's arrays (``record.arrays``) and its model file (``record.model``)
    under ``artifacts/<key>/``, then the record itself; the record lists them in
    ``artifacts`` by relative path.

    Arrays first, so a record on disk always points at complete files.
    """
    key = _checked_key(record)
    for name, array in record.arrays.items():
        rel = Path("artifacts") / key / f"{name}.npy"
        replace_atomically(Path(out_dir) / rel, lambda tmp, a=array: _save_npy(tmp, a))
        record.artifacts[name] = str(rel)
    if record.model is not None:
        rel = Path("artifacts") / key / MODEL_NAME
        save_model(Path(out_dir) / rel, model_header(record),
                   join_arrays(record.model.state, record.model.fitted))
        record.artifacts["model"] = str(rel)
    return write_record(out_dir, record)


def _record_paths(out_dir: Path) -> list[Path]:
    return sorted((Path(out_dir) / CELLS_DIR).glob("*.json"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read cell record {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"cell record {path} is not a JSON object")
    return data


def load_records(out_dir: Path) -> list[CellRecord]:
    """All records under ``out_dir/cells``, sorted by file name; [] if there are none."""
    records = []
    for path in _record_paths(out_dir):
        data = _read_json(path)
        try:
            records.append(record_from_json(data))
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"cannot read cell record {path}: {exc}") from exc
    return records


def done_record_keys(out_dir: Path) -> set[str]:
    """Record keys (:func:`record_key`) of cells with a finished record (a
    :attr:`Status.finished` status: results, kept).

    Cells whose record says ``error`` are not done: errors are mostly transient (a
    killed worker, a full disk, memory), so a rerun tries them again and replaces the
    record. An unreadable record counts as not done either.
    """
    done = set()
    for path in _record_paths(out_dir):
        try:
            if Status(_read_json(path).get("status")).finished:
                done.add(path.stem)
        except ValueError:
            continue
    return done


def _first_seen_keys(dicts: Iterable[dict]) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


def _unify_mixed_columns(df: pd.DataFrame) -> pd.DataFrame:
    # A setting whose levels mix types (e.g. 0.5 and "auto") cannot be stored in one
    # parquet column; strings keep every level distinguishable.
    for col in df.columns:
        if df[col].dtype == object:
            kinds = {type(v) for v in df[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
            if len(kinds) > 1:
                df[col] = df[col].map(lambda v: v if v is None else str(v))
    return df


def listed_readouts(family: str) -> list[str]:
    """Readouts every cell of ``family`` gets a table row for, scored or not.

    >>> listed_readouts("stdp"), listed_readouts("ann")
    (['all_activity', 'proportion_weighting', 'ngram', 'linear'], ['output'])
    """
    return [lv.name for lv in registry.levels("readout")
            if lv.listed and family in lv.families]


def tidy(records: list[CellRecord]) -> pd.DataFrame:
    """One row per cell x readout, with settings, metrics and provenance as columns.

    Every cell gets a row for each readout listed for its family
    (:func:`listed_readouts`; accuracy NaN where that readout is missing, e.g. for error
    cells) so it stays visible in every per-readout view; any other readouts a record
    has follow, sorted by name. Rows are ordered by cell_id (then stage), then readout;
    records with a ``stage`` add a ``stage`` column. Confusion matrices are left out.
    """
    records = sorted(records, key=lambda r: (str(r.cell_id), str(r.stage)))
    ids = [r.key for r in records]
    if len(set(ids)) != len(ids):
        dup = sorted({str(i) for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate cell_id in records: {dup}")
    # Records of a tuned grid's final runs say which stage (default / tuned) they are.
    staged = any(r.stage is not None for r in records)

    settings_cols = _first_seen_keys(r.settings for r in records)
    metric_cols = _first_seen_keys(r.metrics for r in records)
    version_cols = [f"version_{k}" for k in
                    _first_seen_keys(r.provenance.versions for r in records)]
    data_cols = ["input_shape", "n_classes"]
    columns = list(dict.fromkeys([*CORE_COLUMNS, *(["stage"] if staged else []),
                                  *settings_cols, *data_cols, *metric_cols,
                                  *PROVENANCE_COLUMNS, *version_cols]))

    rows = []
    for rec in records:
        prov = rec.provenance
        base: dict[str, object] = {"cell_id": rec.cell_id, "grid": rec.grid,
                                   "status": rec.status.value, "error": rec.error}
        if staged:
            base["stage"] = rec.stage
        # Earlier sources win on a name clash: the seed column comes from settings,
        # not from provenance, and no setting can shadow a core column.
        settings = _with_late_defaults(rec.settings)
        for source in (settings, _input_columns(rec, settings), rec.metrics,
                       {k: getattr(prov, k) for k in PROVENANCE_COLUMNS},
                       {f"version_{k}": v for k, v in prov.versions.items()}):
            for key, value in source.items():
                base.setdefault(key, value)
        expected = listed_readouts(rec.settings.get("family", "stdp"))
        names = expected + sorted(set(rec.readouts) - set(expected))
        for name in names:
            acc = rec.accuracy(name)
            rows.append({**base, "readout": name,
                         "accuracy": float("nan") if acc is None else float(acc)})

    df = pd.DataFrame(rows, columns=columns)
    df["accuracy"] = df["accuracy"].astype(float)
    return _unify_mixed_columns(df)


def _with_late_defaults(settings: dict) -> dict:
    """A record's settings plus the defaults of settings added after it was written
    (config.LATE_FIELDS): the code that wrote it ran those defaults."""
    from stdp_bench.config import LATE_FIELDS, SETTINGS

    if not settings:
        return settings
    missing = {k: SETTINGS[k].default for k in LATE_FIELDS if k not in settings
               and k in SETTINGS}
    return {**settings, **missing}


def _input_columns(rec: CellRecord, settings: dict) -> dict:
    """``input_shape`` ("CxHxW") and ``n_classes`` of a record; derived from its dataset
    settings for records written before they were recorded."""
    from stdp_bench.data_sources import input_shape

    shape, n_classes = rec.input_shape, rec.n_classes
    name = settings.get("dataset")
    if shape is None and name in registry.names("dataset"):
        shape = input_shape(name, settings["color"], settings["preprocess"])
        n_classes = registry.get("dataset", name).n_classes
    return {"input_shape": "x".join(map(str, shape)) if shape else None,
            "n_classes": n_classes}


def write_table(df: pd.DataFrame, out_dir: Path, stem: str) -> None:
    """Write ``df`` as ``STEM.parquet`` and ``STEM.csv`` in ``out_dir``, each atomically."""
    out_dir = Path(out_dir)
    replace_atomically(out_dir / f"{stem}.parquet", lambda tmp: df.to_parquet(tmp, index=False))
    replace_atomically(out_dir / f"{stem}.csv", lambda tmp: df.to_csv(tmp, index=False))


def rebuild_tables(out_dir: Path) -> pd.DataFrame:
    """Rebuild ``results.parquet`` and ``results.csv`` from the cell records; return the table."""
    df = tidy(load_records(out_dir))
    write_table(df, out_dir, TABLE_STEM)
    return df


def _table_is_stale(out_dir: Path, table: Path) -> bool:
    # The cells folder's mtime moves whenever a record is added, replaced or removed.
    cells = out_dir / CELLS_DIR
    sources = [cells, *_record_paths(out_dir)] if cells.exists() else []
    newest = max((p.stat().st_mtime_ns for p in sources), default=0)
    return newest > table.stat().st_mtime_ns


def read_table(out_dir: Path) -> pd.DataFrame:
    """The results table: ``results.parquet`` if it is newer than every record, else rebuilt."""
    out_dir = Path(out_dir)
    table = out_dir / PARQUET_NAME
    if table.exists() and not _table_is_stale(out_dir, table):
        return pd.read_parquet(table)
    return rebuild_tables(out_dir)


def _mean_ci95(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, sample std, and the t-interval of the mean, for finite ``values``."""
    n = len(values)
    if n == 0:
        nan = float("nan")
        return nan, nan, nan, nan
    mean = float(values.mean())
    if n == 1:
        return mean, float("nan"), mean, mean
    from scipy import stats

    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def summarize(df: pd.DataFrame, by: list[str], metric: str = "accuracy") -> pd.DataFrame:
    """Mean, std and 95% t-interval of ``metric`` per group of ``by``, best mean first.

    ``n`` counts the rows with a finite metric (error cells are in the table with NaN
    and so count for nothing). With n == 1 the interval collapses to the mean and std is
    NaN. Means of exc_spikes_per_sample and silent_fraction are added when present.
    """
    by = list(by)
    if not by:
        raise ValueError("summarize needs at least one column in `by`")
    for col in [*by, metric]:
        if col not in df.columns:
            raise ValueError(f"unknown column {col!r}; available columns: {list(df.columns)}")
    extras = [c for c in ACTIVITY_COLUMNS if c in df.columns and c != metric and c not in by]

    rows = []
    # sort=False keeps groups in first-seen order, which settles ties deterministically
    # and copes with levels of mixed types that cannot be ordered.
    for key, group in df.groupby(by, sort=False, dropna=False):
        values = pd.to_numeric(group[metric]).to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        mean, std, low, high = _mean_ci95(values)
        row: dict[str, object] = dict(zip(by, key))
        row.update(n=len(values), mean=mean, std=std, ci95_low=low, ci95_high=high)
        for col in extras:
            row[col] = float(pd.to_numeric(group[col]).mean())
        rows.append(row)

    columns = [*by, "n", "mean", "std", "ci95_low", "ci95_high", *extras]
    out = pd.DataFrame(rows, columns=columns)
    out = out.sort_values("mean", ascending=False, na_position="last", kind="stable")
    return out.reset_index(drop=True)


def compare_stages(df: pd.DataFrame, by: list[str], metric: str = "accuracy") -> pd.DataFrame:
    """A tuned grid's default and tuned stages side by side, per group of ``by``.

    Columns: ``by``, then ``default`` and ``tuned`` (mean over seeds with its 95%
    interval as ``[low, high]``), their difference of means, and ``n`` per stage; best
    tuned mean first. With no ``by`` (a grid whose only factor is the seed) the rows are
    the readouts.
    """
    by = [b for b in by if b != "stage"] or ["readout"]
    summary = summarize(df, [*by, "stage"], metric)
    parts = {stage: summary[summary["stage"] == stage].drop(columns="stage").set_index(by)
             for stage in STAGES}
    out = pd.DataFrame(index=parts["tuned"].index.union(parts["default"].index, sort=False))
    for stage, part in parts.items():
        part = part.reindex(out.index)
        out[stage] = part["mean"]
        out[f"{stage}_ci95"] = [f"[{lo:.4f}, {hi:.4f}]" if np.isfinite(lo) else ""
                                for lo, hi in zip(part["ci95_low"], part["ci95_high"])]
        out[f"n_{stage}"] = part["n"]
    out["tuned_minus_default"] = out["tuned"] - out["default"]
    out = out.reset_index()
    return out.sort_values("tuned", ascending=False, na_position="last",
                           kind="stable").reset_index(drop=True)
