"""Where and how jobs run: the device and the engine a user asked for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stdp_bench.levels.spec import ConfigError

ENGINES = ("auto", "kernel", "torch")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Execution:
    """Where and how jobs run: ``device`` cpu or cuda, ``engine`` kernel or torch.

    ``kernel`` is the fused numba engine (CPU); ``torch`` the BindsNET replica
    ``Network`` (:mod:`stdp_bench.engine.torch_engine`), the engine for CUDA. ``pinned``
    is True when the user chose the engine: otherwise a Diehl & Cook job whose levels
    lack kernel steps runs on the torch engine instead
    (:meth:`stdp_bench.trainers.ReplicaTrainer.engine_name`).

    >>> Execution.resolve("cpu", "torch").engine, Execution.resolve("cpu").engine
    ('torch', 'kernel')
    """

    device: str = "cpu"
    engine: str = "kernel"
    pinned: bool = False
    # Checkpoints inside a job (engines that continue from a state): every this many
    # training positions, or, when 0, after checkpoint_minutes of wall time.
    checkpoint_every: int = 0
    checkpoint_minutes: float = 5.0
    # Event files of every job's curve points (stdp_bench.tensorboard_log); None: none.
    tensorboard: str | None = None

    @classmethod
    def resolve(cls, device: str = "auto", engine: str = "auto", *,
                checkpoint_every: int = 0, checkpoint_minutes: float = 5.0,
                tensorboard: str | None = None) -> "Execution":
        """Pick concrete values; ``auto`` means CUDA when present, else the CPU kernel."""
        import torch

        if checkpoint_every < 0:
            raise ConfigError(f"--checkpoint-every {checkpoint_every} must be at least 0 "
                              "(0: by wall time)")
        if not checkpoint_minutes > 0:
            raise ConfigError(f"--checkpoint-minutes {checkpoint_minutes} must be greater "
                              "than 0")

        if device not in DEVICES:
            raise ConfigError(f"--device {device!r} is not allowed; allowed: {', '.join(DEVICES)}")
        if engine not in ENGINES:
            raise ConfigError(f"--engine {engine!r} is not allowed; allowed: {', '.join(ENGINES)}")
        has_cuda = torch.cuda.is_available()
        if device == "cuda" and not has_cuda:
            raise ConfigError("--device cuda: torch sees no CUDA device here; use --device cpu "
                              "or auto")
        if device == "auto":
            device = "cuda" if has_cuda else "cpu"
        pinned = engine != "auto"
        if engine == "auto":
            engine = "torch" if device == "cuda" else "kernel"
        if engine == "kernel" and device != "cpu":
            raise ConfigError("--engine kernel runs on the CPU only; use --engine torch on cuda")
        return cls(device=device, engine=engine, pinned=pinned,
                   checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes,
                   tensorboard=None if tensorboard is None else str(Path(tensorboard).resolve()))
