"""Teacher-guided data selection: keep one of several teacher responses per training question.

Every candidate response is segmented and scored under the teacher T and the original student S with
the provenance scorer (context: each model's own template of the question + the candidate's preceding
text). With p = exp(mean token log-prob) per sentence, a sentence is Teacher (pT - pS > beta), Student
(pS - pT > beta) or Common (:func:`rdpt.provenance.classify.label_teacher_student`). A strategy scores every
candidate of a question and the highest score wins (arXiv 2512.20908 keeps the most Teacher sentences)::

    python -c "from rdpt.selection.strategies import STRATEGIES; print({k: s.doc for k, s in STRATEGIES.items()})"

Ties break deterministically: the earliest candidate (lowest ``sample_idx``, then ``response_id``) wins,
so a strategy never depends on row order. A question with a single candidate keeps it under every
strategy, and every strategy keeps exactly one candidate for every question: the same number of
training examples for all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from rdpt import RdptError
from rdpt.provenance.rules import label_teacher_student, sentence_logprob
from rdpt.selection.arms import USES_BETA

# Per-candidate features every strategy reads (one row per candidate response).
FEATURES = (
    "n_sentences",  # sentences of the response
    "n_scored",  # sentences with at least one token under both models
    "n_teacher",  # Teacher sentences: pT - pS > beta
    "n_student",  # Student sentences: pS - pT > beta
    "n_common",  # the rest of the scored sentences
    "teacher_ratio",  # n_teacher / n_scored (0 when nothing is scored)
    "student_tokens",  # response tokens under the student's tokenizer (what fine-tuning trains on)
    "student_mean_logprob",  # sum of token log-probs / n_tokens under the student (GRAPE)
    "rsr",  # Rank-Surprisal Ratio under the student: sum of clipped token ranks / sum of token NLLs
)


@dataclass(frozen=True)
class Strategy:
    name: str
    doc: str
    key: Callable[[pd.DataFrame, np.random.Generator], np.ndarray]  # higher = preferred, one per candidate

    @property
    def uses_beta(self) -> bool:  # declared once, in rdpt.selection.arms (params validates arms from it)
        return USES_BETA[self.name]


def _random(f: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    return rng.random(len(f))


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("teacher_count", "most Teacher sentences (the paper's method)",
             lambda f, rng: f["n_teacher"].to_numpy(float)),
    Strategy("random", "a uniformly random candidate (the paper's 'vanilla'; varies with the seed)", _random),
    Strategy("grape", "highest length-normalised student log-prob (GRAPE)",
             lambda f, rng: f["student_mean_logprob"].to_numpy(float)),
    Strategy("longest", "most response tokens (student tokenizer)", lambda f, rng: f["student_tokens"].to_numpy(float)),
    Strategy("teacher_ratio", "highest share of Teacher sentences among scored ones",
             lambda f, rng: f["teacher_ratio"].to_numpy(float)),
    Strategy("min_teacher_count", "fewest Teacher sentences (ablation)",
             lambda f, rng: -f["n_teacher"].to_numpy(float)),
    Strategy("rsr", "lowest Rank-Surprisal Ratio under the student (arXiv 2601.14249)",
             lambda f, rng: -f["rsr"].to_numpy(float)),
)}
if list(STRATEGIES) != list(USES_BETA):  # one table of names: params validates arms against rdpt.selection.arms
    raise RuntimeError("rdpt.selection.arms.USES_BETA must list exactly the strategies of STRATEGIES, in order")


def candidate_features(sentences: pd.DataFrame, candidates: pd.DataFrame, beta: float,
                       aggregate: str = "mean") -> pd.DataFrame:
    """One row per candidate: ``question_id, response_id, sample_idx`` + :data:`FEATURES` at ``beta``.

    ``aggregate`` (``select.aggregate``) is how a sentence's token log-probs become the log-prob behind its p for the
    Teacher/Student labels (:func:`rdpt.provenance.rules.sentence_logprob`; other aggregates read more columns).
    ``student_mean_logprob`` and ``rsr`` stay whole-response token means whatever the aggregate.

    ``sentences`` holds one row per (response_id, sentence_idx) with ``mean_logprob_<m>``,
    ``n_tokens_<m>`` for m in teacher/student, and ``sum_logprob_student``, ``sum_rank_student``.
    ``candidates`` has ``response_id, question_id, sample_idx``. A candidate without any sentence
    is an error (the caller drops empty responses first).
    """
    s = sentences
    scored = (s["n_tokens_teacher"].to_numpy() > 0) & (s["n_tokens_student"].to_numpy() > 0)
    labels = np.full(len(s), "Unscored", dtype=object)
    if aggregate == "mean":  # today's path, unchanged
        lp_t = s.loc[scored, "mean_logprob_teacher"].to_numpy(float)
        lp_s = s.loc[scored, "mean_logprob_student"].to_numpy(float)
    else:
        lp_t = sentence_logprob(s, "teacher", aggregate)[scored]
        lp_s = sentence_logprob(s, "student", aggregate)[scored]
    labels[scored] = label_teacher_student(np.exp(lp_t), np.exp(lp_s), beta)
    s = s.assign(_scored=scored, _teacher=labels == "Teacher", _student=labels == "Student",
                 _common=labels == "Common")
    g = s.groupby("response_id", sort=False)
    per = pd.DataFrame({
        "n_sentences": g.size(),
        "n_scored": g["_scored"].sum(),
        "n_teacher": g["_teacher"].sum(),
        "n_student": g["_student"].sum(),
        "n_common": g["_common"].sum(),
        "student_tokens": g["n_tokens_student"].sum(),
        "sum_logprob": g["sum_logprob_student"].sum(),
        "sum_rank": g["sum_rank_student"].sum(),
    })
    missing = sorted(set(candidates["response_id"]) - set(per.index))
    if missing:
        raise RdptError(f"candidate {missing[0]!r} has no sentence (drop empty responses before selection)")
    per["teacher_ratio"] = np.where(per["n_scored"] > 0, per["n_teacher"] / per["n_scored"].clip(lower=1), 0.0)
    tokens = per["student_tokens"].to_numpy(float)
    per["student_mean_logprob"] = np.where(tokens > 0, per["sum_logprob"] / np.maximum(tokens, 1), -np.inf)
    # RSR = sum(clipped rank) / sum(NLL) over the response's tokens (2601.14249, its eq. with surprisal
    # weighting); a response the student predicts perfectly (NLL 0) gets +inf: never preferred.
    nll = -per["sum_logprob"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        per["rsr"] = np.where(nll > 0, per["sum_rank"].to_numpy(float) / nll, np.inf)
    for col in ("n_sentences", "n_scored", "n_teacher", "n_student", "n_common", "student_tokens"):
        per[col] = per[col].astype(int)
    out = candidates[["question_id", "response_id", "sample_idx"]].merge(
        per[list(FEATURES)], left_on="response_id", right_index=True, how="left", validate="one_to_one")
    return out.reset_index(drop=True)


def select(features: pd.DataFrame, strategy: str, seed: int) -> pd.DataFrame:
    """The winning candidate of every question under ``strategy``: rows of ``features``, by question.

    ``seed`` only matters for strategies that draw (``random``): the draw is one uniform per candidate in
    canonical order (question_id, sample_idx, response_id), so it is the same on every run and machine.
    """
    if strategy not in STRATEGIES:
        raise RdptError(f"unknown selection strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    if features.empty:
        raise RdptError("selection: no candidate to select from")
    f = features.sort_values(["question_id", "sample_idx", "response_id"], kind="mergesort").reset_index(drop=True)
    key = np.asarray(STRATEGIES[strategy].key(f, np.random.default_rng(seed)), dtype=float)
    if np.isnan(key).any():
        bad = f["response_id"][np.isnan(key)].iloc[0]
        raise RdptError(f"selection {strategy}: undefined score for candidate {bad!r}")
    # Stable sort on -key keeps canonical order among equal keys: the earliest candidate wins a tie.
    order = np.argsort(-key, kind="stable")
    ranked = f.iloc[order]
    return ranked.drop_duplicates("question_id", keep="first").sort_values(
        ["question_id", "sample_idx"], kind="mergesort").reset_index(drop=True)


def selection_stats(chosen: pd.DataFrame) -> dict[str, float]:
    """What a selection looks like: mean length, Teacher count and ratio, student log-prob, RSR."""
    finite_rsr = chosen["rsr"].replace([np.inf, -np.inf], np.nan)
    return {
        "n_questions": int(len(chosen)),
        "mean_tokens": float(chosen["student_tokens"].mean()),
        "mean_sentences": float(chosen["n_sentences"].mean()),
        "mean_teacher_count": float(chosen["n_teacher"].mean()),
        "mean_teacher_ratio": float(chosen["teacher_ratio"].mean()),
        "mean_student_count": float(chosen["n_student"].mean()),
        "mean_student_logprob": float(chosen["student_mean_logprob"].mean()),
        "mean_rsr": float(finite_rsr.mean()),
    }
