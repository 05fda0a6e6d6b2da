"""Grid validation: every error names the key, the value and what is allowed."""

import dataclasses
import subprocess
import sys

import pytest

from stdp_bench.config import CellConfig, ConfigError, choices, make_cell
from stdp_bench.grid import expand
from stdp_bench.grid_file import load_grid, parse_grid
from stdp_bench.levels import registry
from stdp_bench.overrides import apply_overrides


def grid(**factors):
    return {"name": "g", "settings": {"dataset": "digits"}, "factors": factors}


def test_validator_choices_come_from_the_registries():
    for axis in ("encoder", "neuron", "rule", "architecture", "dataset"):
        assert choices(axis) == registry.names(axis)
    assert choices("encoder")[:3] == ("poisson", "bernoulli", "rank_order")
    assert registry.names("readout") == (
        "all_activity", "proportion_weighting", "ngram", "linear", "filter_proportion",
        "linear_pooled", "svm", "decision", "output")


def test_every_readout_and_dataset_level_has_its_implementation():
    from stdp_bench.data_sources import source
    from stdp_bench.readout import Readout, predictor
    from stdp_bench.trainers import Trainer

    assert all(isinstance(predictor(lv), Readout) for lv in registry.levels("readout"))
    assert all(issubclass(registry.load_ref(a.trainer, a.name), Trainer)
               for a in registry.levels("architecture"))
    # digits is bundled with scikit-learn; every other dataset is read from the data root.
    readers = [n for n in registry.names("dataset") if source(n) is not None]
    assert ["digits", *readers] == list(registry.names("dataset"))
    assert all(callable(source(n).read) for n in readers)


def test_registry_and_validation_import_neither_torch_nor_numba():
    code = ("import sys; from stdp_bench.grid_file import parse_grid; "
            "parse_grid({'name': 'g', 'factors': {'rule': ['stdp', 'none']}}); "
            "print('torch' in sys.modules, 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


def _expand(settings: dict) -> None:
    expand(parse_grid({"name": "g", "settings": settings}))


@pytest.mark.parametrize("act, message", [
    (lambda: apply_overrides(parse_grid(grid()), ["seed=[]"]),
     "--set seed=[]: 'seed' = [] has no levels; a factor needs at least one"),
    (lambda: parse_grid(grid(seed=[])),
     "grid [factors]: 'seed' = [] must be a non-empty list"),
    (lambda: _expand({"wmin": 0.5, "wmax": 0.2}),
     "grid 'g', cell settings: wmin = 0.5 is above wmax = 0.2; wmin must be at most wmax"),
    (lambda: parse_grid({"name": "g", "settings": {"input_gain": -1.0}}),
     "grid [settings]: 'input_gain' = -1.0 must be at least 0.0"),
    (lambda: _expand({"time": 250, "dt": 0.3}),
     "grid 'g', cell settings: time = 250 is not a multiple of dt = 0.3; a presentation "
     "must be a whole number of steps"),
    (lambda: apply_overrides(parse_grid(grid()), ["inh=inf"]),
     "--set inh=inf: 'inh' = inf must be a finite number"),
    (lambda: parse_grid({"name": "g", "settings": {"nu_pre": float("nan")}}),
     "grid [settings]: 'nu_pre' = nan must be a finite number"),
], ids=["empty-set-factor", "empty-file-factor", "wmin-above-wmax", "negative-gain",
        "time-not-multiple-of-dt", "infinite", "nan"])
def test_refused_inputs_exact_messages(act, message):
    with pytest.raises(ConfigError) as err:
        act()
    assert str(err.value) == message


@pytest.mark.parametrize("data, needles", [
    (grid(colour=["red"]), ["unknown setting 'colour'", "n_neurons"]),
    (grid(encoder=["poisson", "morse"]), ["'encoder'", "'morse'", "poisson, bernoulli, rank_order"]),
    (grid(rule=["stdp", "backprop"]), ["'rule'", "'backprop'", "weight_dependent"]),
    (grid(n_neurons=[-5]), ["'n_neurons'", "-5", "at least 1"]),
    (grid(n_neurons=["ten"]), ["'n_neurons'", "'ten'", "integer"]),
    (grid(time=[10**9]), ["'time'", "must be at most 100000 (ms)"]),
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


def test_with_settings_copies_core_and_level_settings():
    triplet = CellConfig().with_settings(rule="triplet", tc_post2_ms=80.0)
    assert triplet.level_settings == (("tc_post2_ms", 80.0),)
    slower = triplet.with_settings(n_train=5, tc_post2_ms=90.0)
    assert (slower.n_train, slower.tc_post2_ms) == (5, 90.0)
    # Back at the level's default, the setting leaves level_settings (and the id).
    assert triplet.with_settings(tc_post2_ms=40.0) == CellConfig(rule="triplet")


@pytest.mark.parametrize("level_settings, message", [
    ((("tc_post2_ms", 40.0),),
     "level_settings: 'tc_post2_ms' = 40.0 is its default, which is left out; build cells "
     "with make_cell or CellConfig.with_settings"),
    ((("tc_post2_ms", 80.0), ("tc_post2_ms", 90.0)),
     "level_settings names ['tc_post2_ms', 'tc_post2_ms'] must be sorted and unique; build "
     "cells with make_cell or CellConfig.with_settings"),
    ((("inh", 10.0),), "level_settings: 'inh' is not a setting a level declares"),
], ids=["default", "repeated", "core"])
def test_level_settings_only_in_the_form_make_cell_writes(level_settings, message):
    # cell_id hashes level_settings as written: any other form would give a cell two ids,
    # so the constructor and dataclasses.replace refuse it.
    cfg = CellConfig(rule="triplet")
    with pytest.raises(ConfigError) as exc:
        dataclasses.replace(cfg, level_settings=level_settings)
    assert str(exc.value).startswith(message)
    with pytest.raises(ConfigError):
        CellConfig(rule="triplet", level_settings=level_settings)


def test_dataclasses_replace_cannot_set_a_level_setting():
    # Core settings copy the same either way; a level's setting only via with_settings.
    cfg = CellConfig(rule="triplet")
    assert dataclasses.replace(cfg, n_train=5) == cfg.with_settings(n_train=5)
    with pytest.raises(TypeError, match="tc_post2_ms"):
        dataclasses.replace(cfg, tc_post2_ms=80.0)


def test_to_dict_keeps_a_readout_levels_setting_so_the_cell_rebuilds():
    """``svm_c`` belongs to no axis the cell names (readouts are not a cell axis), yet a
    model file rebuilds its cell from ``to_dict``: the setting must be in it."""
    cfg = CellConfig().with_settings(svm_c=0.01)
    assert cfg.to_dict()["svm_c"] == 0.01
    assert make_cell(cfg.to_dict()).cell_id() == cfg.cell_id()
    assert "svm_c" not in CellConfig().to_dict()
