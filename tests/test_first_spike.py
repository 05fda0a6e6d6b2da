"""First-spike competitive STDP on conv / local layers (conv_learning = "first_spike")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stdp_bench.config import CellConfig, ConfigError
from stdp_bench.data import load_dataset
from stdp_bench.engine.feature_engine import FeatureCell
from stdp_bench.grid_file import parse_grid
from stdp_bench.networks.conv import build_feature_network
from stdp_bench.networks.first_spike import FirstSpikePostPre, claim_radius

NU = 0.05


def cfg(arch: str, **kw) -> CellConfig:
    base = dict(architecture=arch, dataset="digits", kernel_size=3, stride=1, n_filters=6,
                winners=2, time=40, intensity_hz=256.0, conv_norm=2.0, n_neurons=216,
                conv_learning="first_spike", rule="stdp", nu_post=NU)
    return CellConfig(**{**base, **kw})


def rig(arch: str, **kw):
    """A network whose input traces and spikes the test sets by hand (8x8 -> 6 x 6x6)."""
    net = build_feature_network(cfg(arch, **kw), (1, 8, 8), seed=0)
    conn = net.connections[("X", "Ae")]
    assert isinstance(conn.update_rule, FirstSpikePostPre)
    gen = torch.Generator().manual_seed(1)
    net.layers["X"].x = torch.rand(1, 1, 8, 8, generator=gen)
    return net, conn, conn.update_rule


def step(net, conn, spikes: list[tuple[int, int, int]]) -> None:
    s = torch.zeros(1, 6, 6, 6, dtype=torch.bool)
    for f, y, x in spikes:
        s[0, f, y, x] = True
    net.layers["Ae"].s = s
    conn.update(learning=True)


def patch(net, y: int, x: int) -> torch.Tensor:
    return net.layers["X"].x[0, 0, y:y + 3, x:x + 3]


@pytest.mark.parametrize("k, stride, radius", [(3, 1, 1), (5, 2, 1), (12, 4, 1), (7, 1, 3),
                                               (2, 2, 0), (4, 4, 0)])
def test_claim_radius_covers_patches_overlapping_by_more_than_half(k, stride, radius):
    assert claim_radius(k, stride) == radius
    assert radius * stride < k / 2 and (radius + 1) * stride >= k / 2


def test_conv_best_match_claims_first_and_each_filter_learns_once_per_image():
    net, conn, rule = rig("conv")
    # Make filter 1 match its patch at (2, 3) far better than filter 0 matches (2, 2).
    conn.w.data[1, 0] = patch(net, 2, 3) * 3
    conn.w.data[0, 0] = 0.01
    w0 = conn.w.detach().clone()
    # 0 at (2,2) is inside 1's claim; 0 is also at (5,0), free; 2 at (5,5).
    step(net, conn, [(0, 2, 2), (1, 2, 3), (0, 5, 0), (2, 5, 5)])
    assert rule.claims[0] == (1, 2, 3)
    assert set(rule.claims) == {(1, 2, 3), (0, 5, 0), (2, 5, 5)}
    for f, y, x in rule.claims:
        assert torch.allclose(conn.w[f, 0], (w0[f, 0] + NU * patch(net, y, x)).clamp(0, 1))
    for f in (3, 4, 5):
        assert torch.equal(conn.w[f], w0[f])
    # Same image: learned filters and claimed places do not learn again; 3 at a free
    # place two rows from (2, 3) does.
    w1 = conn.w.detach().clone()
    step(net, conn, [(0, 0, 0), (1, 4, 4), (4, 1, 2), (3, 0, 5)])
    assert rule.claims[3:] == [(3, 0, 5)]
    changed = [f for f in range(6) if not torch.equal(conn.w[f], w1[f])]
    assert changed == [3]
    # A new image: filter 0 learns again, at a place claimed in the last image.
    net.reset_state_variables()
    net.layers["X"].x = torch.rand(1, 1, 8, 8)
    step(net, conn, [(0, 2, 2)])
    assert rule.claims == [(0, 2, 2)]


def test_weight_dependent_potentiation_is_soft_bounded():
    net, conn, rule = rig("conv", rule="weight_dependent", wmax=0.5)
    w0 = conn.w.detach().clone()
    step(net, conn, [(2, 1, 1)])
    want = w0[2, 0] + NU * patch(net, 1, 1) * (0.5 - w0[2, 0])
    assert torch.allclose(conn.w[2, 0], want)


def test_local_one_learner_per_location_inside_its_field():
    net, conn, rule = rig("local")
    w = conn.w.view(64, 6, 36)
    # Filters 0 and 4 fire at location (1, 1): the better match learns; location (1, 2)
    # next to it is its own place (local filters do not share weights).
    w.data[:, 4, 7] *= 3
    w0 = w.detach().clone()
    step(net, conn, [(0, 1, 1), (4, 1, 1), (0, 1, 2)])
    assert rule.claims[0] == (4, 1, 1)
    assert set(rule.claims) == {(4, 1, 1), (0, 1, 2)}
    field = w0[:, 4, 7] != 0
    x = net.layers["X"].x.view(64)
    assert torch.allclose(w[:, 4, 7], ((w0[:, 4, 7] + NU * x).clamp(0, 1)) * field)
    assert (w[~field, 4, 7] == 0).all()
    assert torch.equal(w[:, 0, 7], w0[:, 0, 7])


@pytest.mark.parametrize("arch", ["conv", "local"])
def test_training_claims_stay_apart_and_move_filters(arch):
    ds = load_dataset("digits")
    fc = FeatureCell(cfg(arch, conv_norm=4.0, time=60), (1, 8, 8), 1.0, 10)
    conn = fc.network.connections[("X", "Ae")]
    rule = conn.update_rule
    per_image: list[list[tuple[int, int, int]]] = []
    reset = rule.reset_state_variables

    def record() -> None:
        if rule.claims:
            per_image.append(list(rule.claims))
        reset()

    rule.reset_state_variables = record
    before = fc.filters().copy()
    fc.train(ds.x_train, ds.y_train, np.arange(20)[None])
    assert np.abs(fc.filters() - before).max() > 1e-3
    assert len(per_image) == 20
    assert sum(map(len, per_image)) >= (80 if arch == "conv" else 400)
    r = claim_radius(3, 1) if arch == "conv" else 0
    for claims in per_image:
        if arch == "conv":
            filters = [f for f, _, _ in claims]
            assert len(filters) == len(set(filters))
        for i, (_, y1, x1) in enumerate(claims):
            for _, y2, x2 in claims[i + 1:]:
                assert max(abs(y1 - y2), abs(x1 - x2)) > r


def test_conv_learning_levels_are_validated():
    with pytest.raises(ConfigError, match="'conv_learning' = 'sometimes'.*every_spike, "
                                          "first_spike"):
        parse_grid({"name": "g", "settings": {"conv_learning": "sometimes"}})
    # The default level does not change the ids of cells run before it existed.
    assert (CellConfig(conv_learning="every_spike").cell_id() == CellConfig().cell_id()
            != CellConfig(conv_learning="first_spike").cell_id())
