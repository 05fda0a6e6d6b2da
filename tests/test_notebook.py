"""The study notebook runs top to bottom (nbclient), on the fixture and on the study."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "factorial_study.ipynb"
SOURCES = {
    "fixture": ROOT / "tests" / "fixtures" / "factorial_small.parquet",
    "committed-study": ROOT / "results" / "factorial",
}


@pytest.mark.parametrize("name", list(SOURCES))
def test_notebook_executes(name, monkeypatch):
    source = SOURCES[name]
    assert source.exists(), f"{source} is missing"
    monkeypatch.setenv("STDP_BENCH_STUDY", str(source))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "\n".join(str(o.get("text", "")) for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))
    assert "best cell:" in text and "factors ranked by eta squared:" in text
    images = sum("image/png" in o.get("data", {}) for c in nb.cells
                 if c.cell_type == "code" for o in c.get("outputs", []))
    assert images >= 3  # two heatmaps and the scatter
