"""``stdp-bench report``: one self-contained HTML page per set of results folders."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stdp_bench.cli import app

GRID = """
name = "report_demo"
[settings]
dataset = "digits"
n_neurons = 10
time = 30
n_train = 40
n_label = 60
n_test = 60
intensity_hz = 256.0
norm = 10.0
[factors]
neuron = ["lif", "adaptive"]
seed = [0, 1]
"""


class _Page(HTMLParser):
    """The page's images, cell sections and table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.cells = 0
        self.summary_rows = 0
        self._in_summary = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "details":
            self.cells += 1
        elif tag == "table":
            self._in_summary = "summary" in (a.get("class") or "")
        elif tag == "tr" and self._in_summary:
            self.summary_rows += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_summary = False


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    grid = tmp / "g.toml"
    grid.write_text(GRID)
    res = CliRunner().invoke(app, ["run", str(grid), "--out", str(tmp / "r"), "--quiet"])
    assert res.exit_code == 0, res.output
    return tmp / "r"


def test_report_is_one_page_with_every_cell_and_embedded_figures(run_dir, tmp_path):
    out = tmp_path / "page.html"
    res = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert re.fullmatch(rf"report: {re.escape(str(out))} \(\d+\.\d MB\)\n", res.output)
    page = _Page()
    text = out.read_text()
    page.feed(text)
    assert page.cells == 1 + 4  # the grid file; 2 neurons x 2 seeds
    # Heatmap and confusion matrix of the folder, and per cell its receptive fields and,
    # for the adaptive cells, their thresholds: all inside the file.
    assert len(page.images) >= 2 + 4 and all(
        src.startswith("data:image/png;base64,") for src in page.images)
    assert text.count('alt="threshold distribution"') == 2
    assert not re.search(r'(?:src|href)="(?:https?:|//)', text)  # nothing from outside
    assert page.summary_rows == 1 + 2 * 4  # header; 2 neurons x 4 readouts
    assert "report_demo" in text and "kernel" in text  # the grid and its engine
    # The folder is left as it was: the page's figures are drawn elsewhere.
    assert not (run_dir / "figures").exists()


def test_report_escapes_what_records_say(run_dir, tmp_path):
    # A cell's error text is shown as text, never as markup.
    rec = sorted((run_dir / "cells").glob("*.json"))[0]
    saved = rec.read_text()
    data = json.loads(saved)
    data["status"], data["error"] = "error", "boom <script>alert(1)</script>"
    rec.write_text(json.dumps(data))
    try:
        out = tmp_path / "page.html"
        res = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(out)])
        assert res.exit_code == 0, res.output
        text = out.read_text()
        assert "boom &lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert "<script>alert" not in text
        assert '<span class="status-error">1 error</span>' in text
    finally:
        rec.write_text(saved)


def test_report_names_a_folder_that_is_not_a_results_folder(tmp_path):
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 1
    assert f"{tmp_path} has no cells/ folder: not a results folder" in res.output
