"""Scores of the traced sentences under one candidate teacher, for :mod:`rdpt.analysis.identify`.

The ``score`` stage (:func:`rdpt.provenance.score.score`) with the candidate's spec — path, revision, chat
template — in the teacher's place: its own tokenizer and its own template of the question as the context, one
forward pass per response. A candidate equal to ``models.teacher`` copies ``score@teacher``'s output instead of
scoring again (the teacher is usually the most expensive model to run). Kept apart from the statistics so that
editing how candidates are compared never re-scores them::

    python stages/identify_score.py --candidate alt_teacher --generations data/generations/distilled.jsonl \
        --sentences data/sentences.parquet --teacher-scores data/scores/teacher --out data/identify/scores/alt_teacher
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from rdpt import RdptError
from rdpt.io.artifacts import atomic_dir, read_json, read_table, write_json, write_timing
from rdpt.io.journal import journal_root
from rdpt.models import spec_ref
from rdpt.params import ModelSpec, Params
from rdpt.provenance.score import score

log = logging.getLogger(__name__)


def candidate_spec(params: Params, name: str) -> ModelSpec:
    spec = params.identify.candidates.get(name)
    if spec is None:
        known = ", ".join(params.identify.candidates)
        raise RdptError(f"identify.candidates: no candidate {name!r} (params name: {known})")
    return spec


def is_configured_teacher(params: Params, spec: ModelSpec) -> bool:
    t = params.models.teacher
    fields = ("path", "revision", "chat_template", "system_prompt", "chat_template_kwargs", "think", "config_overrides")
    return all(getattr(spec, f, None) == getattr(t, f, None) for f in fields)


def identify_score(params: Params, name: str, generations_path: str, sentences_path: str, out_dir: str,
                    teacher_scores: str | None = None, journal_dir: str | None = None,
                    timing_out: str | None = None) -> dict:
    """Score the traced sentences under candidate ``name``: ``<out_dir>/{scores.parquet,cost.json}``.

    The ``score`` step with the candidate's spec (path, revision, chat template) in the teacher's place. A
    candidate that is ``models.teacher`` copies ``teacher_scores`` (the ``score@teacher`` output) when given.
    """
    spec = candidate_spec(params, name)
    if teacher_scores is not None and is_configured_teacher(params, spec):
        src = Path(teacher_scores)
        cost = read_json(src / "cost.json")
        read_table(src / "scores.parquet", "scores")  # checked before it is copied
        with atomic_dir(out_dir) as out:
            shutil.copyfile(src / "scores.parquet", out / "scores.parquet")
            write_json(out / "cost.json", {**cost, "model": name, "reused": str(src)})
        write_timing(timing_out, {"wall_s": 0.0, "reused": str(src)})
        log.info("identify: candidate %s is models.teacher: reused %s", name, src)
        return cost
    # Own journal root: a killed run of this stage never meets (or deletes) score@teacher's journal.
    journal = journal_root(journal_dir) / "identify" / name
    return score(params, spec_ref(spec), name, generations_path, sentences_path, out_dir, journal_dir=str(journal),
                 timing_out=timing_out)
