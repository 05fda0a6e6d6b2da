"""Command-line overrides (``--set KEY=VALUE``) applied to a validated grid."""

from __future__ import annotations

import tomllib
from typing import Any

from stdp_bench.config import ConfigError, check_value
from stdp_bench.grid_file import GridSpec

__all__ = ["apply_overrides"]


def _parse_scalar(text: str) -> Any:
    """Read an override value the way TOML would (numbers, booleans, strings, lists)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # bare word, e.g. rule=none


def apply_overrides(grid: GridSpec, overrides: list[str]) -> GridSpec:
    """Apply ``KEY=VALUE`` overrides: a setting is replaced, a factor is pinned to levels.

    A list value (``seed=[0,1,2]``) makes the key a factor with those levels.
    """
    settings = dict(grid.settings)
    factors = dict(grid.factors)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set '{item}' must look like KEY=VALUE")
        key, text = (s.strip() for s in item.split("=", 1))
        value = _parse_scalar(text)
        where = f"--set {item}"
        if isinstance(value, list):
            if not value:
                raise ConfigError(f"{where}: '{key}' = [] has no levels; a factor needs at "
                                  "least one")
            factors[key] = tuple(check_value(key, v, where) for v in value)
            settings.pop(key, None)
        else:
            settings[key] = check_value(key, value, where)
            factors.pop(key, None)
    return GridSpec(name=grid.name, description=grid.description, settings=settings,
                    factors=factors, search=grid.search, plugins=grid.plugins,
                    exclude=_restrict_exclude(grid.exclude, settings, factors))


def _restrict_exclude(exclude: tuple[dict[str, tuple[Any, ...]], ...],
                      settings: dict[str, Any], factors: dict[str, tuple[Any, ...]]
                      ) -> tuple[dict[str, tuple[Any, ...]], ...]:
    """``exclude`` entries after overrides: a condition on a factor now pinned to one
    value holds or fails outright; an entry with a failed condition can never match."""
    kept = []
    for entry in exclude:
        out: dict[str, tuple[Any, ...]] = {}
        for key, levels in entry.items():
            if key in factors:
                out[key] = tuple(v for v in levels if v in factors[key])
                if not out[key]:
                    break
            elif settings.get(key) not in levels:
                break
        else:
            kept.append(out)
    return tuple(kept)
