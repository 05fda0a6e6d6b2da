"""The study notebooks run top to bottom (nbclient), and their committed copies carry
their outputs (``python notebooks/execute.py`` writes them)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
STUDY = NOTEBOOKS / "factorial_study.ipynb"
TUNED = NOTEBOOKS / "tuned_study.ipynb"
SOURCES = {
    "fixture": ROOT / "tests" / "fixtures" / "factorial_small.parquet",
    "committed-study": ROOT / "results" / "factorial",
}


def _execute(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/html", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells
               if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.parametrize("name", list(SOURCES))
def test_study_notebook_executes(name, monkeypatch):
    source = SOURCES[name]
    assert source.exists(), f"{source} is missing"
    monkeypatch.setenv("STDP_BENCH_STUDY", str(source))
    nb = _execute(STUDY)
    text = _text(nb)
    assert "best cell:" in text and "factors ranked by eta squared:" in text
    assert "two-way ANOVA" in text and "PR(>F)" in text  # statsmodels' anova_lm table
    if name == "committed-study":  # 3 seeds: the three-way interaction is tested too
        assert "3-way ANOVA, encoder x neuron x rule" in text
        assert "C(encoder):C(neuron):C(rule)" in text
    assert _images(nb) >= 3  # two heatmaps and the scatter


def test_tuned_notebook_executes():
    text = _text(_execute(TUNED))
    assert "median tuned / default by rule" in text
    assert "settings ranked by how far tuning moved them" in text


@pytest.mark.parametrize("path", [STUDY, TUNED], ids=lambda p: p.stem)
def test_committed_notebooks_carry_their_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs") for c in code), "run: python notebooks/execute.py"
    assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"])
    assert _images(nb) >= 2 and path.stat().st_size < 2e6
