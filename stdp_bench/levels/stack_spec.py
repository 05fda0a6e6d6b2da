"""Layer stacks (architecture ``stack``): the layers a grid file declares, validated.

A stack is Kheradpisheh et al. (2018)'s kind of network as SpykeTorch runs it: layers of
non-leaky integrate-and-fire maps that fire at most once per image, each fed the first
spikes of the layer below, trained greedily one conv layer after the other. A grid
declares the layers under ``[settings]`` as a list of tables::

    layers = [
      {kind = "conv", maps = 32, kernel = 5, pad = 2, threshold = 10.0, winners = 5,
       radius = 2, epochs = 2, a_plus = 0.004, a_plus_max = 0.15, double_every = 500},
      {kind = "pool", kernel = 2, stride = 2, pad = 1},
    ]

and the cell keeps them as one canonical string (hashable, and what records, model files
and ``--set layers=...`` carry). Every key has a declaration below; a message names the
layer, the key, the value and what is allowed.

>>> spec = parse_layers([{"kind": "conv", "maps": 4, "kernel": 3},
...                      {"kind": "pool", "kernel": 2}], "grid")
>>> spec
'conv(maps=4,kernel=3);pool(kernel=2)'
>>> layers = stack_layers(spec)
>>> layers[0].threshold, layers[1].stride
(10.0, 2)
>>> parse_layers([{"kind": "conv", "maps": 0}], "grid")
Traceback (most recent call last):
...
stdp_bench.levels.spec.ConfigError: grid: layers[0] (conv): 'maps' = 0 must be at least 1
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from stdp_bench.levels.spec import ConfigError, Param

KINDS = ("conv", "pool")

# What each key accepts, and which layer kinds read it.
_KEYS: dict[str, tuple[Param, tuple[str, ...]]] = {
    p.name: (p, kinds) for p, kinds in [
        (Param("maps", 1, low=1, high=10_000, doc="feature maps"), ("conv",)),
        (Param("kernel", 1, low=1, high=64, doc="field (conv) or window (pool) side"),
         ("conv", "pool")),
        (Param("stride", 1, low=1, high=64,
               doc="step between fields (conv: 1; pool: the window)"), ("conv", "pool")),
        (Param("pad", 0, low=0, high=64, doc="never-firing inputs added on every side"),
         ("conv", "pool")),
        (Param("threshold", 10.0, low=0.0, doc="a map fires when its potential exceeds it"),
         ("conv",)),
        (Param("winners", 1, low=1, high=10_000,
               doc="maps that learn per image (k winners, the earliest first)"), ("conv",)),
        (Param("radius", 0, low=0, high=64,
               doc="a winner keeps every map within this many places from learning"),
         ("conv",)),
        (Param("epochs", 1, low=1, high=1000, doc="passes over the training set"), ("conv",)),
        (Param("a_plus", 0.004, low=0.0, doc="potentiation rate (the rule's nu_post)"),
         ("conv",)),
        (Param("a_minus_ratio", 0.75, low=0.0,
               doc="depression rate over potentiation rate (nu_pre = ratio * a_plus)"),
         ("conv",)),
        (Param("double_every", 0, low=0, high=10_000_000,
               doc="a_plus doubles every this many training images (0: never)"), ("conv",)),
        (Param("a_plus_max", 0.15, low=0.0, doc="the cap of the doubling"), ("conv",)),
        (Param("w_mean", 0.8, doc="mean of the normal initial weights"), ("conv",)),
        (Param("w_std", 0.05, low=0.0, doc="their standard deviation"), ("conv",)),
        (Param("inhibit_input", False,
               doc="while this layer learns, only the earliest map at each input place "
                   "passes its spike (SpykeTorch's layer-2 training)"), ("conv",)),
        (Param("rule", "", doc="this layer's rule (a rule level's name; default: the "
                               "cell's rule)"), ("conv",)),
        (Param("fire_at_end", False,
               doc="no threshold: every unit whose potential is positive after the last "
                   "step fires then (SpykeTorch's threshold None)"), ("conv",)),
        (Param("decide", False,
               doc="the last layer's maps are the classes' decision units, maps / classes "
                   "consecutive maps per class; its first spike (ties: the larger "
                   "potential, then the lower unit) decides (readout 'decision')"),
         ("conv",)),
        (Param("wmin", 0.0, doc="this layer's lower weight bound (default: the cell's "
                                "wmin)"), ("conv",)),
        (Param("wmax", 1.0, doc="this layer's upper weight bound (default: the cell's "
                                "wmax)"), ("conv",)),
    ]}


@dataclass(frozen=True)
class Layer:
    """One layer of a stack, with every key resolved."""

    kind: str
    maps: int = 1
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    threshold: float = 10.0
    winners: int = 1
    radius: int = 0
    epochs: int = 1
    a_plus: float = 0.004
    a_minus_ratio: float = 0.75
    double_every: int = 0
    a_plus_max: float = 0.15
    w_mean: float = 0.8
    w_std: float = 0.05
    inhibit_input: bool = False
    rule: str = ""
    fire_at_end: bool = False
    decide: bool = False
    wmin: float | None = None
    wmax: float | None = None

    def rates(self, position: int) -> tuple[float, float]:
        """(a+, a-) at this layer's 0-based training image ``position``: a+ doubles when
        ``position + 1`` reaches each multiple of ``double_every`` (SpykeTorch counts
        the image before it learns from it), up to ``a_plus_max``.

        >>> lay = Layer("conv", a_plus=0.004, double_every=500, a_plus_max=0.15)
        >>> [round(lay.rates(p)[0], 4) for p in (0, 498, 499, 999, 10**6)]
        [0.004, 0.004, 0.008, 0.016, 0.15]
        """
        a = self.a_plus
        if self.double_every:
            for _ in range((position + 1) // self.double_every):
                a = min(a * 2, self.a_plus_max)
                if a >= self.a_plus_max:
                    break
        return a, a * self.a_minus_ratio


_DEFAULT_STRIDE = {"conv": 1}  # a pool's stride defaults to its window


def parse_layers(value: Any, where: str) -> str:
    """``value`` (a list of tables, or the canonical string) validated, as the canonical
    string: each layer ``kind(key=value,...)`` with the keys it sets, ``;`` between."""
    if isinstance(value, str):
        value = _read(value, where)
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where}: 'layers' = {value!r} must be a non-empty list of "
                          "tables, each with a kind (conv or pool)")
    parts = []
    for n, table in enumerate(value):
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: layers[{n}] = {table!r} must be a table")
        kind = table.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"{where}: layers[{n}]: 'kind' = {kind!r} is not allowed; "
                              f"allowed: {', '.join(KINDS)}")
        here = f"{where}: layers[{n}] ({kind})"
        keys = []
        for key, raw in table.items():
            if key == "kind":
                continue
            declared = _KEYS.get(key)
            allowed = [k for k, (_, kinds) in _KEYS.items() if kind in kinds]
            if declared is None or kind not in declared[1]:
                raise ConfigError(f"{here}: unknown key '{key}'; allowed: "
                                  f"kind, {', '.join(allowed)}")
            keys.append(f"{key}={_text(declared[0].check(raw, here))}")
        parts.append(f"{kind}({','.join(keys)})")
    spec = ";".join(parts)
    _check_stack(stack_layers(spec), where)
    return spec


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return v if isinstance(v, str) else repr(v)


def _read(text: str, where: str) -> list[dict[str, Any]]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        kind, _, rest = part.partition("(")
        table: dict[str, Any] = {"kind": kind.strip()}
        for item in filter(None, rest.rstrip(")").split(",")):
            key, _, raw = item.partition("=")
            raw = raw.strip()
            val: Any
            if raw in ("true", "false"):
                val = raw == "true"
            elif raw.isidentifier():
                val = raw  # a name (a layer's rule)
            else:
                try:
                    val = float(raw) if any(c in raw for c in ".e") else int(raw)
                except ValueError:
                    raise ConfigError(f"{where}: layers: '{item}' is not key=number, "
                                      "key=true/false or key=name") from None
            table[key.strip()] = val
        out.append(table)
    return out


def stack_layers(spec: str) -> tuple[Layer, ...]:
    """The layers of a canonical spec string (:func:`parse_layers`' output)."""
    layers = []
    for table in _read(spec, "layers"):
        kind = table.pop("kind")
        if kind == "pool" and "stride" not in table:
            table["stride"] = table.get("kernel", 1)
        layers.append(Layer(kind, **table))
    return tuple(layers)


def _check_stack(layers: tuple[Layer, ...], where: str) -> None:
    if layers[0].kind != "conv":
        raise ConfigError(f"{where}: layers[0] is a {layers[0].kind}; a stack starts with "
                          "a conv layer")
    for n, lay in enumerate(layers[:-1]):
        if lay.decide:
            raise ConfigError(f"{where}: layers[{n}] (conv): 'decide' = true is allowed "
                              f"only on the last layer (layers[{len(layers) - 1}])")


def decision_layer(layers: tuple[Layer, ...]) -> int:
    """The index of the stack's decision layer (``decide``, always the last), -1 when
    it has none.

    >>> decision_layer(stack_layers("conv(maps=4,kernel=3);conv(maps=20,decide=true)"))
    1
    >>> decision_layer(stack_layers("conv(maps=4,kernel=3);pool(kernel=2)"))
    -1
    """
    return len(layers) - 1 if layers[-1].decide else -1


def stack_shapes(layers: tuple[Layer, ...], input_shape: tuple[int, int, int]
                 ) -> list[tuple[int, int, int]]:
    """The (C, H, W) of the input and of every layer's output; raises ConfigError when a
    layer's window does not fit its (padded) input.

    >>> stack_shapes(stack_layers("conv(maps=32,kernel=5,pad=2);pool(kernel=2,pad=1)"),
    ...              (2, 28, 28))
    [(2, 28, 28), (32, 28, 28), (32, 15, 15)]
    """
    shapes = [tuple(input_shape)]
    for n, lay in enumerate(layers):
        C, H, W = shapes[-1]
        h = (H + 2 * lay.pad - lay.kernel) // lay.stride + 1
        w = (W + 2 * lay.pad - lay.kernel) // lay.stride + 1
        if h < 1 or w < 1:
            raise ConfigError(f"layers[{n}] ({lay.kind}): kernel {lay.kernel} does not fit "
                              f"its input of {H}x{W} places with pad {lay.pad}")
        shapes.append((lay.maps if lay.kind == "conv" else C, h, w))
    return shapes


def total_epochs(layers: tuple[Layer, ...]) -> int:
    """Epochs of the whole greedy schedule: the conv layers' epochs, one after the other."""
    return sum(lay.epochs for lay in layers if lay.kind == "conv")


LAYER_KEYS = tuple(f.name for f in fields(Layer))
