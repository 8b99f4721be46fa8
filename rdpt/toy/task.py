"""The toy task: 2-3 step word problems on small numbers with a verifiable integer answer.

A problem is a person, a kind of object, a start count and a few changes (amounts 1-5, every
intermediate count within 0-20)::

    Ana has 7 apples. She buys 3 more. Then she gives 2 to Ben. How many apples does Ana have now?
    -> 8

Two phrasings: the common "story" (one sentence per change, present tense) and the rarer
"summary" (all changes in one past-tense sentence). Train and test are split by the
(person, object) COMBINATION: test questions use held-out combinations of names and objects that
all appear in training, so a tiny BPE vocabulary never meets an unseen word.

    toy_easy  held-out combos, story phrasing, 2-3 steps      (in-distribution style)
    toy_hard  held-out combos, summary phrasing, always 3 steps  (harder, less common phrasing)
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

NAMES = {  # name -> pronoun
    "Ana": "she", "Ben": "he", "Cara": "she", "Dan": "he", "Eva": "she",
    "Finn": "he", "Gia": "she", "Hugo": "he", "Ivy": "she", "Jon": "he",
}  # fmt: skip
OBJECTS = ["apples", "pens", "coins", "books", "cards", "shells", "stickers", "marbles", "cookies", "stamps"]

MIN_VALUE, MAX_VALUE = 0, 20  # every count, start and intermediate, stays in this range
MIN_AMOUNT, MAX_AMOUNT = 1, 5  # size of one change
SUMMARY_SHARE = 0.15  # share of the rarer "summary" phrasing in training questions
HELD_OUT_SHARE = 0.2  # share of (name, object) combos kept for the test benchmarks


@dataclass(frozen=True)
class Op:
    """One kind of change: its sign and how the question says it (present / past tense)."""

    key: str
    sign: int  # +1 or -1
    present: str  # "{p} buys {k} more" -- {p} pronoun, {k} amount, {o} the other person
    past: str  # "bought {k}"


OPS = [
    Op("buy", +1, "{p} buys {k} more", "bought {k}"),
    Op("find", +1, "{p} finds {k}", "found {k}"),
    Op("get", +1, "{p} gets {k} from {o}", "got {k} from {o}"),
    Op("give", -1, "{p} gives {k} to {o}", "gave {k} to {o}"),
    Op("lose", -1, "{p} loses {k}", "lost {k}"),
]
OPS_BY_KEY = {op.key: op for op in OPS}


@dataclass(frozen=True)
class Step:
    op: str  # Op.key
    amount: int
    other: str  # the other person in give/get (unused by other ops)


@dataclass(frozen=True)
class Problem:
    name: str
    obj: str
    start: int
    steps: tuple[Step, ...]
    phrasing: str  # "story" | "summary"

    @property
    def pronoun(self) -> str:
        return NAMES[self.name]

    def values(self) -> list[int]:
        """The count before and after each step: [start, after step 1, ...]."""
        out = [self.start]
        for s in self.steps:
            out.append(out[-1] + OPS_BY_KEY[s.op].sign * s.amount)
        return out

    @property
    def answer(self) -> int:
        return self.values()[-1]

    def clauses(self) -> list[str]:
        """Each step in the question's own words, lower-case: "she buys 3 more" / "she bought 3"."""
        if self.phrasing == "story":
            return [OPS_BY_KEY[s.op].present.format(p=self.pronoun, k=s.amount, o=s.other) for s in self.steps]
        return [f"{self.pronoun} " + OPS_BY_KEY[s.op].past.format(k=s.amount, o=s.other) for s in self.steps]

    def question(self) -> str:
        n, o = self.name, self.obj
        clauses = self.clauses()
        if self.phrasing == "story":
            parts = [f"{n} has {self.start} {o}.", upper_first(clauses[0]) + "."]
            parts += [f"Then {c}." for c in clauses[1:]]
            parts.append(f"How many {o} does {n} have now?")
        else:
            changes = [c.split(" ", 1)[1] for c in clauses]  # without the pronoun
            listed = " and ".join([", ".join(changes[:-1]), changes[-1]] if len(changes) > 1 else changes)
            parts = [f"At first {n} had {self.start} {o}.", f"Then {self.pronoun} {listed}.",
                     f"How many {o} does {n} have in the end?"]
        return " ".join(parts)


def upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def combos() -> list[tuple[str, str]]:
    return [(n, o) for n in NAMES for o in OBJECTS]


def split_combos(seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train combos, held-out test combos); every name and object stays in the train side."""
    rng = random.Random(f"{seed}-combos")
    while True:
        all_combos = combos()
        rng.shuffle(all_combos)
        n_test = max(1, round(HELD_OUT_SHARE * len(all_combos)))
        test, train = all_combos[:n_test], all_combos[n_test:]
        if {n for n, _ in train} == set(NAMES) and {o for _, o in train} == set(OBJECTS):
            return sorted(train), sorted(test)


def random_problem(rng: random.Random, combo: tuple[str, str], n_steps: int, phrasing: str) -> Problem:
    name, obj = combo
    others = [n for n in NAMES if n != name]
    while True:  # rejection: keep every count within [MIN_VALUE, MAX_VALUE]
        start = rng.randint(MIN_VALUE + 1, MAX_VALUE - 5)
        value, steps = start, []
        for _ in range(n_steps):
            op = rng.choice(OPS)
            k = rng.randint(MIN_AMOUNT, MAX_AMOUNT)
            value += op.sign * k
            steps.append(Step(op.key, k, rng.choice(others)))
        problem = Problem(name, obj, start, tuple(steps), phrasing)
        if all(MIN_VALUE <= v <= MAX_VALUE for v in problem.values()):
            return problem


def make_problems(rng: random.Random, combo_pool: list[tuple[str, str]], n: int, *,
                  steps: tuple[int, ...] = (2, 3), summary_share: float = SUMMARY_SHARE,
                  exclude: set[str] | None = None) -> list[Problem]:
    """``n`` problems with distinct question texts (none in ``exclude``)."""
    seen = set(exclude or ())
    out: list[Problem] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 1000:
            raise RuntimeError(f"toy: cannot draw {n} distinct problems")
        phrasing = "summary" if rng.random() < summary_share else "story"
        p = random_problem(rng, rng.choice(combo_pool), rng.choice(steps), phrasing)
        q = p.question()
        if q not in seen:
            seen.add(q)
            out.append(p)
    return out


@dataclass
class ToyData:
    train_pool: list[Problem]  # questions of train.jsonl (the teacher answers them in `teach`)
    corpora: dict[str, list[Problem]]  # role -> the 2-3 step problems of its training solutions
    one_step: dict[str, list[Problem]]  # role -> extra one-step problems it also trains on
    benchmarks: dict[str, list[Problem]]  # "toy_easy" / "toy_hard"
    train_combos: list[tuple[str, str]]
    test_combos: list[tuple[str, str]]


BENCHMARKS = {  # name -> (steps, summary share)
    "toy_easy": ((2, 3), 0.0),
    "toy_hard": ((3,), 1.0),
}


def make_toy_data(seed: int, n_train: int, n_test: int, corpus_sizes: dict[str, int],
                  one_step_sizes: dict[str, int] | None = None) -> ToyData:
    train_combos, test_combos = split_combos(seed)
    benchmarks, used = {}, set()
    for name, (steps, summary) in BENCHMARKS.items():
        rng = random.Random(f"{seed}-{name}")
        benchmarks[name] = make_problems(rng, test_combos, n_test, steps=steps, summary_share=summary,
                                         exclude=used)
        used.update(p.question() for p in benchmarks[name])
    pool = make_problems(random.Random(f"{seed}-train"), train_combos, n_train)
    # Each model's corpus is drawn independently from the train combos (as pretraining data is).
    corpora = {role: make_problems(random.Random(f"{seed}-corpus-{role}"), train_combos, n)
               for role, n in corpus_sizes.items()}
    one_step = {role: make_problems(random.Random(f"{seed}-one-step-{role}"), train_combos, n, steps=(1,))
                for role, n in (one_step_sizes or {}).items() if n > 0}
    return ToyData(pool, corpora, one_step, benchmarks, train_combos, test_combos)


_BOXED = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")


def boxed_answer(text: str) -> int | None:
    """The integer in the last ``\\boxed{N}`` of a response, or None."""
    found = _BOXED.findall(text)
    return int(found[-1]) if found else None


def is_correct(text: str, answer: int | str) -> bool:
    got = boxed_answer(text)
    return got is not None and got == int(answer)
