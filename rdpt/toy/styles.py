"""Reasoning styles of the toy models: which sentences a worked solution has, and how often.

Every style draws from the SAME sentence types, with different frequencies, the way real teacher
and student models overlap (a disjoint style would make every distilled sentence a Teacher one)::

    sentence type     example                                     teacher  student
    plan              Let me plan: I will follow the apples ...    0.90     0.10
    start             Ana starts with 7 apples.                    0.95     0.50
    step (verbose)    She buys 3 more, so 7 + 3 = 10.              0.85     0.20   (per step)
    step (terse)      Now 7 + 3 = 10.                              0.15     0.80   (per step)
    verify            Let me check: 7 + 3 - 2 = 8.                 0.85     0.10
    terse ending      Final count: 8.                              0.10     0.70
    answer            The answer is \\boxed{8}.                     1.00     1.00   (identical)

A verbose step restates the change in the question's own words ("She gave 2 to Ben, so ..."):
tiny models learn to find the next change much faster when they can match the question text.
One sentence per line. A new model style is one more :class:`Style` in :data:`STYLES` (its own
templates and frequencies); nothing else changes.

Measured with the default build (distilled = student fine-tuned 4 epochs on 2000 teacher samples,
alpha = beta = 0.1), the distilled model's toy_easy sentences came out about 70% Teacher,
12% Boosted, 8% Student and 10% Shared: plan/verify/verbose steps mostly Teacher, terse steps
split Teacher/Student, the answer line Teacher or Shared, wrong arithmetic Boosted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rdpt.toy.task import OPS_BY_KEY, Problem, upper_first


@dataclass(frozen=True)
class Style:
    plans: tuple[str, ...]  # planning sentences, one drawn when a plan is written
    p_plan: float
    start: str
    p_start: float
    verbose_step: str
    terse_step: str
    p_verbose: float  # per step: verbose vs terse
    verify: str
    p_verify: float
    ending: str
    p_ending: float
    answer: str = "The answer is \\boxed{{{ans}}}."
    joiner: str = "\n"

    def solve(self, problem: Problem, rng: random.Random) -> str:
        """A correct worked solution of ``problem`` in this style (random sentence choices)."""
        values = problem.values()
        fields = {"n": problem.name, "o": problem.obj,
                  "s": problem.start, "ans": problem.answer}
        lines = []
        if rng.random() < self.p_plan:
            lines.append(rng.choice(self.plans).format(**fields))
        if rng.random() < self.p_start:
            lines.append(self.start.format(**fields))
        chain = [str(problem.start)]
        for step, clause, a, b in zip(problem.steps, problem.clauses(), values, values[1:]):
            sign = "+" if OPS_BY_KEY[step.op].sign > 0 else "-"
            template = self.verbose_step if rng.random() < self.p_verbose else self.terse_step
            lines.append(template.format(**fields, clause=upper_first(clause), k=step.amount, a=a, b=b, op=sign))
            chain.append(f"{sign} {step.amount}")
        if rng.random() < self.p_verify:
            lines.append(self.verify.format(**fields, chain=" ".join(chain)))
        if rng.random() < self.p_ending:
            lines.append(self.ending.format(**fields))
        lines.append(self.answer.format(**fields))
        return self.joiner.join(lines)


_PLANS = (
    "Let me plan: I will follow the {o} one change at a time.",
    "First, I will track how many {o} {n} has after each step.",
)
_COMMON = dict(
    plans=_PLANS,
    start="{n} starts with {s} {o}.",
    verbose_step="{clause}, so {a} {op} {k} = {b}.",  # the step in the question's words
    terse_step="Now {a} {op} {k} = {b}.",
    verify="Let me check: {chain} = {ans}.",
    ending="Final count: {ans}.",
)

STYLES = {
    # Careful reasoner: plans, explains every step, verifies.
    "teacher": Style(**_COMMON, p_plan=0.9, p_start=0.95, p_verbose=0.85, p_verify=0.85, p_ending=0.1),
    # Terse solver: bare arithmetic, a short ending; planning and checking are rare.
    "student": Style(**_COMMON, p_plan=0.1, p_start=0.5, p_verbose=0.2, p_verify=0.1, p_ending=0.7),
}
