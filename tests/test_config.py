"""Grid validation: every error names the key, the value and what is allowed."""

import pytest

from stdp_bench.config import CHOICES, CellConfig, ConfigError, apply_overrides, load_grid, parse_grid
from stdp_bench.encoders import ENCODERS
from stdp_bench.neurons import NEURONS
from stdp_bench.readout import READOUTS
from stdp_bench.rules import RULES


def grid(**factors):
    return {"name": "g", "settings": {"dataset": "digits"}, "factors": factors}


def test_registries_match_validator_choices():
    # "direct" (analog current) exists only for the gradient-trained baselines.
    assert tuple(ENCODERS) + ("direct",) == CHOICES["encoder"]
    assert tuple(NEURONS) == CHOICES["neuron"]
    assert tuple(RULES) == CHOICES["rule"]
    assert READOUTS == ("all_activity", "proportion_weighting", "ngram", "linear")


@pytest.mark.parametrize("data, needles", [
    (grid(colour=["red"]), ["unknown setting 'colour'", "n_neurons"]),
    (grid(encoder=["poisson", "morse"]), ["'encoder'", "'morse'", "poisson, bernoulli, rank_order"]),
    (grid(rule=["stdp", "backprop"]), ["'rule'", "'backprop'", "weight_dependent"]),
    (grid(n_neurons=[-5]), ["'n_neurons'", "-5", "at least 1"]),
    (grid(n_neurons=["ten"]), ["'n_neurons'", "'ten'", "integer"]),
    (grid(time=[10**9]), ["'time'", "absurdly large"]),
    (grid(seed=[]), ["'seed'", "non-empty list"]),
    (grid(seed=[0, 0]), ["'seed'", "repeats"]),
    ({"name": "g", "settings": {"inh": "strong"}}, ["'inh'", "'strong'", "number"]),
    ({"name": "g", "setings": {}}, ["unknown top-level key 'setings'"]),
    ({"name": "a b"}, ["'name'"]),
], ids=["unknown-key", "bad-encoder", "bad-rule", "negative-size", "wrong-type",
        "absurd-size", "empty-levels", "repeated-level", "float-type", "top-level-typo",
        "bad-name"])
def test_validation_messages(data, needles):
    with pytest.raises(ConfigError) as err:
        parse_grid(data, "g.toml")
    for needle in needles:
        assert needle in str(err.value)


def test_malformed_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("name = 'x'\n[factors\n")
    with pytest.raises(ConfigError, match="malformed TOML"):
        load_grid(path)


def test_overrides_pin_factor_and_set_setting():
    spec = parse_grid(grid(rule=["stdp", "none"], seed=[0, 1]))
    out = apply_overrides(spec, ["rule=none", "n_neurons=7", "seed=[3,4,5]"])
    assert "rule" not in out.factors and out.settings["rule"] == "none"
    assert out.settings["n_neurons"] == 7
    assert out.factors["seed"] == (3, 4, 5)
    with pytest.raises(ConfigError, match="'rule' = 'nope'"):
        apply_overrides(spec, ["rule=nope"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(spec, ["rule"])


def test_int_promotes_to_float_and_cell_id_is_stable():
    spec = parse_grid({"name": "g", "settings": {"inh": 100}})
    assert spec.settings["inh"] == 100.0 and isinstance(spec.settings["inh"], float)
    a = CellConfig(inh=100.0)
    assert a.cell_id() == CellConfig(inh=100.0).cell_id()
    assert a.cell_id() != CellConfig(inh=101.0).cell_id()
