"""The layers of R independent Diehl & Cook networks in one BindsNET ``Network``.

The batch dimension holds *replicas*: row b runs replica ``replica_index[b]`` with that
replica's own levels and parameters.

* :class:`ReplicaInput` - ``Input`` with a per-row trace decay;
* :class:`ReplicaNodes` - neurons of any registered neuron level with a torch twin
  (``torch_step``), chosen per row, with per-row parameters and one-spike tie-breaks.

:class:`LevelGroups` (replicas grouped by level, with their parameters per row),
:func:`take_rows` / :func:`put_rows` and :func:`torch_module` serve the layers here and
the rule in :mod:`stdp_bench.networks.replica_network`, which wires the layers into a
network.
"""

from __future__ import annotations

from types import ModuleType
from typing import Callable, Sequence

import torch
from bindsnet.network.nodes import Input, Nodes

from stdp_bench.levels import registry
from stdp_bench.levels.spec import ConfigError, Level

__all__ = ["LevelGroups", "ReplicaInput", "ReplicaNodes", "TieBreaker", "put_rows",
           "take_rows", "torch_module"]

TieBreaker = Callable[[torch.Tensor], torch.Tensor]


def _decay(dt: float | torch.Tensor, tc: torch.Tensor) -> torch.Tensor:
    """Per-step decay in float32, as BindsNET computes its scalar decays."""
    return torch.exp(-torch.as_tensor(float(dt), device=tc.device) / tc)


def torch_module(level: Level, *steps: str) -> ModuleType:
    """The module of ``level``, checked to provide the torch twins ``steps``."""
    module = registry.module(level)
    missing = [s for s in steps if not hasattr(module, s)]
    if not level.torch or missing:
        raise ConfigError(f"{level.axis} {level.name!r} has no torch twin "
                          f"({', '.join(missing) or 'torch = False'} in {level.module}); "
                          "run it with --engine kernel")
    return module


class LevelGroups:
    """Replicas grouped by level: per group, its replicas and their parameters ``[k]``.

    ``select(replica_index)`` gives, per group, the batch rows it owns (None when it owns
    them all, the common case) and its parameters gathered per row.
    """

    def __init__(self, levels: Sequence[Level], params: Sequence[dict[str, float]]) -> None:
        self.levels: list[Level] = []
        self.params: list[dict[str, torch.Tensor]] = []
        R = len(levels)
        self.group_of = torch.zeros(R, dtype=torch.long)
        self.local_of = torch.zeros(R, dtype=torch.long)
        for r, level in enumerate(levels):
            if level not in self.levels:
                self.levels.append(level)
                self.params.append({})
            g = self.levels.index(level)
            self.group_of[r] = g
            self.local_of[r] = int((self.group_of[:r] == g).sum())
        for g in range(len(self.levels)):
            members = [params[r] for r in range(R) if self.group_of[r] == g]
            self.params[g] = {k: torch.tensor([m[k] for m in members], dtype=torch.float32)
                              for k in members[0]}

    def to(self, device: torch.device) -> None:
        """Move the grouping and the parameters to ``device``."""
        self.group_of = self.group_of.to(device)
        self.local_of = self.local_of.to(device)
        self.params = [{k: v.to(device) for k, v in p.items()} for p in self.params]

    def select(self, replica_index: torch.Tensor
               ) -> list[tuple[Level, torch.Tensor | None, dict[str, torch.Tensor]]]:
        """Per group present in ``replica_index``: its level, its batch rows (None: all
        of them) and its parameters gathered per row."""
        out = []
        groups = self.group_of[replica_index]
        for g, level in enumerate(self.levels):
            if len(self.levels) == 1:
                rows = None
                local = self.local_of[replica_index]
            else:
                rows = (groups == g).nonzero(as_tuple=True)[0]
                if not len(rows):
                    continue
                local = self.local_of[replica_index[rows]]
            out.append((level, rows, {k: v[local] for k, v in self.params[g].items()}))
        return out


def take_rows(t: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """The batch rows ``rows`` of ``t`` (all of ``t`` when ``rows`` is None)."""
    return t if rows is None else t[rows]


def put_rows(t: torch.Tensor, rows: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    """``t`` with its batch rows ``rows`` set to ``value`` (a copy; ``value`` itself when
    ``rows`` is None)."""
    if rows is None:
        return value
    t = t.clone()
    t[rows] = value
    return t


class ReplicaInput(Input):
    """BindsNET ``Input`` whose spike-trace decay is a per-row tensor."""

    def __init__(self, n: int, tc_trace: torch.Tensor) -> None:
        super().__init__(n=n, traces=True)
        self.register_buffer("tc_trace_r", tc_trace.float().clone())
        self.register_buffer("replica_index", torch.zeros(0, dtype=torch.long))

    def bind(self, replica_index: torch.Tensor) -> None:
        """Make row b run replica ``replica_index[b]``."""
        self.replica_index = replica_index
        self.set_batch_size(len(replica_index))
        self.trace_decay = _decay(self.dt, self.tc_trace_r)[replica_index].unsqueeze(1)


class ReplicaNodes(Nodes):
    """Neurons of registered levels, one independent population per row.

    ``levels[r]`` and ``params[r]`` (its module's ``kernel_params``) describe replica r;
    the level module's ``torch_reset``/``torch_step`` run the rows of that level. A
    persistent threshold ``theta`` per replica is kept for every level (levels without
    adaptation leave it at 0; it is frozen when ``learning`` is off). ``one_spike[r]``
    keeps one of several neurons that cross threshold on the same step, chosen by
    ``tie_draws[step, row]`` (uniform draws the engine takes from the kernel's random
    streams, :func:`stdp_bench.engine.kernel_build.tie_draws`) or by ``tie_breaker`` when
    one is set (parity tests replay another engine's choices).
    """

    def __init__(self, n: int, levels: Sequence[Level], params: Sequence[dict[str, float]],
                 one_spike: torch.Tensor, traces: bool = True,
                 tc_trace: torch.Tensor | None = None) -> None:
        super().__init__(n=n, traces=traces)
        R = len(levels)
        self.modules_ = {lv.name: torch_module(lv, "torch_reset", "torch_step")
                         for lv in levels}
        self.groups = LevelGroups(levels, params)
        self.state_names = tuple(dict.fromkeys(s for lv in levels for s in lv.state))
        self.register_buffer("tc_trace_r", (tc_trace if tc_trace is not None
                                            else torch.full((R,), 20.0)).float().clone())
        self.register_buffer("one_spike_r", one_spike.bool().clone())
        self.register_buffer("theta_r", torch.zeros(R, n))
        self.register_buffer("replica_index", torch.arange(R))
        self.state: dict[str, torch.Tensor] = {}
        self.v = torch.zeros(R, n)
        self.tie_breaker: TieBreaker | None = None
        self.tie_draws: torch.Tensor | None = None
        self.step_in_sample = 0
        self.any_one_spike = bool(one_spike.any())
        self.selected = self._select(self.replica_index)

    def _select(self, replica_index: torch.Tensor) -> list:
        # Per group: its rows and its parameters as [rows, 1] columns, gathered once per
        # bind rather than every step.
        return [(level, rows, {k: v.unsqueeze(1) for k, v in p.items()})
                for level, rows, p in self.groups.select(replica_index)]

    def to_device(self, device: torch.device) -> None:
        """Move the per-level parameters (plain tensors, not buffers) to ``device``."""
        self.groups.to(device)
        self.selected = self._select(self.replica_index)

    def bind(self, replica_index: torch.Tensor) -> None:
        """Make row b run replica ``replica_index[b]`` (several rows may share one)."""
        self.replica_index = replica_index
        self.selected = self._select(replica_index)
        self.one_spike = self.one_spike_r[replica_index]
        if self.traces:
            self.trace_decay = _decay(self.dt, self.tc_trace_r)[replica_index].unsqueeze(1)
        self.set_batch_size(len(replica_index))

    def set_batch_size(self, batch_size) -> None:
        super().set_batch_size(batch_size=batch_size)
        device = self.s.device
        self.v = torch.zeros(batch_size, *self.shape, device=device)
        self.state = {name: torch.zeros_like(self.v) for name in self.state_names
                      if name != "v"}
        if len(self.replica_index) == batch_size:
            self.reset_state_variables()

    def _rows_state(self, level: Level, rows: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return {name: take_rows(self.v if name == "v" else self.state[name], rows)
                for name in level.state}

    def _store(self, st: dict[str, torch.Tensor], rows: torch.Tensor | None) -> None:
        for name, value in st.items():
            if name == "v":
                self.v = put_rows(self.v, rows, value)
            elif name in self.state:
                self.state[name] = put_rows(self.state[name], rows, value)

    def reset_state_variables(self) -> None:
        super().reset_state_variables()
        for level, rows, p in self.selected:
            st = self._rows_state(level, rows)
            self.modules_[level.name].torch_reset(p, st)
            self._store(st, rows)
        self.step_in_sample = 0

    @property
    def theta(self) -> torch.Tensor:
        """Adaptive thresholds of the bound rows ``[batch, n]``."""
        return self.theta_r[self.replica_index]

    def forward(self, x: torch.Tensor) -> None:
        """One step of every row's neuron level."""
        theta = self.theta_r[self.replica_index]
        spikes = torch.zeros_like(self.v, dtype=torch.bool)
        for level, rows, p in self.selected:
            st = self._rows_state(level, rows)
            st["theta"] = take_rows(theta, rows)
            s = self.modules_[level.name].torch_step(p, st, take_rows(x, rows), self.learning)
            theta = put_rows(theta, rows, st.pop("theta"))
            self._store(st, rows)
            spikes = put_rows(spikes, rows, s)
        if self.learning:
            # Only a one-row-per-replica batch may change theta (training).
            self.theta_r[self.replica_index] = theta
        self.s = self._one_spike(spikes) if self.any_one_spike else spikes
        self.step_in_sample += 1
        super().forward(x)

    def _one_spike(self, s: torch.Tensor) -> torch.Tensor:
        nfire = s.sum(1)
        multi = self.one_spike & (nfire > 1)
        if self.tie_breaker is not None:
            keep = self.tie_breaker(s & multi.unsqueeze(1))
        else:
            if self.tie_draws is None:
                raise RuntimeError("one_spike needs tie_draws (or a tie_breaker) per "
                                   "presentation")
            u = self.tie_draws[self.step_in_sample]
            # u < 1, so the pick is a valid rank among the row's spiking neurons.
            pick = (u * nfire.double()).long()
            rank = torch.cumsum(s.long(), 1) - 1
            keep = (s & (rank == pick.unsqueeze(1))).float().argmax(1)
        one = torch.zeros_like(s)
        one[torch.arange(len(s), device=s.device), keep] = True
        return torch.where(multi.unsqueeze(1), one, s)


