"""Selection arms: a strategy name, optionally with its own beta (``teacher_count_beta0.05``).

The names and which strategies read beta live here, apart from the strategies themselves
(:mod:`rdpt.selection.strategies`), so that params can validate ``select.arms`` without importing the
selection code, and a change of a strategy reruns only the stages that select::

    python -c "from rdpt.selection.arms import parse_arm; print(parse_arm('teacher_count_beta0.05'))"
"""

from __future__ import annotations

import re

# strategy -> whether it reads beta (Teacher / Student sentences); the order of rdpt.selection.strategies
USES_BETA = {
    "teacher_count": True,
    "random": False,
    "grape": False,
    "longest": False,
    "teacher_ratio": True,
    "min_teacher_count": True,
    "rsr": False,
}

_ARM = re.compile(r"^(?P<strategy>[a-z_]+?)(?:_beta(?P<beta>\d+(?:\.\d+)?))?$")


def parse_arm(arm: str) -> tuple[str, float | None]:
    """``'teacher_count'`` -> ('teacher_count', None); ``'teacher_count_beta0.05'`` -> ('teacher_count', 0.05).

    Raises ValueError naming the arm when the strategy is unknown, or when a beta is given to a strategy
    that does not use one or lies outside [0, 1].
    """
    m = _ARM.match(arm)
    strategy, beta = (m["strategy"], m["beta"]) if m else (arm, None)
    if strategy not in USES_BETA:
        raise ValueError(f"arm {arm!r}: unknown strategy {strategy!r} (known: {', '.join(USES_BETA)})")
    if beta is None:
        return strategy, None
    if not USES_BETA[strategy]:
        raise ValueError(f"arm {arm!r}: strategy {strategy!r} does not use beta")
    value = float(beta)
    if not 0 <= value <= 1:
        raise ValueError(f"arm {arm!r}: beta must be in [0, 1]")
    return strategy, value


def arm_seeds(select, arm: str) -> list[int]:
    """The seeds ``arm`` runs at: ``select.seeds``, then ``select.contrast.seeds`` for a contrast arm. (A function,
    not a params method, so that the params trace records the keys it reads rather than all of ``select``.)"""
    return list(select.seeds) + (list(select.contrast.seeds) if arm in select.contrast.arms else [])
