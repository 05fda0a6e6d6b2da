"""Reward-modulated STDP (Mozafari et al. 2019) on a stack's decision layer.

The layer's maps are assigned to the classes in equal consecutive blocks (``decide =
true``: 20 maps per class for Mozafari's 200) and its winner, the unit that fires first
(ties: the larger potential), decides the image. Only the winner's map learns, by the
sign of that decision:

    right decision (reward, STDP):       w += reward_plus   if input i fired by the spike
                                         w -= reward_minus  otherwise
    wrong decision (punishment, anti):   w -= punish_plus   if input i fired by the spike
                                         w += punish_minus  otherwise

additively (no ``w (1 - w)`` factor), then the layer's clamp (Mozafari's [0.2, 0.8]).
``reward_plus`` / ``reward_minus`` are the layer's ``a_plus`` and ``a_minus_ratio *
a_plus`` (0.004, 0.003); ``punish_plus`` / ``punish_minus`` are this level's settings
(0.004, 0.0005). A silent layer (no winner) changes nothing.

Adaptive rates (``adapt_batch``): after every ``adapt_batch`` training images of the
layer the engine scales the reward rates by the batch's miss rate and the punishment
rates by its hit rate (silent images count in neither), as SpykeTorch's
``MozafariDeep.py`` does after each batch of 1,000: a network that is mostly right learns
from its rare mistakes gently and is punished hard for them, and the other way round. The
first batch runs at the rates as declared. The counts live in the engine's state, so a
run resumed from a checkpoint carries on with the same rates.

The decision layer and this rule are SpykeTorch's: the layer fires at the end
(``fire_at_end``: threshold None, so every unit with a positive potential fires at the
last step and the winner is the largest potential), and "fired by the spike" is then
"fired at all" (padding never fires).

>>> import numpy as np
>>> p = np.rec.array([(0.004, 0.003, 0.004, 0.0005)], dtype=RECORD)[0]
>>> W = np.full((2, 4), 0.5, np.float32)  # 2 inputs, 4 maps, 2 per class
>>> xin = np.array([1.0, 0.0], np.float32)  # input 0 fired, input 1 did not
>>> kernel_update(p, W, xin, None, None, None, None, 0, 0, np.array([1]), 1, None, 0,
...               0, 2, None)  # map 1 (class 0) won an image of class 0: reward
>>> kernel_update(p, W, xin, None, None, None, None, 0, 0, np.array([2]), 1, None, 0,
...               0, 2, None)  # map 2 (class 1) won an image of class 0: punishment
>>> W.astype(np.float64).round(4).tolist()
[[0.5, 0.504, 0.496, 0.5], [0.5, 0.497, 0.5005, 0.5]]
"""

from __future__ import annotations

import numpy as np

from stdp_bench.levels.spec import Level, Param, kernel_function

LEVEL = Level(axis="rule", name="rstdp", module=__name__,
              doc="reward-modulated STDP on a stack's decision layer (Mozafari 2019): "
                  "STDP on a right decision, anti-STDP on a wrong one, rates scaled by "
                  "the last batch's miss / hit rates",
              params=(Param("punish_plus", 0.004, low=0.0,
                            doc="R-STDP: depression of inputs that fired, on a wrong "
                                "decision"),
                      Param("punish_minus", 0.0005, low=0.0,
                            doc="R-STDP: potentiation of inputs that did not fire, on a "
                                "wrong decision"),
                      Param("adapt_batch", 1000, low=0, high=10_000_000,
                            doc="R-STDP: training images per batch whose hit / miss rates "
                                "scale the next batch's rates (0: never)")),
              uses=("nu_pre", "nu_post", "punish_plus", "punish_minus", "adapt_batch",
                    "wmin", "wmax"),
              torch=False, decision_rule=True)

RECORD = np.dtype([("reward_plus", np.float32), ("reward_minus", np.float32),
                   ("punish_plus", np.float32), ("punish_minus", np.float32)])

__all__ = ["LEVEL", "RECORD", "adapted", "kernel_params", "kernel_update"]


def kernel_params(cfg) -> dict[str, float]:
    """The reward rates (``nu_post``, ``nu_pre``: the layer's a+ and a-) and the
    punishment rates."""
    return {"reward_plus": cfg.nu_post, "reward_minus": cfg.nu_pre,
            "punish_plus": cfg.punish_plus, "punish_minus": cfg.punish_minus}


def adapted(cfg, a_plus: float, a_minus: float, hit: float, miss: float
            ) -> dict[str, float]:
    """The settings of a batch after one with these hit and miss rates: reward rates
    times the miss rate, punishment rates times the hit rate.

    >>> from types import SimpleNamespace
    >>> cfg = SimpleNamespace(punish_plus=0.004, punish_minus=0.0005)
    >>> {k: round(v, 6) for k, v in adapted(cfg, 0.004, 0.003, hit=0.9, miss=0.1).items()}
    {'nu_post': 0.0004, 'nu_pre': 0.0003, 'punish_plus': 0.0036, 'punish_minus': 0.00045}
    """
    return {"nu_post": a_plus * miss, "nu_pre": a_minus * miss,
            "punish_plus": cfg.punish_plus * hit, "punish_minus": cfg.punish_minus * hit}


@kernel_function
def kernel_update(p, W, xin, xe, aux, spiked, idx, lo, hi, fired, nfire, active, nact,
                  label, n_classes, scratch):
    """The winners ``fired[:nfire]`` (maps, columns of ``W``) learn by whether their
    class block (``W.shape[1] // n_classes`` maps each) is ``label``; ``xin`` is
    positive for the inputs that fired by the winner's spike."""
    if label < 0:
        return
    per = W.shape[1] // n_classes
    n_in = W.shape[0]
    zero = np.float32(0.0)
    for q in range(nfire):
        j = fired[q]
        if j // per == label:
            up = p.reward_plus
            down = -p.reward_minus
        else:
            up = -p.punish_plus
            down = p.punish_minus
        for i in range(n_in):
            W[i, j] += up if xin[i] > zero else down
