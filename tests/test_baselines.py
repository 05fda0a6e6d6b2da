"""Gradient-trained baselines (ANN and snnTorch surrogate nets) on digits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from stdp_bench.baselines import SurrogateSNN, encode_batch
from stdp_bench.cli import app
from stdp_bench.config import CellConfig, ConfigError
from stdp_bench.data import load_dataset
from stdp_bench.grid import expand
from stdp_bench.grid_file import parse_grid


def train_baseline(cfg, x_train, y_train, x_test, input_shape, n_classes, max_steps):
    """Train a baseline engine on all of ``x_train`` and predict ``x_test`` (as the
    protocol does, without the grid around it)."""
    from types import SimpleNamespace

    from stdp_bench.engine.baseline_engine import BaselineEngine
    from stdp_bench.trainers import trainer_of

    eng = BaselineEngine(cfg, input_shape, n_classes,
                         convolutional=trainer_of(cfg).convolutional)
    cfg_n = len(x_train)
    stats = eng.train(x_train, y_train, np.arange(cfg_n)[None], max_steps=max_steps)
    tested = eng.respond(x_test, np.arange(len(x_test))[None], phase=2)
    return SimpleNamespace(predictions=tested.outputs[0].argmax(1), losses=eng.losses,
                           metrics={**eng.activity(0, tested), **eng.training_metrics(0, stats)})


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.parametrize("family, arch, encoder", [
    ("ann", "mlp", "poisson"), ("ann", "cnn", "poisson"),
    ("surrogate", "mlp", "poisson"), ("surrogate", "cnn", "direct"),
    ("surrogate", "mlp", "rank_order")])
def test_baseline_loss_falls(digits, family, arch, encoder):
    cfg = CellConfig(family=family, architecture=arch, encoder=encoder, dataset="digits",
                     n_neurons=32, time=8, intensity_hz=500.0, batch_size=32, lr=1e-2,
                     epochs=3)
    res = train_baseline(cfg, digits.x_train[:320], digits.y_train[:320],
                         digits.x_test[:100], digits.input_shape, 10, max_steps=30)
    first, last = np.mean(res.losses[:3]), np.mean(res.losses[-3:])
    assert last < 0.8 * first, (first, last)
    assert res.predictions.shape == (100,)
    assert res.metrics["n_params"] > 0 and res.metrics["synops_per_sample"] > 0
    if family == "surrogate":
        assert res.metrics["exc_spikes_per_sample"] > 0


def test_surrogate_gradient_nonzero_near_threshold():
    cfg = CellConfig(family="surrogate", architecture="mlp", n_neurons=4, time=1,
                     surrogate_slope=25.0)
    net = SurrogateSNN(cfg, 3, (1, 3), 2, convolutional=False)
    lif = net.lifs[0]
    mem0 = torch.zeros(1, 5)
    near = torch.tensor([[0.98, 1.02, 0.5, 1.5, 3.0]], requires_grad=True)
    spk, _ = lif(near, mem0)
    spk.sum().backward()
    g = near.grad[0]
    assert spk[0].tolist() == [0.0, 1.0, 0.0, 1.0, 1.0]  # Heaviside forward
    # fast sigmoid: 1 / (1 + slope |v - 1|)^2, largest at the threshold (v = 1).
    expect = 1.0 / (1.0 + 25.0 * (near.detach()[0] - 1.0).abs()) ** 2
    assert torch.allclose(g, expect, rtol=1e-4)
    assert g[0] > 0.4 and g[1] > 0.4 and (g > 0).all()


def test_encoders_rates_and_shapes():
    x = torch.tensor([[0.0, 0.5, 1.0]]).repeat(500, 1)
    gen = torch.Generator().manual_seed(0)
    for enc in ("poisson", "bernoulli"):
        s = encode_batch(x, enc, 100, 128.0, 1.0, gen)
        assert s.shape == (100, 500, 3) and set(s.unique().tolist()) <= {0.0, 1.0}
        rate = s.sum(0).mean(0)  # spikes per 100 ms
        assert rate[0] == 0 and abs(rate[2] - 12.8) < 1.5 and abs(rate[1] - 6.4) < 1.0
    r = encode_batch(x[:1], "rank_order", 10, 128.0, 1.0)
    # As the STDP engine's code: step ceil((xmax / x) T / max_ratio) - 1, dimmest last.
    assert r[:, 0, 0].sum() == 0 and r[4, 0, 2] == 1 and r[9, 0, 1] == 1 and r.sum() == 2
    assert torch.equal(encode_batch(x[:1], "direct", 4, 1.0, 1.0)[3], x[0:1])


def test_family_architecture_combinations_are_checked():
    bad = parse_grid({"name": "g", "settings": {"family": "ann", "architecture": "dc2015"}})
    with pytest.raises(ConfigError, match="architecture = 'dc2015' cannot be built by "
                                          "family = 'ann'; allowed for ann: mlp, cnn"):
        expand(bad)
    bad = parse_grid({"name": "g", "settings": {"encoder": "direct"}})
    with pytest.raises(ConfigError, match="encoder = 'direct' is for gradient-trained"):
        expand(bad)


def test_cli_runs_baselines_next_to_stdp(tmp_path):
    grid = tmp_path / "b.toml"
    grid.write_text("""
name = "mini_baselines"
[settings]
dataset = "digits"
n_neurons = 16
time = 6
n_train = 200
n_label = 50
n_test = 100
epochs = 5
batch_size = 25
lr = 0.01
intensity_hz = 500.0
[factors]
family = ["ann", "surrogate"]
architecture = ["mlp", "cnn"]
""")
    out = tmp_path / "r"
    res = CliRunner().invoke(app, ["run", str(grid), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 4 and set(table["readout"]) == {"output"}
    assert (table["status"] == "ok").all() and (table["accuracy"] > 0.3).all()
    for col in ("train_seconds", "eval_seconds", "n_params", "synops_per_sample",
                "exc_spikes_per_sample", "config_hash", "commit", "version_torch"):
        assert col in table.columns, col
    rec = json.loads(next((out / "cells").glob("*.json")).read_text())
    assert rec["schema"] == 2 and rec["readouts"]["output"]["confusion"]
    shown = CliRunner().invoke(app, ["show", str(out), "--by", "family", "--by",
                                     "architecture"])
    assert shown.exit_code == 0 and "surrogate" in shown.output and "cnn" in shown.output
