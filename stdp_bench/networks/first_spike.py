"""First-spike competitive STDP for conv / local layers (``conv_learning = "first_spike"``).

BindsNET's ``PostPre`` on a ``Conv2dConnection`` sums the update of every spike at every
location into the shared kernel, so each filter learns the average of all the patches it
answers: the kernels blur into the same blob and are worse features than random ones
(grids/conv_learning.toml). Kheradpisheh et al. (2018) train their convolutional STDP
layers differently, and this rule does the same on BindsNET's connections:

* each filter learns at most once per image, from its first spike;
* the winning location is *claimed* for the image: no other filter learns at locations
  whose patches overlap it by more than half (``claim_radius``), so filters that answer
  the same stroke cannot all learn it, and the maps spread over different features;
* among spikes of one step, the filter whose weights match its patch best goes first.

For ``local`` layers every location has its own filters, so "filter" means one neuron
and a location is claimed by the first neuron to spike there (radius 0).

The update is the rule's potentiation term at that spike: ``nu_post * x_pre`` over the
patch for ``stdp`` and ``hebbian``, times ``(wmax - w)`` for ``weight_dependent``; the
per-filter normalisation (``conv_norm``) after each image supplies the depression.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from bindsnet.learning import LearningRule
from bindsnet.network.topology import AbstractConnection, Conv2dConnection

def claim_radius(kernel_size: int, stride: int) -> int:
    """Locations within this distance have patches overlapping by more than half."""
    return max(0, math.ceil(kernel_size / (2 * stride)) - 1)


class FirstSpikePostPre(LearningRule):
    """Once-per-image, claim-based STDP on a ``Conv2dConnection`` or local connection."""

    def __init__(self, connection: AbstractConnection, nu=None, reduction=None,
                 weight_decay: float = 0.0, rule_update: Callable | None = None,
                 rule_params: dict[str, float] | None = None, kwta: int = 0,
                 radius: int = -1, **connection_kwargs) -> None:
        # BindsNET hands every keyword of the connection's constructor to its rule
        # (wmin, norm, ...); this rule reads those from the connection, not from here.
        super().__init__(connection=connection, nu=nu, reduction=reduction,
                         weight_decay=weight_decay)
        if rule_update is None or rule_params is None:
            raise ValueError("FirstSpikePostPre needs the rule level's torch_update and "
                             "its parameters (kernel_params)")
        self.rule_update = rule_update
        self.params = {k: torch.tensor([float(v)]) for k, v in rule_params.items()}
        self.shared = isinstance(connection, Conv2dConnection)
        self.kwta = kwta  # at most this many learn per image (0: no limit)
        self.radius = radius  # claim radius (-1: claim_radius for conv, 0 for local)
        self.learned: torch.Tensor | None = None  # [F]: filter has learned this image
        self.claimed: torch.Tensor | None = None  # [H, W]: location claimed this image
        # (filter, y, x) of each update this image, in order; n_updates over all images.
        self.claims: list[tuple[int, int, int]] = []
        self.n_updates = 0

    def reset_state_variables(self) -> None:
        """A new image: every filter may learn again and no location is claimed."""
        self.learned = None
        self.claimed = None
        self.claims = []

    def _geometry(self) -> tuple[int, int]:
        # The connection sets its kernel size and stride after building its rule.
        conn = self.connection
        k, s = conn.kernel_size, conn.stride
        return (int(k[0] if isinstance(k, tuple) else k),
                int(s[0] if isinstance(s, tuple) else s))

    def _patches(self) -> torch.Tensor:
        """Presynaptic traces under each location, ``[C * k * k, H * W]``."""
        x = self.source.x.float()
        k, s = self._geometry()
        return F.unfold(x.view(1, -1, *x.shape[-2:]), k, stride=s)[0]

    def update(self, **kwargs) -> None:
        """Learn from the first spikes of this step that find their filter and place free."""
        s = self.target.s[0]
        if not bool(s.any()):
            return
        n_f, h, w = s.shape
        if self.claimed is None:
            self.claimed = torch.zeros(h, w, dtype=torch.bool, device=s.device)
            self.learned = torch.zeros(n_f, dtype=torch.bool, device=s.device)
        cand = s & ~self.claimed
        if self.shared:
            cand &= ~self.learned.view(n_f, 1, 1)
        idx = cand.nonzero()
        if len(idx) == 0:
            return
        f, y, x = idx.unbind(1)
        loc = y * w + x
        conn = self.connection
        cols = None  # local neurons read the whole trace map: no patches to cut
        if self.shared:
            cols = self._patches()
            kernels = conn.w.view(n_f, -1)
            match = (kernels[f] * cols[:, loc].T).sum(1)
        else:
            wl = conn.w.view(conn.source.n, -1)
            match = (wl[:, f * h * w + loc] * self.source.x.view(-1, 1)).sum(0)
        r = self.radius if self.radius >= 0 else (
            claim_radius(*self._geometry()) if self.shared else 0)
        for c in torch.argsort(match, descending=True, stable=True).tolist():
            if self.kwta and len(self.claims) >= self.kwta:
                break
            fc, yc, xc = int(f[c]), int(y[c]), int(x[c])
            if bool(self.claimed[yc, xc]) or (self.shared and bool(self.learned[fc])):
                continue
            self.claimed[max(0, yc - r):yc + r + 1, max(0, xc - r):xc + r + 1] = True
            self.learned[fc] = True
            self._potentiate(fc, yc * w + xc, cols, h * w)
            self.claims.append((fc, yc, xc))
            self.n_updates += 1

    def _potentiate(self, f: int, loc: int, cols: torch.Tensor | None, n_loc: int) -> None:
        """The rule level's update for one post spike (filter ``f`` at ``loc``) and no pre
        spike, i.e. its potentiation term (``nu_post * x_pre``, times ``wmax - w`` for
        ``weight_dependent``); then the [wmin, wmax] clamp and, local, the field mask."""
        conn = self.connection
        lo, hi = float(conn.wmin), float(conn.wmax)
        if self.shared:
            # Kernels as the columns of one [k * k, F] matrix (a view of the weights).
            W = conn.w.data.view(conn.w.shape[0], -1).T.unsqueeze(0)
            j, pre = f, cols[:, loc]
        else:
            W = conn.w.data.view(conn.source.n, -1).unsqueeze(0)
            j = f * n_loc + loc
            field = ~conn.mask.view(conn.source.n, -1)[:, j]
            pre = self.source.x.view(-1).float() * field
        dev = W.device
        s_out = torch.zeros(1, W.shape[2], dtype=torch.bool, device=dev)
        s_out[0, j] = True
        one = torch.zeros(1, dtype=torch.long, device=dev)
        self.rule_update({k: v.to(dev) for k, v in self.params.items()}, W, one,
                         torch.zeros(1, W.shape[1], dtype=torch.bool, device=dev),
                         pre.unsqueeze(0), s_out, torch.zeros(1, W.shape[2], device=dev),
                         None, one - 1, 1)
        col = W[0, :, j]
        col.clamp_(lo, hi)
        if not self.shared:
            col.mul_(field)


class ResetsRule:
    """Connection mixin: ``reset_state_variables`` (a new image) also resets the rule."""

    def reset_state_variables(self) -> None:
        super().reset_state_variables()
        reset = getattr(self.update_rule, "reset_state_variables", None)
        if reset is not None:
            reset()


class ClaimingConv2dConnection(ResetsRule, Conv2dConnection):
    """``Conv2dConnection`` that tells its learning rule when a new image starts."""
