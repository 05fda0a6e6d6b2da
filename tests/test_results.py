"""Cell records on disk and the tidy tables built from them."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stdp_bench import results
from stdp_bench.atomic_files import replace_atomically
from stdp_bench.results import listed_readouts

READOUTS = tuple(listed_readouts("stdp"))


def make_record(cell_id: str, *, seed: int = 0, status: str = "ok", rule: str = "stdp",
                acc: float = 0.5) -> dict:
    """A record in the runner's schema; error records carry no readouts."""
    confusion = np.diag([5] * 10).tolist()
    readouts = {} if status == "error" else {
        name: {"accuracy": acc + 0.01 * i, "confusion": confusion} for i, name in enumerate(READOUTS)}
    metrics = {} if status == "error" else {
        "n_test": 50, "exc_spikes_per_sample": 10.0 + seed, "silent_fraction": 0.1,
        "train_seconds": 1.5, "diverged_at_sample": None}
    return {
        "schema": 1, "cell_id": cell_id, "grid": "smoke", "status": status,
        "error": "boom" if status == "error" else None,
        "factors": ["rule", "seed"],
        "settings": {"family": "stdp", "encoder": "poisson", "rule": rule, "seed": seed, "time": 100},
        "image_shape": [8, 8], "metrics": metrics, "readouts": readouts,
        "provenance": {"seed": seed, "config_hash": cell_id, "commit": None,
                       "versions": {"stdp_bench": "0.1.0", "numpy": "2.4.6"},
                       "started": "2026-11-23T10:00:00+00:00", "ended": "2026-11-23T10:01:00+00:00",
                       "job_id": "job1", "replicas": 3, "device": "cpu"},
        "artifacts": {},
    }


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    for rec in (make_record("bbbbbbbbbbbb", seed=1, acc=0.6),
                make_record("aaaaaaaaaaaa", seed=0, acc=0.4),
                make_record("cccccccccccc", seed=2, status="error")):
        results.write_record(tmp_path, results.record_from_json(rec))
    return tmp_path


def test_write_json_atomic_creates_parents_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.json"
    results.write_json_atomic(target, {"k": 1})
    results.write_json_atomic(target, {"k": 2})  # overwrite in place
    assert json.loads(target.read_text()) == {"k": 2}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_write_json_atomic_keeps_old_file_when_serialising_fails(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    results.write_json_atomic(target, {"k": 1})
    with pytest.raises(TypeError):
        results.write_json_atomic(target, {"k": object()})
    assert json.loads(target.read_text()) == {"k": 1}

    def crash_midway(tmp: Path) -> None:
        tmp.write_text('{"k": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_atomically(target, crash_midway)
    assert json.loads(target.read_text()) == {"k": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_write_record_rejects_unsafe_cell_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cell_id"):
        results.write_record(tmp_path, results.record_from_json({"cell_id": "../evil"}))


def test_records_round_trip_and_done_ids(out_dir: Path) -> None:
    names = sorted(p.name for p in (out_dir / "cells").iterdir())
    assert names == ["aaaaaaaaaaaa.json", "bbbbbbbbbbbb.json", "cccccccccccc.json"]
    records = results.load_records(out_dir)
    assert [r.cell_id for r in records] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"]
    assert records[0] == results.record_from_json(make_record("aaaaaaaaaaaa", seed=0, acc=0.4))
    # The error cell (c) is not done: a rerun retries it.
    assert results.done_record_keys(out_dir) == {"aaaaaaaaaaaa", "bbbbbbbbbbbb"}
    assert results.done_record_keys(out_dir / "missing") == set()
    assert results.load_records(out_dir / "missing") == []


def test_load_records_names_the_broken_file(out_dir: Path) -> None:
    (out_dir / "cells" / "dddddddddddd.json").write_text("{not json")
    with pytest.raises(ValueError, match="dddddddddddd.json"):
        results.load_records(out_dir)


def test_tidy_rows_columns_and_error_rows(out_dir: Path) -> None:
    df = results.tidy(results.load_records(out_dir))
    assert len(df) == 3 * len(READOUTS)
    assert list(df["cell_id"]) == [c for c in ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc")
                                   for _ in READOUTS]
    assert list(df["readout"]) == list(READOUTS) * 3
    expected = {"cell_id", "grid", "status", "error", "readout", "accuracy", "family", "encoder",
                "rule", "seed", "time", "n_test", "exc_spikes_per_sample", "silent_fraction",
                "train_seconds", "diverged_at_sample", "config_hash", "commit", "started", "ended",
                "job_id", "replicas", "device", "version_stdp_bench", "version_numpy"}
    assert expected <= set(df.columns)
    assert not any("confusion" in c for c in df.columns)

    err = df[df["cell_id"] == "cccccccccccc"]
    assert (err["status"] == "error").all() and (err["error"] == "boom").all()
    assert err["accuracy"].isna().all()
    assert err["exc_spikes_per_sample"].isna().all()
    ok = df[df["cell_id"] == "aaaaaaaaaaaa"].set_index("readout")
    assert ok.loc["all_activity", "accuracy"] == pytest.approx(0.4)
    assert ok.loc["linear", "accuracy"] == pytest.approx(0.43)
    assert list(df.groupby("cell_id")["seed"].first()) == [0, 1, 2]


def test_tidy_keeps_unknown_readouts_and_fills_missing_ones() -> None:
    rec = make_record("aaaaaaaaaaaa")
    del rec["readouts"]["linear"]
    rec["readouts"]["svm"] = {"accuracy": 0.9, "confusion": []}
    df = results.tidy([results.record_from_json(rec)])
    assert list(df["readout"]) == [*READOUTS, "svm"]
    assert math.isnan(df.set_index("readout").loc["linear", "accuracy"])


def test_tidy_rejects_duplicate_cell_ids() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        results.tidy([results.record_from_json(make_record("aaaaaaaaaaaa"))] * 2)


def test_rebuild_tables_round_trips(out_dir: Path) -> None:
    df = results.rebuild_tables(out_dir)
    pd.testing.assert_frame_equal(pd.read_parquet(out_dir / "results.parquet"), df)
    csv = pd.read_csv(out_dir / "results.csv")
    assert list(csv.columns) == list(df.columns)
    assert list(csv["cell_id"]) == list(df["cell_id"])
    np.testing.assert_allclose(csv["accuracy"], df["accuracy"])
    assert not [p for p in out_dir.iterdir() if p.name.endswith(".tmp")]
    pd.testing.assert_frame_equal(results.read_table(out_dir), df)


def test_rebuild_tables_with_no_records(tmp_path: Path) -> None:
    df = results.rebuild_tables(tmp_path)
    assert df.empty
    assert {"cell_id", "readout", "accuracy", "status"} <= set(df.columns)
    back = pd.read_parquet(tmp_path / "results.parquet")
    assert back.empty and {"cell_id", "readout", "accuracy", "status"} <= set(back.columns)
    assert (tmp_path / "results.csv").exists()


def test_read_table_rebuilds_when_records_are_newer(out_dir: Path) -> None:
    assert len(results.read_table(out_dir)) == 3 * len(READOUTS)
    path = results.write_record(out_dir, results.record_from_json(make_record("dddddddddddd", seed=3)))
    # Pin the new record's mtime after the table's so the check is independent of clock resolution.
    later = (out_dir / "results.parquet").stat().st_mtime_ns + 10**9
    os.utime(path, ns=(later, later))
    assert len(results.read_table(out_dir)) == 4 * len(READOUTS)


def test_summarize_mean_and_ci(out_dir: Path) -> None:
    for seed, acc in ((3, 0.5), (4, 0.7), (5, 0.9)):
        results.write_record(out_dir, results.record_from_json(make_record(f"{seed:012d}", seed=seed, rule="hebb", acc=acc)))
    df = results.tidy(results.load_records(out_dir))
    summary = results.summarize(df, ["rule", "readout"])
    assert list(summary.columns[:7]) == ["rule", "readout", "n", "mean", "std", "ci95_low", "ci95_high"]
    assert list(summary["mean"]) == sorted(summary["mean"], reverse=True)

    hebb = summary[(summary["rule"] == "hebb") & (summary["readout"] == "all_activity")].iloc[0]
    assert hebb["n"] == 3
    assert hebb["mean"] == pytest.approx(0.7)
    assert hebb["std"] == pytest.approx(0.2)
    half = 4.302652729911275 * 0.2 / math.sqrt(3)  # t(0.975, df=2)
    assert hebb["ci95_low"] == pytest.approx(0.7 - half)
    assert hebb["ci95_high"] == pytest.approx(0.7 + half)
    assert hebb["ci95_low"] < hebb["mean"] < hebb["ci95_high"]
    assert hebb["exc_spikes_per_sample"] == pytest.approx(14.0)
    assert hebb["silent_fraction"] == pytest.approx(0.1)

    # The error cell contributes a NaN, so stdp has two finite seeds.
    stdp = summary[(summary["rule"] == "stdp") & (summary["readout"] == "all_activity")].iloc[0]
    assert stdp["n"] == 2 and stdp["mean"] == pytest.approx(0.5)


def test_summarize_single_seed_collapses_interval() -> None:
    df = results.tidy([results.record_from_json(make_record("aaaaaaaaaaaa", acc=0.4))])
    row = results.summarize(df, ["readout"]).set_index("readout").loc["all_activity"]
    assert row["n"] == 1
    assert row["ci95_low"] == row["mean"] == row["ci95_high"] == pytest.approx(0.4)


def test_summarize_validates_by(out_dir: Path) -> None:
    df = results.tidy(results.load_records(out_dir))
    with pytest.raises(ValueError, match="no_such_factor") as info:
        results.summarize(df, ["rule", "no_such_factor"])
    assert "readout" in str(info.value)  # lists what is available
    with pytest.raises(ValueError):
        results.summarize(df, [])


def test_compare_stages_without_factors_gives_a_row_per_readout():
    """A tuned grid whose only factor is the seed (found running a one-cell tune)."""
    df = pd.DataFrame({"stage": ["default", "tuned"] * 2, "seed": [0, 0, 1, 1],
                       "readout": ["linear"] * 4, "accuracy": [0.5, 0.7, 0.6, 0.8]})
    out = results.compare_stages(df, [])
    assert out["readout"].tolist() == ["linear"]
    assert out["default"].iloc[0] == pytest.approx(0.55)
    assert out["tuned_minus_default"].iloc[0] == pytest.approx(0.2)
