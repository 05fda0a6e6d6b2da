"""Regular spike trains: pixel i fires every round(1000 / (x_i rate dt)) steps."""

from stdp_bench.levels.spec import Level, kernel_function

LEVEL = Level(axis="encoder", name="regular", module=__name__, torch=False,
              doc="evenly spaced spikes at the pixel's rate (demo plugin)",
              uses=("intensity_hz",))


@kernel_function
def kernel_encode(x, rate_hz, T, dt, state, ev_t, ev_i):
    m = 0
    for i in range(x.shape[0]):
        r = x[i] * rate_hz * dt / 1000.0
        if r <= 0.0:
            continue
        gap = max(1, int(round(1.0 / r)))
        for t in range(gap - 1, T, gap):
            ev_t[m] = t
            ev_i[m] = i
            m += 1
    return m
