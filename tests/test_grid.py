"""Grid expansion: counts, stable ids, grouping into replica jobs."""

from stdp_bench.config import grids_dir, load_grid, parse_grid
from stdp_bench.grid import expand, group_jobs


def test_shipped_grids_expand_to_documented_counts():
    counts = {p.stem: len(expand(load_grid(p))) for p in grids_dir().glob("*.toml")}
    assert counts["factorial"] == 135  # 45 cells x 3 seeds
    assert counts["dc2015"] == 12
    assert counts["dc2015_triplet"] == 12
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
