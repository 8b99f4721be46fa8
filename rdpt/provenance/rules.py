"""The classification rule: each sentence by where its probability mass comes from (Shared, Teacher, Student, Boosted).

With p = exp(mean token log-prob) of the sentence under teacher T, original student S and distilled D,
the rule is checked in this order (arXiv 2512.20908):

    Shared   |pT - pD| <= alpha  and  |pS - pD| <= alpha  and  |pT - pS| <= alpha
    Teacher  pT - pS >  beta
    Student  pS - pT >  beta
    Boosted  the rest (T and S agree, D departs from them)

Differences are computed and compared in float64 exactly as given, with no tolerance: a difference that
is exactly alpha is Shared, one exactly beta is not Teacher/Student. Since 0.5 - 0.4 is
0.09999999999999998 in float64, "exactly 0.1" is what the floats say, not what the decimals say::

    python -c "from rdpt.provenance.rules import label; print(label([0.9, 0.5], [0.2, 0.5], [0.8, 0.9], 0.1, 0.1))"
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rdpt import RdptError
from rdpt.io.artifacts import SCHEMAS, check_same_keys, read_table
from rdpt.provenance import ROLES

CLASSES = ("Shared", "Teacher", "Student", "Boosted")  # canonical order, for tables and figures
UNSCORED = "Unscored"  # a sentence with no token under some model: kept and counted, never in a share


def _probabilities(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise RdptError(f"{name}: probabilities must be finite ({int((~np.isfinite(arr)).sum())} are not)")
    return arr


def label(p_t, p_s, p_d, alpha: float, beta: float) -> np.ndarray:
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


# How a sentence's token log-probs become the one log-prob the rule exponentiates (docs/scoring.md, "Score
# variants"); name -> the per-sentence score columns it reads besides n_tokens.
AGGREGATES: dict[str, tuple[str, ...]] = {
    "mean": ("mean_logprob",),  # mean token log-prob (arXiv 2512.20908): today's p, bit for bit
    # mean without the sentence's first token (ASLEC-DROP, arXiv 2604.06834); a one-token sentence keeps its mean
    "drop_first": ("sum_logprob", "first_logprob"),
    # lowest mean over WINDOW_TOKENS consecutive tokens (rdpt/provenance/score.py); full context, one pass
    "window_min": ("min_window_logprob",),
}


def aggregate_columns(aggregate: str) -> tuple[str, ...]:
    """The per-sentence score columns ``aggregate`` reads (n_tokens aside); an unknown name is an error."""
    if aggregate not in AGGREGATES:
        raise RdptError(f"unknown score aggregate {aggregate!r} (known: {', '.join(AGGREGATES)})")
    return AGGREGATES[aggregate]


def sentence_logprob(df: pd.DataFrame, role: str, aggregate: str = "mean") -> np.ndarray:
    """Each row's log-prob under ``role`` by ``aggregate`` (float64; p = exp of it); NaN where n_tokens is 0.

    Reads ``n_tokens_<role>`` and the ``<column>_<role>`` of :data:`AGGREGATES`. ``mean`` returns
    ``mean_logprob_<role>`` as stored; ``drop_first`` is ``(sum - first) / (n - 1)`` (``sum / n`` when n is 1).
    """
    missing = [f"{c}_{role}" for c in ("n_tokens", *aggregate_columns(aggregate)) if f"{c}_{role}" not in df.columns]
    if missing:
        raise RdptError(f"sentence scores lack column(s): {', '.join(missing)}"
                        + ("" if aggregate == "mean" else f" (needed by aggregate {aggregate!r}: rerun score, "
                                                          "dvc repro, to write them)"))
    n = df[f"n_tokens_{role}"].to_numpy(dtype=np.float64)
    if aggregate == "mean":
        return df[f"mean_logprob_{role}"].to_numpy(dtype=np.float64)
    if aggregate == "window_min":
        out = df[f"min_window_logprob_{role}"].to_numpy(dtype=np.float64).copy()
    else:
        total = df[f"sum_logprob_{role}"].to_numpy(dtype=np.float64)
        first = df[f"first_logprob_{role}"].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(n > 1, (total - first) / (n - 1), total / n)
    out[n <= 0] = np.nan
    return out


def classify_frame(df: pd.DataFrame, alpha: float, beta: float, aggregate: str = "mean") -> pd.DataFrame:
    """A copy of ``df`` with ``p_teacher, p_student, p_distilled`` (= exp of the sentence log-prob) and ``cls`` added.

    Reads ``mean_logprob_<role>`` and ``n_tokens_<role>`` for role in teacher/student/distilled (with another
    ``aggregate``, the columns it needs: :func:`sentence_logprob`). A sentence with 0 tokens under any model has
    no score: its p is NaN and its cls is "Unscored".
    """
    needed = [f"{kind}_{role}" for kind in ("mean_logprob", "n_tokens", *aggregate_columns(aggregate))
              for role in ROLES]
    needed = list(dict.fromkeys(needed))
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise RdptError(f"sentence scores lack column(s): {', '.join(missing)}")
    out = df.copy()
    scored = np.ones(len(df), dtype=bool)
    for role in ROLES:
        scored &= df[f"n_tokens_{role}"].to_numpy() > 0
    for role in ROLES:
        p = np.exp(sentence_logprob(df, role, aggregate))
        p[~scored] = np.nan
        if not np.all(np.isfinite(p[scored])):
            bad = df.index[scored & ~np.isfinite(p)][0]
            what = f"mean_logprob_{role}" if aggregate == "mean" else f"the {aggregate} log-prob under {role}"
            raise RdptError(f"{what} is not finite for a scored sentence (row {bad})")
        out[f"p_{role}"] = p
    cls = np.full(len(df), UNSCORED, dtype=object)
    cls[scored] = label(
        out["p_teacher"].to_numpy()[scored],
        out["p_student"].to_numpy()[scored],
        out["p_distilled"].to_numpy()[scored],
        alpha,
        beta,
    )
    out["cls"] = cls
    return out


def join_scores(sentences: pd.DataFrame, sentences_path, score_dirs: dict, aggregate: str,
                setting: str) -> pd.DataFrame:
    """``sentences`` with each role's scores as ``<column>_<role>`` (roles: the keys of ``score_dirs``), checked.

    Every table must hold exactly one score per sentence, finite wherever a token was scored, and the columns
    the ``aggregate`` reads (named by the params key ``setting`` when missing). With ``mean`` the joined table is
    exactly the scores schema's columns.
    """
    extra = [c for c in aggregate_columns(aggregate) if c not in SCHEMAS["scores"]]
    df = sentences
    for role, folder in score_dirs.items():
        path = Path(folder) / "scores.parquet"
        scores = read_table(path, "scores")
        check_same_keys(df, sentences_path, scores, path, ["response_id", "sentence_idx"])
        scored = scores["n_tokens"].to_numpy() > 0
        for column in ("sum_logprob", "mean_logprob"):
            bad = scored & ~np.isfinite(scores[column].to_numpy(dtype=np.float64))
            if bad.any():
                i = int(bad.argmax())
                raise RdptError(f"{path}: row {i}: {column} is {scores[column].iloc[i]} for a scored sentence of "
                                f"{scores['response_id'].iloc[i]!r} (non-finite log-prob: rerun score in float32)")
        lacking = [c for c in extra if c not in scores.columns]
        if lacking:
            raise RdptError(f"{path}: no column {lacking[0]!r}, which {setting}: {aggregate} reads "
                            "(scores from an older rdpt? rerun score: dvc repro)")
        scores = scores[[*SCHEMAS["scores"], *extra]].rename(
            columns={c: f"{c}_{role}" for c in ("n_tokens", "sum_logprob", "mean_logprob", "sum_rank", *extra)})
        df = df.merge(scores, on=["response_id", "sentence_idx"], how="left", validate="one_to_one")
    return df
