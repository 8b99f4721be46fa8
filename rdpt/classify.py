"""Classify each sentence by where its probability mass comes from: Shared, Teacher, Student or Boosted.

With p = exp(mean token log-prob) of the sentence under teacher T, original student S and distilled D,
the rule is checked in this order (arXiv 2512.20908):

    Shared   |pT - pD| <= alpha  and  |pS - pD| <= alpha  and  |pT - pS| <= alpha
    Teacher  pT - pS >  beta
    Student  pS - pT >  beta
    Boosted  the rest (T and S agree, D departs from them)

Differences are computed and compared in float64 exactly as given, with no tolerance: a difference that
is exactly alpha is Shared, one exactly beta is not Teacher/Student. Since 0.5 - 0.4 is
0.09999999999999998 in float64, "exactly 0.1" is what the floats say, not what the decimals say::

    python -c "from rdpt.classify import classify; print(classify([0.9, 0.5], [0.2, 0.5], [0.8, 0.9], 0.1, 0.1))"
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rdpt import RdptError

CLASSES = ("Shared", "Teacher", "Student", "Boosted")  # canonical order, for tables and figures
UNSCORED = "Unscored"  # a sentence with no token under some model: kept and counted, never in a share
ROLES = ("teacher", "student", "distilled")


def _probabilities(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise RdptError(f"{name}: probabilities must be finite ({int((~np.isfinite(arr)).sum())} are not)")
    return arr


def classify(p_t, p_s, p_d, alpha: float, beta: float) -> np.ndarray:
    """Class label of each sentence; arrays (or Series) of equal length in, object array of labels out."""
    p_t, p_s, p_d = (_probabilities(n, v) for n, v in (("p_teacher", p_t), ("p_student", p_s), ("p_distilled", p_d)))
    shared = (np.abs(p_t - p_d) <= alpha) & (np.abs(p_s - p_d) <= alpha) & (np.abs(p_t - p_s) <= alpha)
    teacher = p_t - p_s > beta
    student = p_s - p_t > beta
    # np.select takes the first true condition: the order of the rule
    return np.select([shared, teacher, student], list(CLASSES[:3]), default=CLASSES[3]).astype(object)


def label_teacher_student(p_t, p_s, beta: float) -> np.ndarray:
    """Teacher (pT - pS > beta), Student (pS - pT > beta) or Common: the two-model rule for data selection."""
    p_t, p_s = _probabilities("p_teacher", p_t), _probabilities("p_student", p_s)
    return np.select([p_t - p_s > beta, p_s - p_t > beta], ["Teacher", "Student"], default="Common").astype(object)


def classify_frame(df: pd.DataFrame, alpha: float, beta: float) -> pd.DataFrame:
    """A copy of ``df`` with ``p_teacher, p_student, p_distilled`` (= exp mean log-prob) and ``cls`` added.

    Reads ``mean_logprob_<role>`` and ``n_tokens_<role>`` for role in teacher/student/distilled. A sentence
    with 0 tokens under any model has no score: its p is NaN and its cls is "Unscored".
    """
    needed = [f"{kind}_{role}" for kind in ("mean_logprob", "n_tokens") for role in ROLES]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise RdptError(f"sentence scores lack column(s): {', '.join(missing)}")
    out = df.copy()
    scored = np.ones(len(df), dtype=bool)
    for role in ROLES:
        scored &= df[f"n_tokens_{role}"].to_numpy() > 0
    for role in ROLES:
        p = np.exp(df[f"mean_logprob_{role}"].to_numpy(dtype=np.float64))
        p[~scored] = np.nan
        if not np.all(np.isfinite(p[scored])):
            bad = df.index[scored & ~np.isfinite(p)][0]
            raise RdptError(f"mean_logprob_{role} is not finite for a scored sentence (row {bad})")
        out[f"p_{role}"] = p
    cls = np.full(len(df), UNSCORED, dtype=object)
    cls[scored] = classify(
        out["p_teacher"].to_numpy()[scored],
        out["p_student"].to_numpy()[scored],
        out["p_distilled"].to_numpy()[scored],
        alpha,
        beta,
    )
    out["cls"] = cls
    return out
