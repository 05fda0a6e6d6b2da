"""Grid expansion: counts, stable ids, grouping into replica jobs."""

import pytest

from stdp_bench.config import ConfigError
from stdp_bench.grid import expand, group_jobs
from stdp_bench.grid_file import grids_dir, load_grid, parse_grid


def test_shipped_grids_expand_to_documented_counts():
    counts = {p.stem: len(expand(load_grid(p))) for p in grids_dir().glob("*.toml")}
    assert counts["factorial"] == 135  # 45 cells x 3 seeds
    assert counts["dc2015"] == 12
    assert counts["dc2015_triplet"] == 12
    assert counts["dc2015_large"] == 4  # 1,600 neurons x 3 seeds, 6,400 x 1
    assert counts["learning_curve"] == 9
    assert counts["baselines"] == 4
    assert counts["classic"] == 1
    assert counts["smoke"] == 8


def test_ids_stable_and_unique_and_jobs_group_by_shape():
    spec = parse_grid({"name": "g", "settings": {"dataset": "digits"},
                       "factors": {"encoder": ["poisson", "bernoulli"],
                                   "n_neurons": [10, 20], "seed": [0, 1]}})
    cells = expand(spec)
    assert len(cells) == 8
    ids = [c.cell_id for c in cells]
    assert len(set(ids)) == 8
    assert ids == [c.cell_id for c in expand(spec)]
    jobs = group_jobs(cells)
    # Two shapes (n_neurons 10 and 20); encoders and seeds share a job as replicas.
    assert sorted(len(j.cells) for j in jobs) == [4, 4]
    for job in jobs:
        assert len({c.config.n_neurons for c in job.cells}) == 1
    assert sorted(len(j.cells) for j in group_jobs(cells, max_replicas=3)) == [1, 1, 3, 3]


def test_exclude_drops_the_named_combinations():
    spec = parse_grid({"name": "g", "settings": {"dataset": "digits"},
                       "factors": {"n_neurons": [10, 20], "seed": [0, 1, 2]},
                       "exclude": [{"n_neurons": 20, "seed": [1, 2]}]})
    kept = [(c.config.n_neurons, c.config.seed) for c in expand(spec)]
    assert kept == [(10, 0), (10, 1), (10, 2), (20, 0)]
    assert parse_grid(spec.to_toml_dict()).exclude == spec.exclude


@pytest.mark.parametrize("exclude, needle", [
    ([{"neurons": 20}], "grid exclude[0]: 'neurons' is not a factor; factors: n_neurons, seed"),
    ([{"seed": 5}], "grid exclude[0]: seed = 5 is not a level of the factor; levels: 0, 1"),
    ([{}], "grid exclude[0]: {} must be a non-empty table"),
    ({"seed": 0}, "grid: 'exclude' = {'seed': 0} must be a list of tables"),
])
def test_exclude_is_validated(exclude, needle):
    with pytest.raises(ConfigError) as err:
        parse_grid({"name": "g", "settings": {"dataset": "digits"},
                    "factors": {"n_neurons": [10, 20], "seed": [0, 1]}, "exclude": exclude})
    assert needle in str(err.value)


def test_exclude_of_every_cell_is_an_error():
    spec = parse_grid({"name": "g", "settings": {"dataset": "digits"},
                       "factors": {"seed": [0, 1]}, "exclude": [{"seed": [0, 1]}]})
    with pytest.raises(ConfigError, match="'exclude' leaves out every cell"):
        expand(spec)


def test_exclude_follows_overrides():
    from stdp_bench.overrides import apply_overrides

    spec = parse_grid({"name": "g", "settings": {"dataset": "digits"},
                       "factors": {"n_neurons": [10, 20], "seed": [0, 1, 2]},
                       "exclude": [{"n_neurons": 20, "seed": [1, 2]}]})
    levels = [(c.config.n_neurons, c.config.seed) for c in expand(apply_overrides(spec, []))]
    assert levels == [(10, 0), (10, 1), (10, 2), (20, 0)]
    pinned = apply_overrides(spec, ["n_neurons=20"])
    assert [c.config.seed for c in expand(pinned)] == [0]
    assert [c.config.seed for c in expand(apply_overrides(spec, ["n_neurons=10"]))] == [0, 1, 2]
    assert [c.config.seed for c in expand(apply_overrides(spec, ["seed=[0,1]"]))] == [0, 1, 0]
    with pytest.raises(ConfigError, match="'exclude' leaves out every cell"):
        expand(apply_overrides(spec, ["n_neurons=20", "seed=1"]))


def test_tuning_cells_keep_a_combination_with_some_seeds_left():
    from types import SimpleNamespace

    from stdp_bench.tuner import final_cells, tuning_cells

    spec = parse_grid({"name": "g", "settings": {"dataset": "digits"},
                       "factors": {"n_neurons": [10, 20, 30], "seed": [0, 1, 2]},
                       "exclude": [{"n_neurons": 20, "seed": [1, 2]},
                                   {"n_neurons": 30, "seed": [0, 1, 2]}]})
    cells = tuning_cells(spec)
    assert [c.config.n_neurons for c in cells] == [10, 20]
    # The final runs keep to the grid's seeds per combination.
    studies = {str(k): (None, c) for k, c in enumerate(cells)}
    best = {str(k): (SimpleNamespace(params={}), None) for k in range(len(cells))}
    finals = final_cells(spec, studies, best, None)
    kept = sorted({(c.config.n_neurons, c.config.seed) for c in finals})
    assert kept == [(10, 0), (10, 1), (10, 2), (20, 0)]
