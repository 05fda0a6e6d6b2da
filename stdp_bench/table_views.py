"""Views of a tidy results table for the command line and the report page: which
columns to group by, the rows a ``--where`` keeps, and the summary over seeds.

>>> import pandas as pd
>>> t = pd.DataFrame({"seed": [0, 1], "rule": ["stdp", "none"], "n_neurons": [100, 400]})
>>> group_columns(["rule", "seed"], t)
['rule']
>>> filter_rows(t, ["n_neurons=100.0"])["rule"].tolist()
['stdp']
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from stdp_bench.config import ConfigError
from stdp_bench.results import compare_stages, summarize


def group_columns(factors: Sequence[str], table: pd.DataFrame) -> list[str]:
    """The factors to group by (not seed or stage); where the input varies (dataset,
    colour, preprocessing), its shape and class count follow them."""
    by = [f for f in factors if f not in ("seed", "stage") and f in table.columns]
    if any(f in by for f in ("dataset", "color", "preprocess")):
        by += [c for c in ("input_shape", "n_classes") if c in table.columns]
    return by


def filter_rows(table: pd.DataFrame, where: Sequence[str]) -> pd.DataFrame:
    """Rows matching every ``KEY=VALUE[,VALUE...]`` (compared as text; 100 matches 100.0)."""
    for item in where:
        if "=" not in item:
            raise ConfigError(f"--where '{item}' must look like KEY=VALUE")
        key, values = (part.strip() for part in item.split("=", 1))
        if key not in table.columns:
            raise ConfigError(f"--where {item}: no column '{key}'")
        wanted = set()
        for value in values.split(","):
            value = value.strip()
            wanted.add(value)
            try:
                number = float(value)
                wanted.update({str(number), str(int(number))} if number == int(number)
                              else {str(number)})
            except ValueError:
                pass
        table = table[table[key].map(lambda v: str(v)).isin(wanted)]
    if table.empty:
        raise ConfigError(f"no rows match {' and '.join(where)}")
    return table


def summary_table(table: pd.DataFrame, by: Sequence[str], metric: str = "accuracy"
                  ) -> pd.DataFrame:
    """``metric`` over seeds per group of ``by``, best first: for a tuned grid's table
    (a ``stage`` column not grouped by) default and tuned side by side, else the mean
    and 95% interval."""
    if "stage" in table.columns and "stage" not in by:
        return compare_stages(table, list(by), metric)
    return summarize(table, list(by), metric)
