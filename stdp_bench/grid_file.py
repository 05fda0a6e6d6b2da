"""Grid files: reading and validating the TOML that declares a grid.

A grid file has a ``name``, an optional ``description``, a ``[settings]`` table of fixed
values and a ``[factors]`` table mapping setting names to lists of levels (plus optional
``plugins``, ``exclude`` and ``[search]``). Every key must be a setting
(:data:`stdp_bench.config.SETTINGS` or a level's); categorical settings only accept the
levels their registry lists. Errors name the bad key, the bad value and what is allowed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from stdp_bench.config import ConfigError, check_value
from stdp_bench.levels import registry

__all__ = ["GridSpec", "grids_dir", "load_grid", "parse_exclude", "parse_grid",
           "resolve_grid_path"]


@dataclass(frozen=True)
class GridSpec:
    """A validated grid: fixed settings plus factors with their levels (in file order)."""

    name: str
    description: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    factors: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # The ``[search]`` table as written; ``stdp-bench tune`` validates it
    # (:func:`stdp_bench.search_space.parse_search`), ``run`` does not read it.
    search: dict[str, Any] = field(default_factory=dict)
    # Level modules imported before validation (``plugins = ["module"]``).
    plugins: tuple[str, ...] = ()
    # Combinations left out of the product: each entry maps factors to the levels it
    # drops (``exclude = [{n_neurons = 6400, seed = [1, 2]}]``).
    exclude: tuple[dict[str, tuple[Any, ...]], ...] = ()

    def excludes(self, levels: dict[str, Any]) -> bool:
        """Whether a cell with these factor levels is left out by ``exclude``."""
        return any(all(levels[k] in vs for k, vs in entry.items()) for entry in self.exclude)

    def to_toml_dict(self) -> dict[str, Any]:
        """The grid as it would be written back to TOML."""
        out = {"name": self.name, "description": self.description,
               "settings": dict(self.settings),
               "factors": {k: list(v) for k, v in self.factors.items()}}
        if self.search:
            out["search"] = self.search
        if self.plugins:
            out["plugins"] = list(self.plugins)
        if self.exclude:
            out["exclude"] = [{k: list(v) for k, v in e.items()} for e in self.exclude]
        return out


def parse_grid(data: dict[str, Any], source: str = "grid") -> GridSpec:
    """Validate a grid read from TOML (or built in code)."""
    allowed_top = {"name", "description", "plugins", "settings", "factors", "exclude",
                   "search"}
    for key in data:
        if key not in allowed_top:
            raise ConfigError(
                f"{source}: unknown top-level key '{key}'; allowed: {', '.join(sorted(allowed_top))}")
    name = data.get("name")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        raise ConfigError(f"{source}: 'name' = {name!r} must be a non-empty string without "
                          "spaces or slashes")
    plugins = data.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(m, str) and m for m in plugins):
        raise ConfigError(f"{source}: 'plugins' = {plugins!r} must be a list of module names")
    # Before the settings: a plugin's levels and settings must be known to validate them.
    registry.load_plugins(plugins, where=f"{source} plugins")
    settings_raw = data.get("settings", {})
    factors_raw = data.get("factors", {})
    if not isinstance(settings_raw, dict):
        raise ConfigError(f"{source}: 'settings' must be a table")
    if not isinstance(factors_raw, dict):
        raise ConfigError(f"{source}: 'factors' must be a table")
    search_raw = data.get("search", {})
    if not isinstance(search_raw, dict):
        raise ConfigError(f"{source}: 'search' must be a table")
    settings = {k: check_value(k, v, f"{source} [settings]") for k, v in settings_raw.items()}
    factors: dict[str, tuple[Any, ...]] = {}
    for key, levels in factors_raw.items():
        if not isinstance(levels, list) or not levels:
            raise ConfigError(f"{source} [factors]: '{key}' = {levels!r} must be a non-empty list")
        checked = tuple(check_value(key, v, f"{source} [factors]") for v in levels)
        if len(set(checked)) != len(checked):
            raise ConfigError(f"{source} [factors]: '{key}' = {levels!r} repeats a level")
        if key in settings:
            raise ConfigError(f"{source}: '{key}' is both a setting and a factor")
        factors[key] = checked
    return GridSpec(name=name, description=str(data.get("description", "")),
                    settings=settings, factors=factors, search=search_raw,
                    plugins=tuple(plugins),
                    exclude=parse_exclude(data.get("exclude", []), factors, source))


def parse_exclude(raw: Any, factors: dict[str, tuple[Any, ...]], source: str = "grid"
                  ) -> tuple[dict[str, tuple[Any, ...]], ...]:
    """Validate ``exclude = [{factor = level or [levels], ...}, ...]``: each entry drops
    the cells whose levels match it on every factor it names.

    >>> parse_exclude([{"n_neurons": 6400, "seed": [1, 2]}],
    ...               {"n_neurons": (1600, 6400), "seed": (0, 1, 2)})
    ({'n_neurons': (6400,), 'seed': (1, 2)},)
    >>> parse_exclude([{"seed": 3}], {"seed": (0, 1, 2)})
    Traceback (most recent call last):
    ...
    stdp_bench.levels.spec.ConfigError: grid exclude[0]: seed = 3 is not a level of the factor; levels: 0, 1, 2
    """
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: 'exclude' = {raw!r} must be a list of tables")
    entries = []
    for k, entry in enumerate(raw):
        where = f"{source} exclude[{k}]"
        if not isinstance(entry, dict) or not entry:
            raise ConfigError(f"{where}: {entry!r} must be a non-empty table of factor = "
                              "level (or list of levels)")
        checked = {}
        for key, value in entry.items():
            if key not in factors:
                raise ConfigError(f"{where}: '{key}' is not a factor; factors: "
                                  f"{', '.join(factors) or '(none)'}")
            values = value if isinstance(value, list) else [value]
            levels = factors[key]
            for v in values:
                if check_value(key, v, where) not in levels:
                    raise ConfigError(f"{where}: {key} = {v!r} is not a level of the factor; "
                                      f"levels: {', '.join(map(str, levels))}")
            checked[key] = tuple(check_value(key, v, where) for v in values)
        entries.append(checked)
    return tuple(entries)


def grids_dir() -> Path:
    """Folder of the grid files shipped with the package."""
    return Path(str(resources.files("stdp_bench") / "grids"))


def resolve_grid_path(grid: str) -> Path:
    """A path, or the name of a shipped grid (``smoke``, ``classic``, ...)."""
    path = Path(grid)
    if path.exists():
        return path
    shipped = grids_dir() / f"{grid.removesuffix('.toml')}.toml"
    if shipped.exists():
        return shipped
    names = ", ".join(sorted(p.stem for p in grids_dir().glob("*.toml")))
    raise ConfigError(f"grid '{grid}' is neither a file nor a shipped grid ({names})")


def load_grid(path: str | Path) -> GridSpec:
    """Read and validate a grid TOML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    return parse_grid(data, source=str(path))
