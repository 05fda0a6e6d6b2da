"""Learning rules: one registry line per level of the ``rule`` factor."""

from __future__ import annotations

from dataclasses import dataclass

from bindsnet.learning import Hebbian, LearningRule, NoOp, PostPre, WeightDependentPostPre

from stdp_bench.engine import kernel


@dataclass(frozen=True)
class Rule:
    """A level of the ``rule`` factor: kernel code, stock BindsNET rule, supervision."""

    code: int
    stock_class: type[LearningRule]
    supervised: bool = False


RULES: dict[str, Rule] = {
    "stdp": Rule(kernel.RULE_STDP, PostPre),
    "weight_dependent": Rule(kernel.RULE_WEIGHT_DEPENDENT, WeightDependentPostPre),
    "hebbian": Rule(kernel.RULE_HEBBIAN, Hebbian),
    # Pair STDP plus a teacher: the neurons of the sample's class (j % n_classes) get a
    # small depolarisation each step (BindsNET's injects_v) and only they learn from it.
    "teacher": Rule(kernel.RULE_TEACHER, PostPre, supervised=True),
    "none": Rule(kernel.RULE_NONE, NoOp),
}
