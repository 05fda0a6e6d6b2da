"""Compose the fused kernel for one combination of levels, compiled and cached by numba.

:func:`kernel_for` writes a copy of :mod:`stdp_bench.engine.kernel` whose ``levels``
block binds the combination's steps, imports it, and returns the module. The copy's
name is a hash of its source and of every source it composes (the level package, the
levels' modules and numba's version), so numba's on-disk cache (keyed by file) can never
serve a kernel built from other sources. Copies live in the user cache
(``STDP_BENCH_CACHE``, else ``$XDG_CACHE_HOME/stdp_bench`` or ``~/.cache/stdp_bench``,
else the temporary folder: :func:`cache_dir`), never in the working directory; the first
use of a combination on a machine compiles it (seconds), later processes load it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

import numba

# Imported before any composed kernel: it teaches numba to compile level steps.
from stdp_bench.engine import numba_support
from stdp_bench.levels import registry
from stdp_bench.levels.spec import ConfigError, Level

# Templates by name: Diehl & Cook networks, and conv / local feature maps.
_TEMPLATES = {"dense": Path(__file__).with_name("kernel.py"),
              "maps": Path(__file__).with_name("map_kernel.py"),
              "stack": Path(__file__).with_name("stack_kernel.py")}
_BEGIN = "# --- levels: begin (kernel_build replaces this block) ---\n"
_END = "# --- levels: end ---\n"
_LEVELS_DIR = Path(registry.__file__).parent
_LOCK = threading.Lock()
_BUILT: dict[tuple[str, str, str, str], ModuleType] = {}


def cache_dir() -> Path:
    """Where composed kernels (and numba's cache of them) are written: the first of
    ``$STDP_BENCH_CACHE``, ``$XDG_CACHE_HOME/stdp_bench``, ``~/.cache/stdp_bench`` and
    the system's temporary folder that can be written (read-only homes exist on CI)."""
    root = os.environ.get("STDP_BENCH_CACHE")
    if root:
        candidates = [Path(root)]
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        candidates = [Path(base) / "stdp_bench",
                      Path(tempfile.gettempdir()) / f"stdp_bench-{os.getuid()}"]
    for folder in candidates:
        try:
            (folder / "kernels").mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder / "kernels", os.W_OK):
            return folder / "kernels"
    raise OSError(f"no writable folder for compiled kernels among "
                  f"{', '.join(str(c) for c in candidates)}; set STDP_BENCH_CACHE")


def _require_kernel(level: Level, template: str) -> Level:
    if not level.kernel:
        raise ConfigError(f"{level.axis} {level.name!r} has no kernel steps (module "
                          f"{level.module}); run it with --engine torch")
    if level.axis == "neuron":
        missing = [f for f in registry.NEURON_STEPS[template]
                   if not hasattr(registry.module(level), f)]
        if missing:
            raise ConfigError(f"neuron {level.name!r} has no {', '.join(missing)} (module "
                              f"{level.module}), which the {template} kernel needs")
    return level


def _map_bindings(encoder: Level, neuron: Level, rule: Level) -> str:
    # The encoder's events come from the dense kernel composed for it (the same code).
    events = kernel_for(encoder.name, "if", "none").__name__
    return "\n".join([
        f"from {events} import gen_events",
        f"from {neuron.module} import kernel_reset as neuron_reset",
        f"from {neuron.module} import kernel_integrate_all as neuron_integrate_all",
        f"from {neuron.module} import kernel_fire as neuron_fire",
        f"from {rule.module} import kernel_update as rule_update",
        "",
        f"NEURON_STATE = {len(neuron.state)}",
        f"NEURON_RESTS = {neuron.rests}",
        f"RULE_PLASTIC = {rule.plastic}",
        f"RULE_TRACES = {len(rule.traces)}",
        "",
    ])


def _stack_bindings(encoder: Level, neuron: Level, rule: Level) -> str:
    # Stacks have one neuron model (SpykeTorch's one-spike integrate-and-fire units):
    # only the encoder's events and the rule's update are bound.
    events = kernel_for(encoder.name, "if", "none").__name__
    return "\n".join([
        f"from {events} import gen_events",
        f"from {rule.module} import kernel_update as rule_update",
        "",
        f"RULE_PLASTIC = {rule.plastic}",
        "",
    ])


def _bindings(encoder: Level, neuron: Level, rule: Level) -> str:
    drive = (f"from {rule.module} import kernel_drive as rule_drive" if rule.supervised
             else "from stdp_bench.engine.numba_support import no_drive as rule_drive")
    return "\n".join([
        f"from {encoder.module} import kernel_encode as encode",
        f"from {neuron.module} import kernel_reset as neuron_reset",
        f"from {neuron.module} import kernel_step as neuron_step",
        f"from {rule.module} import kernel_update as rule_update",
        drive,
        "",
        f"NEURON_STATE = {len(neuron.state)}",
        f"NEURON_ONE_SPIKE = {neuron.one_spike}",
        f"RULE_PLASTIC = {rule.plastic}",
        f"RULE_SUPERVISED = {rule.supervised}",
        f"RULE_TRACES = {len(rule.traces)}",
        "",
    ])


def _sources_digest(levels: tuple[Level, ...], source: str) -> str:
    h = hashlib.sha256(source.encode())
    h.update(numba.__version__.encode())
    files = sorted(_LEVELS_DIR.rglob("*.py"))
    files += [Path(registry.module(lv).__file__) for lv in levels]
    files.append(Path(numba_support.__file__))
    for path in files:
        h.update(str(path.name).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:20]


def kernel_for(encoder: str, neuron: str, rule: str, template: str = "dense") -> ModuleType:
    """The kernel module of one (encoder, neuron, rule) combination, from ``template``
    (``dense``: :mod:`stdp_bench.engine.kernel`; ``maps``:
    :mod:`stdp_bench.engine.map_kernel`).

    >>> k = kernel_for("poisson", "lif", "stdp")
    >>> k.RULE_PLASTIC, k.NEURON_ONE_SPIKE, hasattr(k, "train_replica")
    (True, False, True)
    >>> hasattr(kernel_for("poisson", "lif", "stdp", "maps"), "train_maps")
    True
    """
    key = (encoder, neuron, rule, template)
    with _LOCK:
        if key in _BUILT:
            return _BUILT[key]
    levels = (_require_kernel(registry.get("encoder", encoder), template),
              _require_kernel(registry.get("neuron", neuron), template),
              _require_kernel(registry.get("rule", rule), template))
    # Outside the lock: the map bindings compose a dense kernel first.
    bindings = {"maps": _map_bindings, "stack": _stack_bindings}.get(template, _bindings)(
        *levels)
    with _LOCK:
        if key in _BUILT:
            return _BUILT[key]
        text = _TEMPLATES[template].read_text()
        head, rest = text.split(_BEGIN)
        _, tail = rest.split(_END)
        source = (f"# Composed by stdp_bench.engine.kernel_build from {template} for "
                  f"encoder={encoder}, neuron={neuron}, rule={rule}.\n" + head + bindings
                  + tail)
        digest = _sources_digest(levels, source)
        folder = cache_dir()
        path = folder / f"kernel_{digest}.py"
        if not path.exists():
            # Atomic: a concurrent process sees the whole file or none.
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                fh.write(source)
            os.replace(tmp, path)
        name = f"stdp_bench_kernel_{digest}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _BUILT[key] = module
        return module


def encode_dense(X, samples, encoders, keys, rates, seeds, dts, T: int, phase: int,
                 n_in: int):
    """Dense input trains ``[T, B, n_in]`` (bool) and input spike counts ``[B]`` of rows b:
    sample ``X[samples[b]]`` (an image, or a packed recording) under encoder
    ``encoders[b]`` at ``rates[b]``, from the counter-based stream of ``seeds[b]`` at key
    ``keys[b]`` (see ``kernel.encode_dense``).

    The torch engines get their spike trains here, so they see the fused kernel's.
    """
    import numpy as np

    B = len(samples)
    out = np.zeros((T, B, n_in), np.bool_)
    ins = np.zeros(B, np.int64)
    encoders = np.asarray(encoders)
    for name in dict.fromkeys(encoders.tolist()):
        rows = np.flatnonzero(encoders == name)
        sub = np.zeros((T, len(rows), n_in), np.bool_)
        sub_ins = np.zeros(len(rows), np.int64)
        # Any neuron and rule with kernel steps will do: only the encoder is compiled.
        kernel_for(name, "if", "none").encode_dense(
            X, np.ascontiguousarray(samples[rows], np.int64),
            np.ascontiguousarray(keys[rows], np.int64),
            np.ascontiguousarray(rates[rows], np.float64),
            np.ascontiguousarray(seeds[rows], np.uint64),
            np.ascontiguousarray(dts[rows], np.float32), T, phase, sub, sub_ins)
        out[:, rows] = sub
        ins[rows] = sub_ins
    return out, ins
