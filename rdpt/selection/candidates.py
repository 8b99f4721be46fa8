"""The candidates stage: the pool a selection strategy picks from, K teacher samples per train question or a
dataset of existing responses::

    python stages/candidates.py --teacher data/toy/models/teacher --out data/select/candidates.jsonl \\
        --report data/select/candidates.json
"""

from __future__ import annotations

import logging

from rdpt import RdptError
from rdpt.generation.grade import grade
from rdpt.generation.responses import teacher_samples
from rdpt.io.artifacts import read_table, write_json, write_jsonl
from rdpt.io.data import load_candidates, load_questions
from rdpt.models import ModelRef
from rdpt.params import Params

log = logging.getLogger(__name__)


def candidates(params: Params, teacher: ModelRef, out: str, report_out: str, journal_dir: str | None = None) -> dict:
    """Candidate responses for data selection: K teacher samples per train question, or a dataset of them.

    Only finished, correct candidates are kept when ``select.candidates.only_correct`` (rejection sampling,
    as in ``teach``); rows follow the `generations` schema (ids ``candidates/<question_id>/<k>``) plus a
    ``source`` column, so ``segment`` and ``score`` read them like any traced response. Teacher sampling
    is journaled (resumable) like ``teach``.
    """
    spec = params.select.candidates
    if spec.source == "teacher":
        questions = load_questions(params.data.train)
        if spec.n_questions is not None:
            questions = questions[: spec.n_questions]
        stats = teacher_samples(params, teacher, questions, spec, "candidates", "candidates", out, journal_dir,
                                extra={"source": teacher.path})
    else:
        ds = spec.dataset
        if spec.only_correct and ds.answer_field is None and not ds.pseudo_gold:
            raise RdptError("select.candidates.only_correct needs select.candidates.dataset.answer_field or "
                            "pseudo_gold (or set only_correct: false)")
        rows = [{"response_id": f"candidates/{c.question_id}/{c.sample_idx}", "benchmark": "candidates",
                 "question_id": c.question_id, "sample_idx": c.sample_idx, "question": c.question,
                 "answer": c.answer, "text": c.response, "finish_reason": "stop", "n_tokens": 0,
                 "source": c.source} for c in load_candidates(ds)]
        stats = {"n_questions": len({r["question_id"] for r in rows}), "n_sampled": len(rows), "n_truncated": 0}
        if ds.pseudo_gold:
            # rows whose response has no parseable final answer after </think> (code, or cut off)
            stats["n_no_final_answer"] = sum(r["answer"] == "" for r in rows)
        if spec.only_correct:
            rows = [r for r in rows if r["answer"] != "" and grade(r["answer"], r["text"])]
        if not rows:
            raise RdptError(f"{ds.path}: no usable candidate (none is correct; check answer_field or only_correct)")
        stats["n_kept"] = len(rows)
        write_jsonl(out, rows)
    kept = read_table(out, "generations")
    per_question = kept["question_id"].value_counts()
    report = {"source": spec.source, **stats, "n_questions_kept": int(len(per_question)),
              "candidates_per_question": {int(k): int(v) for k, v in per_question.value_counts().sort_index().items()}}
    write_json(report_out, report)
    log.info("candidates: %s", report)
    return report
