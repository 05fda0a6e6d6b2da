"""Figures: heatmaps, receptive fields, confusion matrices, and a whole results folder."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from stdp_bench import plots, results
from stdp_bench.results import listed_readouts

READOUTS = tuple(listed_readouts("stdp"))

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ENCODERS = ("poisson", "rank")
RULES = ("hebb", "stdp")
NEURONS = ("adaptive", "lif")


def assert_png(path: Path) -> np.ndarray:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 50 and image.shape[1] > 50
    return image


def accuracy_of(encoder: str, rule: str, neuron: str, seed: int) -> float:
    """Distinct, known accuracies: the seed offsets average out to zero."""
    return (0.2 + 0.3 * ENCODERS.index(encoder) + 0.2 * RULES.index(rule)
            + 0.1 * NEURONS.index(neuron) + (0.05 if seed else -0.05))


@pytest.fixture
def table() -> pd.DataFrame:
    rows = []
    for enc, rule, neuron, seed in itertools.product(ENCODERS, RULES, NEURONS, (0, 1)):
        for readout in READOUTS:
            acc = accuracy_of(enc, rule, neuron, seed)
            rows.append({"cell_id": f"{enc}-{rule}-{neuron}-{seed}", "status": "ok", "readout": readout,
                         "encoder": enc, "rule": rule, "neuron": neuron, "seed": seed,
                         "accuracy": acc if readout == "proportion_weighting" else 0.0})
    df = pd.DataFrame(rows)
    # One combination only ever failed: it must come out as NaN ("n/a"), not 0.
    bad = (df["encoder"] == "rank") & (df["rule"] == "hebb") & (df["neuron"] == "lif")
    df.loc[bad, "accuracy"] = np.nan
    return df


def test_heatmap_tables_average_over_seeds_per_facet(table: pd.DataFrame) -> None:
    tables = plots.heatmap_tables(table, x="encoder", y="rule", facet="neuron")
    assert list(tables) == list(NEURONS)
    adaptive = tables["adaptive"]
    assert list(adaptive.index) == list(RULES) and list(adaptive.columns) == list(ENCODERS)
    for enc, rule in itertools.product(ENCODERS, RULES):
        assert adaptive.loc[rule, enc] == pytest.approx(accuracy_of(enc, rule, "adaptive", 0) + 0.05)
    assert np.isnan(tables["lif"].loc["hebb", "rank"])
    assert tables["lif"].loc["stdp", "rank"] == pytest.approx(0.2 + 0.3 + 0.2 + 0.1)

    single = plots.heatmap_tables(table, x="encoder", y="rule", facet=None)
    assert list(single) == [None]
    # Without a facet the mean spans both neurons (NaNs skipped).
    assert single[None].loc["stdp", "poisson"] == pytest.approx(0.45)


def test_heatmaps_writes_png(table: pd.DataFrame, tmp_path: Path) -> None:
    out = plots.heatmaps(table, path=tmp_path / "figs" / "h.png")
    assert out == tmp_path / "figs" / "h.png"
    assert_png(out)
    other = plots.heatmaps(table.assign(spikes=table["accuracy"] * 40), metric="spikes",
                           facet=None, path=tmp_path / "spikes.png")
    assert_png(other)


def test_heatmaps_rejects_unknown_columns_and_readouts(table: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'nope'") as info:
        plots.heatmaps(table, x="nope", path=tmp_path / "h.png")
    assert "encoder" in str(info.value)  # lists the available columns
    with pytest.raises(ValueError, match="no_readout"):
        plots.heatmaps(table, readout="no_readout", path=tmp_path / "h.png")
    assert not (tmp_path / "h.png").exists()


def test_receptive_fields_and_confusion_plot(tmp_path: Path) -> None:
    weights = np.random.default_rng(0).random((64, 10)).astype(np.float16)
    assert_png(plots.receptive_fields(weights, (8, 8), tmp_path / "rf.png", title="rf"))
    with pytest.raises(ValueError, match="image_shape"):
        plots.receptive_fields(weights, (7, 7), tmp_path / "bad.png")
    confusion = (np.eye(10, dtype=int) * 7 + 1).tolist()
    assert_png(plots.confusion_matrix_plot(confusion, tmp_path / "cm.png", title="cm"))


def make_record(enc: str, rule: str, neuron: str, seed: int) -> dict:
    cell_id = f"{ENCODERS.index(enc)}{RULES.index(rule)}{NEURONS.index(neuron)}{seed}".ljust(12, "0")
    acc = accuracy_of(enc, rule, neuron, seed)
    confusion = np.diag([seed + 1] * 10).tolist()
    return {
        "schema": 1, "cell_id": cell_id, "grid": "smoke", "status": "ok", "error": None,
        "factors": ["encoder", "neuron", "rule", "seed"],
        "settings": {"encoder": enc, "neuron": neuron, "rule": rule, "seed": seed, "n_neurons": 4},
        "image_shape": [8, 8],
        "metrics": {"exc_spikes_per_sample": 3.0, "silent_fraction": 0.0},
        "readouts": {name: {"accuracy": acc, "confusion": confusion} for name in READOUTS},
        "provenance": {"seed": seed, "config_hash": cell_id, "commit": None, "versions": {}},
        "artifacts": {},
    }


def test_plot_results_writes_all_figures(tmp_path: Path) -> None:
    for combo in itertools.product(ENCODERS, RULES, NEURONS, (0, 1)):
        results.write_record(tmp_path, results.record_from_json(make_record(*combo)))
    with_weights = make_record("rank", "stdp", "lif", 1)  # also the best cell
    with_weights["artifacts"] = {"weights": f"artifacts/{with_weights['cell_id']}/weights.npy"}
    results.write_record(tmp_path, results.record_from_json(with_weights))
    (tmp_path / "artifacts" / with_weights["cell_id"]).mkdir(parents=True)
    np.save(tmp_path / with_weights["artifacts"]["weights"],
            np.random.default_rng(1).random((64, 4)).astype(np.float16))
    # A record pointing at a missing file is skipped, not fatal.
    dangling = make_record("poisson", "hebb", "adaptive", 0)
    dangling["artifacts"] = {"weights": "artifacts/gone/weights.npy"}
    results.write_record(tmp_path, results.record_from_json(dangling))

    paths = plots.plot_results(tmp_path)
    figs = tmp_path / "figures"
    assert sorted(p.name for p in paths) == sorted([
        "heatmap_accuracy_proportion_weighting.png",
        f"receptive_fields_{with_weights['cell_id']}.png",
        "confusion_best.png"])
    for p in paths:
        assert p.parent == figs
        assert_png(p)
    assert plots._best_record(results.load_records(tmp_path), "proportion_weighting")[0].cell_id \
        == with_weights["cell_id"]


def test_plot_results_falls_back_to_varied_factors(tmp_path: Path) -> None:
    for combo in itertools.product(ENCODERS, RULES, ("lif",), (0, 1)):
        results.write_record(tmp_path, results.record_from_json(make_record(*combo)))
    df = results.read_table(tmp_path)
    records = results.load_records(tmp_path)
    # neuron has one level and seed is averaged over, so encoder and rule are picked.
    assert plots._choose_axes(df, records, "nope", "nada", None) == ("encoder", "rule")
    assert plots._choose_axes(df, records, "rule", "nada", None) == ("rule", "encoder")
    paths = plots.plot_results(tmp_path, x="nope", y="nada", facet="also_missing")
    assert (tmp_path / "figures" / "heatmap_accuracy_proportion_weighting.png") in paths


def test_plot_results_without_varied_factors_raises(tmp_path: Path) -> None:
    results.write_record(tmp_path, results.record_from_json(make_record("rank", "stdp", "lif", 0)))
    with pytest.raises(ValueError, match="more than one level"):
        plots.plot_results(tmp_path, x="nope", y="nada")
