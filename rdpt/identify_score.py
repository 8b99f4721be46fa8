"""Scores of the traced sentences under one candidate teacher, for teacher identification (:mod:`rdpt.identify`).

The ``score`` step (:func:`rdpt.pipeline.score`) with the candidate's spec — path, revision, chat template — in the
teacher's place: its own tokenizer and its own template of the question as the context, one forward pass per
response. A candidate equal to ``models.teacher`` copies ``score@teacher``'s output instead of scoring again (the
teacher is usually the most expensive model to run). Kept apart from the statistics so that editing how candidates
are compared never re-scores them::

    python stages/identify_score.py --candidate alt_teacher --generations data/generations/distilled.jsonl \
        --sentences data/sentences.parquet --teacher-scores data/scores/teacher --out data/identify/scores/alt_teacher
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from rdpt import RdptError
from rdpt.artifacts import atomic_dir, read_json, read_table, write_json
from rdpt.params import ModelSpec, Params

log = logging.getLogger(__name__)


def candidate_spec(params: Params, name: str) -> ModelSpec:
    spec = params.identify.candidates.get(name)
    if spec is None:
        known = ", ".join(params.identify.candidates)
        raise RdptError(f"identify.candidates: no candidate {name!r} (params name: {known})")
    return spec


def is_configured_teacher(params: Params, spec: ModelSpec) -> bool:
    t = params.models.teacher
    return (spec.path, spec.revision, spec.chat_template) == (t.path, t.revision, t.chat_template)


def score_candidate(params: Params, name: str, generations_path: str, sentences_path: str, out_dir: str,
                    teacher_scores: str | None = None, journal_dir: str | None = None) -> dict:
    """Score the traced sentences under candidate ``name``: ``<out_dir>/{scores.parquet,cost.json}``.

    The ``score`` step with the candidate's spec (path, revision, chat template) in the teacher's place. A
    candidate that is ``models.teacher`` copies ``teacher_scores`` (the ``score@teacher`` output) when given.
    """
    from rdpt.journal import journal_root
    from rdpt.pipeline import score

    spec = candidate_spec(params, name)
    if teacher_scores is not None and is_configured_teacher(params, spec):
        src = Path(teacher_scores)
        cost = read_json(src / "cost.json")
        read_table(src / "scores.parquet", "scores")  # checked before it is copied
        with atomic_dir(out_dir) as out:
            shutil.copyfile(src / "scores.parquet", out / "scores.parquet")
            write_json(out / "cost.json", {**cost, "model": name, "reused": str(src)})
        log.info("identify: candidate %s is models.teacher: reused %s", name, src)
        return cost
    as_teacher = params.model_copy(update={"models": params.models.model_copy(update={"teacher": spec})})
    # Own journal slot: a killed run of this stage never meets (or deletes) score@teacher's journal.
    journal = journal_root(journal_dir) / "identify" / name
    cost = score(as_teacher, "teacher", spec.path, generations_path, sentences_path, out_dir, journal_dir=str(journal))
    cost = {**cost, "model": name}
    write_json(Path(out_dir) / "cost.json", cost)
    return cost
