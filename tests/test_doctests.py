"""The runnable examples in docstrings (CI runs them, so they cannot drift)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import stdp_bench


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(stdp_bench.__path__, "stdp_bench."):
        spec = importlib.util.find_spec(info.name)
        if spec and spec.origin and spec.origin.endswith(".py"):
            with open(spec.origin, encoding="utf-8") as fh:
                if ">>>" in fh.read():
                    names.append(info.name)
    return names


MODULES = _modules_with_examples()


def test_examples_are_found():
    assert {"stdp_bench.search_space", "stdp_bench.tuner", "stdp_bench.trial_jobs"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
