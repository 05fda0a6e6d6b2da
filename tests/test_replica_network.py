"""The BindsNET replica network (``networks.replica_network``) against the fused kernel.

Five replicas with different neuron models, rules and seeds run side by side in one
``Network`` (one batch row each). Each replica is also run alone through
``KernelReplica`` (the engine whose parity with stock BindsNET is tests/test_parity.py),
with the same input spike trains and initial weights. Both must give the same excitatory
spikes and, within float tolerance, the same weights and thresholds, presentation after
presentation (learning and frozen). The one-spike tie-break is the only draw borrowed:
the kernel logs its picks and the network's ``tie_breaker`` replays them, checking each
is one of the network's own candidates.

Also: a replica's trajectory does not depend on the other rows (permuting or removing
them leaves it bit-identical, with tie-breaks drawn per replica and presentation), and the
monitors of a BindsNET ``Network`` record the replicas' spikes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from stdp_bench.config import CellConfig
from stdp_bench.engine.kernel_engine import KernelReplica
from stdp_bench.engine.numba_support import tie_draws
from stdp_bench.networks.replica_layers import ReplicaNodes
from stdp_bench.networks.replica_network import bind_replicas, build_replica_network
from stdp_bench.replica_params import initial_weights, replica_seed
from bindsnet.network.monitors import Monitor

N_INPUT, N, N_CLASSES, T = 64, 12, 10, 100
SCHEDULE = [(True, 0), (True, 1), (True, 2), (False, 3), (True, 4), (True, 5), (False, 6)]
KINDS = [("adaptive", "stdp"), ("lif", "weight_dependent"), ("if", "hebbian"),
         ("adaptive", "teacher"), ("adaptive", "none"), ("lif", "teacher_force")]


def configs() -> list[CellConfig]:
    # teacher_force without a drive and with a weak block (0.05 mV a step): the other
    # classes' neurons still fire now and then, so its gate is exercised too.
    force = {"teacher_drive_mv": 0.0, "teacher_block_mv": 0.05}
    return [CellConfig(dataset="digits", neuron=nm, rule=r, n_neurons=N, time=T,
                       norm=16.0, wmax=0.4, nu_pre=2e-3, nu_post=1e-2, seed=k,
                       **(force if r == "teacher_force" else {"teacher_drive_mv": 1.0}))
            for k, (nm, r) in enumerate(KINDS)]


def images() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    k = len(SCHEDULE)
    return (d.data[:k] / 16.0).astype(np.float32), d.target[:k].astype(np.int64)


def spike_trains(xs: np.ndarray, R: int) -> torch.Tensor:
    """[presentation, T, R, n_input] Bernoulli trains, a different one per replica."""
    gen = torch.Generator().manual_seed(11)
    p = torch.from_numpy(xs).float() * 0.128
    return torch.bernoulli(p[:, None, None, :].expand(len(xs), T, R, N_INPUT),
                           generator=gen).bool()


class Replay:
    """Tie-breaker returning, per row, the kernel's next logged pick for that replica."""

    def __init__(self, picks: list[list[int]]):
        self.picks = [list(p) for p in picks]

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        keep = torch.zeros(len(s), dtype=torch.long)
        for b in range(len(s)):
            cands = s[b].nonzero().flatten().tolist()
            if len(cands) > 1:
                assert self.picks[b], f"row {b}: a tie the kernel did not log"
                pick = self.picks[b].pop(0)
                assert pick in cands, f"row {b}: kernel kept {pick}; candidates {cands}"
                keep[b] = pick
        return keep


def run_net(net, spikes_t, learning, labels, cfgs):
    """One presentation of [T, R, n_input] spikes; returns Ae spikes [T, R, n]."""
    R = spikes_t.shape[1]
    net.train(learning)
    rule = net.connections[("X", "Ae")].rule
    rule.labels = labels.clone()
    injects = {}
    inj = rule.injection(labels, N) if learning else None
    if inj is not None:
        injects = {"Ae": inj.unsqueeze(0).expand(T, R, N)}
    net.monitors["Ae"].reset_state_variables()
    net.run(inputs={"X": spikes_t.to(torch.uint8)}, time=T, injects_v=injects)
    out = net.monitors["Ae"].get("s").view(T, R, N).bool().clone()
    net.reset_state_variables()
    return out


def test_replica_network_matches_kernel():
    cfgs = configs()
    R = len(cfgs)
    xs, ys = images()
    trains = spike_trains(xs, R)
    w0 = torch.stack([initial_weights(c, N_INPUT) for c in cfgs])
    net = build_replica_network(cfgs, N_INPUT, w0, [1.0] * R, N_CLASSES)
    net.add_monitor(Monitor(net.layers["Ae"], state_vars=["s"]), name="Ae")
    reps = [KernelReplica(c, w0[r].numpy(), n_classes=N_CLASSES, seed=1)
            for r, c in enumerate(cfgs)]
    ties = 0
    spikes_total = np.zeros(R, np.int64)
    for p, (learning, k) in enumerate(SCHEDULE):
        label = int(ys[k])
        runs = [rep.present(trains[k, :, r].numpy(), learning=learning, label=label)
                for r, rep in enumerate(reps)]
        rasters = [torch.from_numpy(raster) for raster, _, _ in runs]
        picks = [p for _, _, p in runs]
        ties += sum(map(len, picks))
        net.layers["Ae"].tie_breaker = Replay(list(picks))
        out = run_net(net, trains[k], learning, torch.full((R,), label), cfgs)
        assert all(not q for q in net.layers["Ae"].tie_breaker.picks), "unused kernel picks"
        for r in range(R):
            where = f"presentation {p}, replica {r} {KINDS[r]}"
            assert torch.equal(out[:, r], rasters[r]), (
                f"{where}: spikes differ at {(out[:, r] ^ rasters[r]).nonzero().tolist()[:5]}")
            w_net = net.connections[("X", "Ae")].w[r]
            w_k = torch.from_numpy(reps[r].W)
            assert torch.allclose(w_net, w_k, atol=1e-5), (
                f"{where}: max |dW| {(w_net - w_k).abs().max():.3g}")
            th = net.layers["Ae"].theta_r[r]
            assert torch.allclose(th, torch.from_numpy(reps[r].theta), atol=1e-6), where
            spikes_total[r] += int(rasters[r].sum())
    # Not vacuous: every replica spiked, ties were replayed, rules moved the weights.
    assert (spikes_total > 0).all(), spikes_total
    assert ties > 0
    w_end = net.connections[("X", "Ae")].w
    normalised = w0 * (16.0 / w0.sum(1, keepdim=True))
    for r, (_, rule) in enumerate(KINDS):
        moved = (w_end[r] - normalised[r]).abs().max()
        assert (moved < 1e-5) if rule == "none" else (moved > 1e-3), (KINDS[r], moved)


def _train(order: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train replicas ``order`` of ``configs()`` together; own tie-breaks, no replay."""
    cfgs = [configs()[i] for i in order]
    R = len(cfgs)
    xs, ys = images()
    trains = spike_trains(xs, len(KINDS))[:, :, order]
    w0 = torch.stack([initial_weights(c, N_INPUT) for c in cfgs])
    net = build_replica_network(cfgs, N_INPUT, w0, [1.0] * R, N_CLASSES)
    net.add_monitor(Monitor(net.layers["Ae"], state_vars=["s"]), name="Ae")
    rasters = []
    seeds = [replica_seed(c) for c in cfgs]
    for p, (learning, k) in enumerate(SCHEDULE):
        net.layers["Ae"].tie_draws = torch.from_numpy(
            tie_draws(np.array(seeds), np.full(R, p), 0, T))
        rasters.append(run_net(net, trains[k], learning, torch.full((R,), int(ys[k])), cfgs))
    return (net.connections[("X", "Ae")].w.clone(), net.layers["Ae"].theta_r.clone(),
            torch.stack(rasters, 1))


@pytest.mark.parametrize("order", [[4, 3, 2, 1, 0], [0, 3], [3]])
def test_replica_network_independence(order):
    w_all, th_all, sp_all = _train(list(range(len(KINDS))))
    w, th, sp = _train(order)
    for pos, r in enumerate(order):
        assert torch.equal(w[pos], w_all[r])
        assert torch.equal(th[pos], th_all[r])
        assert torch.equal(sp[:, :, pos], sp_all[:, :, r])
    assert sp_all[:, :, 3].any()  # the teacher replica spiked


def test_batched_evaluation_matches_one_row_per_replica():
    """With plasticity off, rows may repeat replicas: B samples x R replicas in one run."""
    cfgs = configs()
    R = len(cfgs)
    xs, _ = images()
    trains = spike_trains(xs, R)
    w0 = torch.stack([initial_weights(c, N_INPUT) for c in cfgs])
    net = build_replica_network(cfgs, N_INPUT, w0, [1.0] * R, N_CLASSES)
    net.add_monitor(Monitor(net.layers["Ae"], state_vars=["s"]), name="Ae")
    net.train(False)
    single = []
    seeds = np.array([replica_seed(c) for c in cfgs])
    for k in range(2):
        net.layers["Ae"].tie_draws = torch.from_numpy(tie_draws(seeds, np.full(R, k), 0, T))
        net.monitors["Ae"].reset_state_variables()
        net.run(inputs={"X": trains[k].to(torch.uint8)}, time=T)
        single.append(net.monitors["Ae"].get("s").view(T, R, N).bool().clone())
        net.reset_state_variables()
    rows = torch.arange(R).repeat(2)
    bind_replicas(net, rows)
    net.layers["Ae"].tie_draws = torch.from_numpy(
        tie_draws(np.tile(seeds, 2), np.arange(2).repeat(R), 0, T))
    both = torch.cat([trains[0], trains[1]], 1)
    net.run(inputs={"X": both.to(torch.uint8)}, time=T)
    batched = net.monitors["Ae"].get("s").view(T, 2 * R, N).bool()
    assert torch.equal(batched[:, :R], single[0])
    assert torch.equal(batched[:, R:], single[1])
    assert isinstance(net.layers["Ae"], ReplicaNodes)
