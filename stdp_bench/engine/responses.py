"""What the replica engines return: per-sample training counts and frozen responses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# Spike events kept per evaluated sample for the n-gram readout.
EVENT_CAP = 256


def first_events(spikes: "torch.Tensor", cap: int = EVENT_CAP
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``cap`` (step, neuron) events of each row of ``spikes`` [B, T, n].

    Returns ``events`` [B, cap, 2] in step order (neurons increasing within a step), as
    the kernel logs them, and the total number of events per row.
    """
    B = spikes.shape[0]
    b, t, j = (a.cpu().numpy() for a in spikes.nonzero(as_tuple=True))
    # nonzero is row-major, so events come sorted by row, step, neuron.
    rank = np.arange(len(b)) - np.searchsorted(b, np.arange(B))[b]
    keep = rank < cap
    events = np.zeros((B, cap, 2), np.int32)
    events[b[keep], rank[keep]] = np.stack([t[keep], j[keep]], 1)
    return events, np.bincount(b, minlength=B)


@dataclass
class TrainStats:
    """Per-replica, per-sample counts from training."""

    exc_spikes: np.ndarray  # (R, n_train) excitatory spikes of the last presentation
    in_spikes: np.ndarray  # (R, n_train) input spikes over all presentations
    retries: np.ndarray  # (R, n_train)
    diverged_at: np.ndarray  # (R,) 1-based sample position, 0 when finite throughout

    @classmethod
    def zeros(cls, R: int, K: int) -> "TrainStats":
        """All-zero statistics for R replicas and K training presentations."""
        return cls(np.zeros((R, K), np.int64), np.zeros((R, K), np.int64),
                   np.zeros((R, K), np.int64), np.zeros(R, np.int64))


@dataclass
class Responses:
    """Frozen-network responses: counts (R, N, n); events (R, N, cap, 2) of (step, neuron).

    ``shape`` lays the n neurons out as feature maps (F, H, W) where they are maps;
    ``outputs`` (R, N, classes) holds a gradient-trained network's output layer.
    """

    counts: np.ndarray
    events: np.ndarray
    n_events: np.ndarray
    in_spikes: np.ndarray
    shape: tuple[int, int, int] | None = None
    outputs: np.ndarray | None = None
    # (R, N) synaptic operations per sample, where the engine counts them (stacks).
    synops: np.ndarray | None = None
    # (R, N) the class a stack's decision layer chose (-1: silent), where it has one.
    decisions: np.ndarray | None = None

    def replica(self, r: int) -> "ReplicaResponses":
        """Replica r's responses."""
        return ReplicaResponses(self.counts[r], self.events[r], self.n_events[r],
                                self.shape, None if self.outputs is None else self.outputs[r],
                                None if self.decisions is None else self.decisions[r])


@dataclass(frozen=True)
class ReplicaResponses:
    """One replica's responses to N samples (what a readout reads)."""

    counts: np.ndarray  # (N, n)
    events: np.ndarray  # (N, cap, 2)
    n_events: np.ndarray  # (N,)
    shape: tuple[int, int, int] | None = None
    outputs: np.ndarray | None = None  # (N, classes)
    decisions: np.ndarray | None = None  # (N,) a decision layer's classes, -1: silent
