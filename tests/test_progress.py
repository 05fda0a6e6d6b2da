"""Progress: a tqdm bar on a terminal, plain lines every few percent elsewhere."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest
from tqdm import tqdm

from stdp_bench.progress import LineProgress, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_redrawn_in_place():
    stream = Terminal()
    bar = progress_bar(100, "grid", stream=stream)
    assert isinstance(bar, tqdm)
    bar.update(50)
    bar.close()
    assert "\r" in stream.getvalue() and "50/100" in stream.getvalue()


def test_elsewhere_a_line_every_five_percent_and_one_at_the_end():
    ticks = iter(range(100))
    stream = io.StringIO()
    bar = LineProgress(1000, "grid", stream=stream, clock=lambda: next(ticks))
    for _ in range(30):
        bar.update(10)  # 1% each: lines at 5, 10, ..., 30%
    bar.set_postfix_str("2/4 cells")
    bar.close()
    assert stream.getvalue().splitlines() == [
        "grid: 5% (50/1000 samples) 1 s elapsed",
        "grid: 10% (100/1000 samples) 2 s elapsed",
        "grid: 15% (150/1000 samples) 3 s elapsed",
        "grid: 20% (200/1000 samples) 4 s elapsed",
        "grid: 25% (250/1000 samples) 5 s elapsed",
        "grid: 30% (300/1000 samples) 6 s elapsed",
        "grid: 30% (300/1000 samples, 2/4 cells) 7 s elapsed",  # close: the cells moved
    ]


def test_a_large_step_prints_one_line_and_nothing_prints_idle_or_disabled():
    stream = io.StringIO()
    bar = LineProgress(100, "grid", stream=stream, clock=lambda: 0.0)
    bar.update(100)
    bar.close()  # nothing moved since the last line
    assert stream.getvalue() == "grid: 100% (100/100 samples) 0 s elapsed\n"
    idle = io.StringIO()
    bar = LineProgress(100, "grid", stream=idle, clock=lambda: 0.0)
    bar.set_postfix_str("0/4 cells")
    bar.close()  # a run stopped before any sample: no "0%" line
    assert idle.getvalue() == ""
    quiet = io.StringIO()
    bar = progress_bar(100, "grid", enabled=False, stream=quiet)
    bar.update(100)
    bar.close()
    assert quiet.getvalue() == ""


GRID = """
name = "lines"
[settings]
dataset = "digits"
n_neurons = 10
time = 40
n_train = 500
n_label = 100
n_test = 100
intensity_hz = 256.0
norm = 10.0
[factors]
seed = [0, 1]
"""


@pytest.mark.slow
def test_a_run_whose_output_is_a_pipe_prints_plain_lines(tmp_path):
    grid = tmp_path / "lines.toml"
    grid.write_text(GRID)
    res = subprocess.run([sys.executable, "-m", "stdp_bench", "run", str(grid), "--out",
                          str(tmp_path / "res")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "\r" not in res.stderr + res.stdout
    lines = [m.groups() for m in re.finditer(
        r"^lines: (\d+)% \((\d+)/1400 samples, (\d)/2 cells\) \d+ s elapsed$", res.stderr,
        re.MULTILINE)]
    # One job of 2 replicas: 5 training chunks of 100 samples, labelling, test; the
    # last line comes as the job's cells are written.
    assert [int(pct) for pct, _, _ in lines] == [14, 28, 42, 57, 71, 85, 100, 100]
    assert [int(cells) for _, _, cells in lines] == [0] * 7 + [2]
    assert len(lines) == len(res.stderr.splitlines()), res.stderr  # nothing else
