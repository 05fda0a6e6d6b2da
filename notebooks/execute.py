"""Run the study notebooks top to bottom, in place, so that their committed copies carry
their outputs: ``python notebooks/execute.py`` (needs the test extras, for nbclient and
ipykernel). They read the committed results under ``results/``; nothing is simulated.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = ["factorial_study.ipynb", "tuned_study.ipynb"]


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(nb, path)
    print(f"{path.name}: {path.stat().st_size / 1e6:.2f} MB with outputs")


if __name__ == "__main__":
    for name in sys.argv[1:] or NOTEBOOKS:
        execute(HERE / name)
