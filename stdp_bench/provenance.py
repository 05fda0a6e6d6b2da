"""What a record says produced it: package versions and the checkout's commit.

The driver pins the commit once as a run starts (:func:`checkout_commit`) and passes it
to every job (``stdp_bench.backends.JobContext``): a worker, local or on another Ray
node, names the code the run loaded, not the checkout as it is when the job ends.
Imports nothing of stdp_bench, so every layer may use it.

>>> sorted(versions())[:3]
['bindsnet', 'numba', 'numpy']
"""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions of the packages that decide the numbers."""
    out = {"python": platform.python_version()}
    for pkg in ("stdp_bench", "bindsnet", "torch", "numpy", "numba", "scikit-learn",
                "snntorch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def checkout_commit() -> str | None:
    """Commit of the stdp_bench checkout, with '-dirty' when it has local changes; None
    outside a git checkout (an installed wheel) or without git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=10
                               ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
