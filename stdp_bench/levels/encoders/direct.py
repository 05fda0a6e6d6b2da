"""Direct input: pixel intensities as currents, for gradient-trained baselines only.

>>> LEVEL.gradient_only, LEVEL.kernel
(True, False)
"""

from __future__ import annotations

from stdp_bench.levels.spec import Level

LEVEL = Level(axis="encoder", name="direct", module=__name__,
              doc="intensities fed as currents (ann/surrogate baselines only)",
              kernel=False, torch=False, gradient_only=True)


def torch_encode_batch(x, time_steps: int, rate_hz: float, dt: float, gen=None):
    """``[T, B, n]``: the images ``x`` ``[B, n]`` as currents at every step."""
    return x.unsqueeze(0).expand(time_steps, *x.shape)
