"""Convolutional and locally connected STDP layers (architecture conv / local)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stdp_bench.config import CellConfig, ConfigError
from stdp_bench.data import load_dataset
from stdp_bench.engine.feature_engine import FeatureCell
from stdp_bench.grid import expand
from stdp_bench.grid_file import parse_grid
from stdp_bench.networks.conv import LocationWTANodes, build_feature_network, feature_shape
from stdp_bench.engine.responses import ReplicaResponses
from stdp_bench.levels import registry
from stdp_bench.readout import apply_readouts, fit_readouts


def feature_predictions(fit_counts, fit_y, counts, shape, pool, n_classes, seed):
    """The feature-map readouts (filter_proportion, linear_pooled) of synthetic counts."""
    levels = [registry.get("readout", n) for n in ("filter_proportion", "linear_pooled")]
    empty = np.zeros((len(fit_counts), 0, 2), np.int32)
    cfg = CellConfig(pool=pool, seed=seed)
    fit = ReplicaResponses(fit_counts, empty, np.zeros(len(fit_counts)), shape)
    test = ReplicaResponses(counts, empty[:len(counts)], np.zeros(len(counts)), shape)
    return apply_readouts(fit_readouts(levels, fit, fit_y, n_classes, cfg), test, n_classes, cfg)


def cfg(arch: str, **kw) -> CellConfig:
    base = dict(architecture=arch, dataset="digits", kernel_size=3, stride=1, n_filters=6,
                winners=2, time=40, intensity_hz=256.0, conv_norm=2.0, n_neurons=216)
    return CellConfig(**{**base, **kw})


@pytest.mark.parametrize("arch, k, stride, expect", [
    ("conv", 3, 1, (6, 6, 6)), ("local", 3, 1, (6, 6, 6)), ("conv", 4, 2, (6, 3, 3)),
    ("local", 5, 3, (6, 2, 2))])
def test_shapes_and_neuron_counts(arch, k, stride, expect):
    c = cfg(arch, kernel_size=k, stride=stride)
    assert feature_shape(c, (8, 8)) == expect
    net = build_feature_network(c, (1, 8, 8), seed=0)
    assert tuple(net.layers["Ae"].shape) == expect
    assert net.layers["Ae"].n == int(np.prod(expect))
    w = net.connections[("X", "Ae")].w
    if arch == "conv":
        assert tuple(w.shape) == (6, 1, k, k)
        # normalised to conv_norm per filter
        assert torch.allclose(w.sum((1, 2, 3)), torch.full((6,), 2.0), atol=1e-4)
    else:
        assert tuple(w.shape) == (64, int(np.prod(expect)))
        fields = (w != 0).sum(0)
        assert (fields == k * k).all()  # each neuron sees only its k x k field


@pytest.mark.parametrize("arch", ["conv", "local"])
def test_layers_take_every_channel_of_dog_input(arch):
    """DoG on/off input (2 channels): each filter spans both channels, local fields hold
    2 x k x k inputs at the same place in each channel, and learning reaches both."""
    ds = load_dataset("digits", preprocess="dog")
    # Twice the inputs per field: twice the total weight keeps a neuron's drive.
    c = cfg(arch, kernel_size=3, stride=2, conv_norm=4.0)
    fc = FeatureCell(c, ds.input_shape, 1.0, 10)
    w = fc.network.connections[("X", "Ae")].w
    if arch == "conv":
        assert tuple(w.shape) == (6, 2, 3, 3)
    else:
        assert tuple(w.shape) == (128, 6 * 3 * 3)
        fields = w != 0
        assert (fields.sum(0) == 2 * 9).all()
        # The same place in the ON and the OFF map.
        assert torch.equal(fields[:64], fields[64:])
        # Normalised to conv_norm per neuron over both channels.
        assert torch.allclose(w.sum(0), torch.full((54,), 4.0), atol=1e-4)
    assert fc.filters().shape == (6, 2, 3, 3)
    before = w.clone()
    assert fc.train(ds.x_train, ds.y_train, np.arange(15)[None]).exc_spikes.sum() > 0
    per_channel = (w - before).abs().view(6, 2, -1) if arch == "conv" else \
        (w - before).abs().view(2, 64, -1).transpose(0, 1)
    moved = per_channel.amax((0, 2))
    assert (moved > 1e-3).all(), moved  # both channels learn


@pytest.mark.parametrize("arch", ["conv", "local"])
def test_stdp_changes_filters_and_none_does_not(arch):
    ds = load_dataset("digits")
    moved = {}
    for rule in ("stdp", "none"):
        fc = FeatureCell(cfg(arch, rule=rule), (1, 8, 8), 1.0, 10)
        before = fc.filters().copy()
        stats = fc.train(ds.x_train, ds.y_train, np.arange(15)[None])
        assert stats.exc_spikes.sum() > 0
        moved[rule] = np.abs(fc.filters() - before).max()
    assert moved["stdp"] > 1e-3 and moved["none"] < 1e-6, moved


@pytest.mark.parametrize("winners", [1, 2, 4])
def test_at_most_k_winners_per_location(winners):
    c = CellConfig(architecture="conv", neuron="lif", winners=winners)
    nodes = LocationWTANodes((6, 3, 3), c, winners)
    nodes.compute_decays(1.0)
    nodes.set_batch_size(5)
    gen = torch.Generator().manual_seed(0)
    fired_max, total = 0, 0
    for _ in range(30):
        nodes.forward(torch.rand(5, 6, 3, 3, generator=gen) * 12.0)
        per_loc = nodes.s.sum(1)  # [batch, H, W]
        fired_max = max(fired_max, int(per_loc.max()))
        total += int(nodes.s.sum())
    assert fired_max == winners  # reached, never exceeded
    assert total > 0


def test_batched_local_evaluation_equals_one_by_one():
    ds = load_dataset("digits")
    fc = FeatureCell(cfg("local"), (1, 8, 8), 1.0, 10)
    order = np.arange(6)
    batched = fc.respond(ds.x_test, order[None], phase=2, chunk=6)
    single = fc.respond(ds.x_test, order[None], phase=2, chunk=1)
    assert np.array_equal(batched.counts, single.counts)
    assert batched.counts.sum() > 0


def test_feature_readouts_on_synthetic_counts():
    rng = np.random.default_rng(0)
    F, H, W = 10, 4, 4
    y_lab, y_test = rng.integers(0, 10, 300), rng.integers(0, 10, 100)

    def counts(y):
        c = rng.poisson(0.2, (len(y), F, H, W))
        c[np.arange(len(y)), y] += rng.poisson(3.0, (len(y), H, W))  # filter y answers
        return c.reshape(len(y), -1)

    preds = feature_predictions(counts(y_lab), y_lab, counts(y_test), (F, H, W), 2, 10, 0)
    assert (preds["filter_proportion"] == y_test).mean() > 0.95
    assert (preds["linear_pooled"] == y_test).mean() > 0.9
    assert "linear_pooled" not in feature_predictions(counts(y_lab), y_lab, counts(y_test),
                                                      (F, H, W), 1, 10, 0)


def test_conv_rejects_what_it_cannot_run():
    for bad, needle in (({"rule": "teacher"}, "rule = 'teacher' is not available"),
                        ({"encoder": "rank_order"}, "encoder = 'rank_order' is not available"),
                        ({"min_spikes": 5}, "min_spikes = 5")):
        spec = parse_grid({"name": "g", "settings": {"architecture": "conv", **bad}})
        with pytest.raises(ConfigError, match=needle):
            expand(spec)


def test_engine_choice_names_why_a_cell_cannot_run_where_asked():
    from stdp_bench.execution import Execution
    from stdp_bench.trainers import FeatureTrainer

    first = CellConfig(architecture="conv", conv_learning="first_spike")
    torch_path = Execution(engine="torch", pinned=True)
    assert FeatureTrainer.engine_name([first], Execution()) == "kernel"
    assert FeatureTrainer.engine_name([first], torch_path) == "bindsnet"
    with pytest.raises(ConfigError) as err:
        FeatureTrainer.engine_name([first.with_settings(encoder="rank_order")], torch_path)
    assert str(err.value) == ("encoder = 'rank_order' needs the map kernel (BindsNET's "
                              "layers take no input gain); run it with --engine kernel")
    with pytest.raises(ConfigError) as err:
        FeatureTrainer.engine_name([CellConfig(architecture="conv")],
                                   Execution(engine="kernel", pinned=True))
    assert str(err.value) == ("conv_learning = 'every_spike' on shared conv kernels "
                              "(BindsNET's batch update); run it with --engine torch "
                              "(BindsNET's layers)")


@pytest.mark.slow
def test_cli_conv_and_local_cells_with_filter_plots(tmp_path):
    from typer.testing import CliRunner

    import pandas as pd

    from stdp_bench.cli import app

    grid = tmp_path / "c.toml"
    grid.write_text("""
name = "tiny_conv"
[settings]
dataset = "digits"
time = 60
intensity_hz = 256.0
kernel_size = 3
stride = 1
n_filters = 4
winners = 2
pool = 2
conv_norm = 3.0
n_train = 30
n_label = 60
n_test = 60
[factors]
architecture = ["conv", "local"]
rule = ["stdp", "none"]
""")
    out = tmp_path / "r"
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(grid), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(out / "results.parquet")
    assert set(table["readout"]) >= {"linear", "linear_pooled", "filter_proportion",
                                     "proportion_weighting"}
    assert (table.drop_duplicates("cell_id")["status"] == "ok").all()
    assert (table.drop_duplicates("cell_id")["n_excitatory"] == 144).all()
    res = runner.invoke(app, ["plot", str(out), "--facet", "architecture", "--x", "rule",
                              "--y", "architecture"])
    assert res.exit_code == 0, res.output
    assert len(list((out / "figures").glob("filters_*.png"))) == 4


@pytest.mark.parametrize("rule", ["stdp", "weight_dependent", "hebbian"])
def test_event_local_rule_matches_stock_bindsnet(rule):
    """EventLocalConnection + EventLocalPostPre vs stock LocalConnection + the stock rule."""
    from bindsnet.network.monitors import Monitor

    from stdp_bench.networks.conv import BatchedLocalConnection
    from stdp_bench.levels import registry

    c = cfg("local", rule=rule, neuron="lif", nu_pre=5e-3, nu_post=2e-2, wmax=0.6,
            conv_norm=3.0)
    ours = build_feature_network(c, (1, 8, 8), seed=3)
    stock = build_feature_network(c, (1, 8, 8), seed=3)
    old = stock.connections[("X", "Ae")]
    ref = BatchedLocalConnection(stock.layers["X"], stock.layers["Ae"], kernel_size=3,
                                 stride=1, n_filters=6, input_shape=(8, 8),
                                 update_rule=registry.module(registry.get("rule", rule)).stock_rule(),
                                 nu=(c.nu_pre, c.nu_post), wmin=c.wmin, wmax=c.wmax,
                                 norm=c.conv_norm / 9, w=old.w.detach().clone())
    stock.connections[("X", "Ae")] = ref
    # The stock constructor clamps the normalised weights to wmax; start both from that.
    ours.connections[("X", "Ae")].w.data.copy_(ref.w)
    for net in (ours, stock):
        net.add_monitor(Monitor(net.layers["Ae"], state_vars=["s"]), name="m")
        net.train(True)
    gen = torch.Generator().manual_seed(5)
    ds = load_dataset("digits")
    spikes_total = 0
    for k in range(4):
        p = torch.from_numpy(ds.x_train[k]).view(1, 1, 8, 8) * 0.4
        x = torch.bernoulli(p.expand(60, 1, 1, 8, 8).contiguous(), generator=gen)
        out = []
        for net in (ours, stock):
            net.monitors["m"].reset_state_variables()
            net.run(inputs={"X": x.clone()}, time=60)
            out.append(net.monitors["m"].get("s").bool().clone())
            net.reset_state_variables()
        assert torch.equal(out[0], out[1]), f"presentation {k}: spikes differ"
        w_ours = ours.connections[("X", "Ae")].w
        assert torch.allclose(w_ours, ref.w, atol=1e-5), (
            f"presentation {k}: max |dW| {(w_ours - ref.w).abs().max():.3g}")
        spikes_total += int(out[0].sum())
    assert spikes_total > 0
    assert (ref.w[ref.mask] == 0).all() and (w_ours[ref.mask] == 0).all()
