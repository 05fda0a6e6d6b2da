"""The throughput benchmark, tiny and offline (digits)."""

import json
import math

import pytest

from typer.testing import CliRunner

from stdp_bench.bench import RESULT_KEYS, bench_cells, run_bench
from stdp_bench.cli import app

REQUIRED = ("device", "stock_train_sps", "train_sps_r1", "train_sps_r45", "train_ratio_r1",
            "train_ratio_r45", "stock_eval_sps", "eval_sps", "eval_ratio", "peak_rss_mb")


def _check(result: dict) -> None:
    for key in REQUIRED:
        assert key in result, key
    assert set(result) == set(RESULT_KEYS)
    assert isinstance(result["device"], str) and result["device"].startswith("cpu")
    assert result["engine"] == "kernel"
    for key, value in result.items():
        if key not in ("device", "engine"):
            assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, key


@pytest.mark.slow
def test_run_bench_digits():
    result = run_bench(dataset="digits", device="cpu", replicas=3, samples=20, samples_r1=20,
                       eval_samples=20, stock_samples=3)
    _check(result)
    assert result["replicas"] == 3 and result["samples"] == 20
    assert result["time_steps"] == 250


def test_bench_cells_are_the_factorial_grid():
    cells = bench_cells(45)
    assert len({c.cell_id() for c in cells}) == 45
    assert {c.encoder for c in cells} == {"poisson", "bernoulli", "rank_order"}
    more = bench_cells(47, "digits")
    assert len({c.cell_id() for c in more}) == 47 and more[0].dataset == "digits"


def test_cli_bench_last_line_is_json():
    res = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--device", "cpu", "--replicas", "2",
                                   "--samples", "10", "--samples-r1", "10",
                                   "--eval-samples", "10", "--stock-samples", "2"])
    assert res.exit_code == 0, res.output
    last = res.output.strip().splitlines()[-1]
    _check(json.loads(last))
    assert "net-samples/s" in res.output


def test_cli_bench_rejects_bad_device():
    res = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--device", "tpu"])
    assert res.exit_code == 1
