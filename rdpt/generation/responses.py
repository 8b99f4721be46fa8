"""The sampling stages: ``teach`` (the teacher answers the train questions) and ``generate`` (K test responses
per question from each model), journaled so a killed run resumes (:mod:`rdpt.io.journal`)::

    python stages/generate.py --role teacher --model data/toy/models/teacher --out /tmp/teacher.jsonl

Rows follow the ``generations`` schema (:mod:`rdpt.io.artifacts`), ids ``<benchmark>/<question_id>/<k>``; a
question whose gold has several parts adds them as ``answer_parts`` (graded through
:func:`~rdpt.generation.grade.row_gold`). A benchmark's ``num_samples`` (``data.benchmarks.<name>.num_samples``)
overrides the stage's (:func:`benchmark_sampling`).
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import rdpt.generation.sample
import rdpt.models
from rdpt import RdptError
from rdpt.engines import engine_kind, open_engine
from rdpt.generation.grade import grade, row_gold
from rdpt.generation.sample import batch_plan, sample
from rdpt.io.artifacts import write_jsonl
from rdpt.io.data import Question, load_questions
from rdpt.io.journal import Journal, digest, run_fingerprint
from rdpt.models import ModelRef, encode_prompt, load_tokenizer, render_prompt
from rdpt.params import Params, SamplingParams

log = logging.getLogger(__name__)

# the code whose change invalidates a sampling journal
SAMPLING_CODE = [rdpt.generation.sample, rdpt.models]


def benchmark_sampling(sampling: SamplingParams, spec) -> SamplingParams:
    """The sampling of one benchmark: the stage's, with the benchmark's ``num_samples`` when it sets one (AIME 16,
    MATH-500 4: a small set needs more samples per question for a stable avg@k)."""
    k = getattr(spec, "num_samples", None)
    return sampling if k is None or k == sampling.num_samples else sampling.model_copy(update={"num_samples": k})


def _record_check(plans: dict[str, list[list[int]]], num_samples: dict[str, int], logprobs: bool = False):
    """A journaled batch must hold the plan's prompts and its benchmark's num_samples well-formed responses each
    (with ``logprobs``: a finite log-prob and a rank >= 1 per token id)."""

    def with_logprobs(r) -> bool:
        lps, ranks = r.get("token_logprobs"), r.get("token_ranks")
        return (isinstance(lps, list) and isinstance(ranks, list) and len(lps) == len(ranks) == r["n_tokens"]
                and all(isinstance(x, float) and math.isfinite(x) and x <= 0 for x in lps)
                and all(isinstance(k, int) and k >= 1 for k in ranks))

    def valid(unit: str, data) -> bool:
        name, _, b = unit.rpartition("/")
        if name not in plans or not b.isdigit() or int(b) >= len(plans[name]):
            return False
        idx = plans[name][int(b)]
        return data["prompts"] == idx and len(data["samples"]) == len(idx) and all(
            len(per_prompt) == num_samples[name]
            and all(isinstance(r["text"], str) and r["finish_reason"] in ("stop", "length")
                    and isinstance(r["n_tokens"], int) and (not logprobs or with_logprobs(r)) for r in per_prompt)
            for per_prompt in data["samples"])

    return valid


def sample_responses(engine, tokenizer, questions: list[Question], benchmark: str, sampling: SamplingParams,
                     seed: int, desc: str, journal: Journal | None = None, model: str | None = None,
                     system_prompt: str | None = None) -> list[dict]:
    """K sampled responses per question, as `generations` rows (ids: <benchmark>/<question_id>/<k>).

    Each row keeps the ``token_ids`` the model sampled (stop token included) and which ``model`` sampled them,
    so that model scores its own response on exactly those ids (the decoded text may re-tokenize otherwise).

    ``system_prompt``: the benchmark's (it wins over the model's, see :func:`rdpt.models.render_prompt`); when
    set, each row records it as ``system_prompt``, so scoring and fine-tuning rebuild the same prompt.

    With a journal, batches it holds (units ``<benchmark>/<batch>``) are reused and new ones recorded.
    """
    prompts = [render_prompt(tokenizer, q.question, system_prompt) for q in questions]
    done, on_batch = None, None
    if journal is not None:
        done = {int(u.rpartition("/")[2]): d["samples"] for u, d in journal.done.items()
                if u.rpartition("/")[0] == benchmark}

        def record(b: int, idx: list[int], samples: list[list[dict]]) -> None:
            journal.append(f"{benchmark}/{b}", {"prompts": idx, "samples": samples})

        on_batch = record

    outputs = sample(
        engine, tokenizer, prompts, num_samples=sampling.num_samples, temperature=sampling.temperature,
        top_p=sampling.top_p, top_k=sampling.top_k, min_p=sampling.min_p, max_new_tokens=sampling.max_new_tokens,
        batch_size=sampling.batch_size, seed=seed, desc=desc, done=done, on_batch=on_batch,
        return_logprobs=sampling.keep_logprobs,
    )
    # which prompt the log-probs were computed after: scoring reuses them only under the same prompt ids
    prompt_digests = [digest(encode_prompt(tokenizer, p)) for p in prompts] if sampling.keep_logprobs else []
    rows = []
    for i, (q, samples) in enumerate(zip(questions, outputs, strict=True)):
        for k, s in enumerate(samples):
            rows.append({
                "response_id": f"{benchmark}/{q.id}/{k}", "benchmark": benchmark, "question_id": q.id,
                "sample_idx": k, "question": q.question, "answer": q.answer, "text": s["text"],
                "finish_reason": s["finish_reason"], "n_tokens": int(s["n_tokens"]),
                "token_ids": [int(t) for t in s["token_ids"]], "model": model,
            } | ({"system_prompt": system_prompt} if system_prompt is not None else {})
              | ({"answer_parts": list(q.parts)} if q.parts else {})
              | ({"token_logprobs": s["token_logprobs"], "token_ranks": s["token_ranks"],
                  "prompt_digest": prompt_digests[i]} if "token_logprobs" in s else {}))
    return rows


def fitting_questions(engine, tokenizer, sets: dict[str, list[Question]], sources: dict[str, str],
                      sampling: SamplingParams, ref: ModelRef,
                      system_prompts: dict[str, str | None] | None = None) -> tuple[dict[str, list[Question]], int]:
    """The questions whose prompt + ``max_new_tokens`` fits the model's context, and how many were left out.

    Checked before anything is sampled: a prompt past the context would sample garbage (positions the model
    never saw) and a huge one would run for minutes before failing. ``too_long: error`` stops at the first one,
    naming its dataset file and question id; ``skip`` leaves it out.
    """
    limit = engine.context_length
    if limit is None:
        return sets, 0
    kept, n_skipped = {}, 0
    for b, questions in sets.items():
        kept[b] = []
        for q in questions:
            n = len(encode_prompt(tokenizer, render_prompt(tokenizer, q.question, (system_prompts or {}).get(b))))
            if n + sampling.max_new_tokens <= limit:
                kept[b].append(q)
            elif sampling.too_long == "skip":
                n_skipped += 1
            else:
                raise RdptError(
                    f"{sources[b]}: question {q.id!r}: prompt of {n} tokens + max_new_tokens "
                    f"{sampling.max_new_tokens} exceeds the context of {limit} of model {ref.path!r} (shorten the "
                    "question, lower max_new_tokens, or set too_long: skip in this stage's params)")
    if n_skipped:
        log.warning("%d question(s) left out: prompt + max_new_tokens exceeds the context of %d", n_skipped, limit)
    return kept, n_skipped


def _journaled_sampling(params: Params, ref: ModelRef, name: str, stage: str, slot: str, sampling: SamplingParams,
                        sets: dict[str, list[Question]], sources: dict[str, str], seeds: dict[str, int],
                        journal_dir: str | None, out: str | None = None,
                        system_prompts: dict[str, str | None] | None = None,
                        per_set: dict[str, SamplingParams] | None = None):
    """Open ``ref``'s engine and sample every question set under one journal; (rows, engine name, journal, skipped).

    ``per_set``: a set's own sampling where it differs from ``sampling`` (its num_samples)."""
    tokenizer = load_tokenizer(ref, padding_side="left")
    kind = engine_kind(ref, sampling.engine)
    engine = open_engine(ref, sampling.engine, params, tokenizer, seed=params.seed)
    try:
        system_prompts = system_prompts or {}
        sets, n_skipped = fitting_questions(engine, tokenizer, sets, sources, sampling, ref, system_prompts)
        prompts = {b: [encode_prompt(tokenizer, render_prompt(tokenizer, q.question, system_prompts.get(b)))
                       for q in qs] for b, qs in sets.items()}
        per_set = {b: (per_set or {}).get(b, sampling) for b in sets}
        overrides = {b: s.num_samples for b, s in per_set.items() if s.num_samples != sampling.num_samples}
        fingerprint = run_fingerprint(
            params, stage, name, ref, kind, SAMPLING_CODE, seed=params.seed,
            # keep_logprobs only when on: journals of runs without it keep their key
            sampling=sampling.model_dump(exclude=None if sampling.keep_logprobs else {"keep_logprobs"}),
            benchmarks=[[b, digest([[q.id, q.question] for q in qs])] for b, qs in sets.items()],
            prompts=digest(prompts), system_prompts=system_prompts,
            # only when a benchmark overrides num_samples: journals without overrides keep their key
            **({"num_samples": overrides} if overrides else {}))
        check = _record_check({b: batch_plan(ps, sampling.batch_size) for b, ps in prompts.items()},
                              {b: s.num_samples for b, s in per_set.items()}, sampling.keep_logprobs)
        journal = Journal(journal_dir, slot, fingerprint, check, target=out)
        with journal:
            rows: list[dict] = []
            for b, questions in sets.items():
                desc = f"{stage} {name} {b}" if stage == "generate" else stage
                rows += sample_responses(engine, tokenizer, questions, b, per_set[b], seeds[b], desc, journal,
                                         model=ref.path, system_prompt=system_prompts.get(b))
    finally:
        engine.close()
    return rows, kind, journal, n_skipped


def teacher_samples(params: Params, ref: ModelRef, questions: list[Question], spec, stage: str, benchmark: str,
                    out: str, journal_dir: str | None, extra: dict | None = None) -> dict:
    """K teacher responses per question (``spec``: sampling + ``only_correct``), journaled, written to ``out``.

    With ``only_correct``, only finished responses whose answer is right are kept (rejection sampling).
    """
    def sampling_of(section) -> SamplingParams:
        return SamplingParams(**{k: getattr(section, k) for k in SamplingParams.model_fields})

    # A mixed-temperature pool (select.candidates.temperatures) samples one set per temperature, each with its own
    # seed, under one journal; the rows are then renumbered as K candidates of one question.
    pools = spec.at_temperatures() if hasattr(spec, "at_temperatures") else [(spec.temperature, spec)]
    names = [benchmark if len(pools) == 1 else f"{benchmark}@T{t:g}" for t, _ in pools]
    system = getattr(params.data.train, "system_prompt", None)
    rows, kind, journal, n_skipped = _journaled_sampling(
        params, ref, "teacher", stage, stage, sampling_of(pools[0][1]), {n: questions for n in names},
        {n: params.data.train.path for n in names}, {n: params.seed + 1000 * i for i, n in enumerate(names)},
        journal_dir, out, {n: system for n in names}, {n: sampling_of(sub) for n, (_, sub) in zip(names, pools)})
    if len(pools) > 1:
        rows = _one_pool(rows, benchmark, {n: t for n, (t, _) in zip(names, pools)}, pools[0][1].num_samples)
    n_total = len(rows)
    n_length = sum(r["finish_reason"] == "length" for r in rows)
    if spec.only_correct:
        rows = [r for r in rows
                if r["finish_reason"] == "stop" and grade(row_gold(r["answer"], r.get("answer_parts")), r["text"])]
    if not rows:
        raise RdptError(f"{stage}: the teacher produced no usable response (check the teacher model and "
                        f"the {stage} params)")
    write_jsonl(out, [r | (extra or {}) for r in rows])
    journal.complete()
    stats = {"n_questions": len(questions), "n_sampled": n_total, "n_truncated": n_length, "n_kept": len(rows),
             "engine": kind}
    if len(pools) > 1:  # how rejection sampling thinned each temperature
        kept = Counter(r["temperature"] for r in rows)
        stats["kept_by_temperature"] = {f"{t:g}": kept[t] for t, _ in pools}
    return stats | ({"n_skipped_too_long": n_skipped} if n_skipped else {})


def _one_pool(rows: list[dict], benchmark: str, temperature: dict[str, float], per: int) -> list[dict]:
    """Rows sampled per temperature set -> one set: sample k of temperature i becomes candidate i * per + k of its
    question (``<benchmark>/<question_id>/<idx>``), ordered by question then index, with its ``temperature``."""
    order = list(temperature)
    out = []
    for r in rows:
        idx = order.index(r["benchmark"]) * per + int(r["sample_idx"])
        out.append(r | {"benchmark": benchmark, "sample_idx": idx, "temperature": temperature[r["benchmark"]],
                        "response_id": f"{benchmark}/{r['question_id']}/{idx}"})
    position = {}
    for r in out:
        position.setdefault(r["question_id"], len(position))
    return sorted(out, key=lambda r: (position[r["question_id"]], r["sample_idx"]))


def teach(params: Params, ref: ModelRef, out: str, journal_dir: str | None = None) -> dict:
    """The teacher answers the train questions under its own template (the distillation data).

    Resumable: finished batches are journaled under ``journal_dir`` (see :mod:`rdpt.io.journal`).
    """
    if params.models.distilled.path is not None:
        # An existing distilled model is traced as is: no distillation data is needed or sampled.
        write_jsonl(out, [])
        log.info("teach: skipped (models.distilled.path = %s)", params.models.distilled.path)
        return {"skipped": True}
    questions = load_questions(params.data.train)
    if params.teach.n_questions is not None:
        questions = questions[: params.teach.n_questions]
    stats = teacher_samples(params, ref, questions, params.teach, "teach", "train", out, journal_dir)
    log.info("teach: %s", stats)
    return stats


def generate(params: Params, ref: ModelRef, name: str, out: str, journal_dir: str | None = None) -> dict:
    """Each benchmark's questions, K samples each, from one model (``name``: its role, for logs and journal).

    Resumable: finished batches are journaled under ``journal_dir`` (see :mod:`rdpt.io.journal`).
    """
    benchmarks = {b: load_questions(spec) for b, spec in params.data.benchmarks.items()}
    seeds = {b: params.seed + 1000 * i for i, b in enumerate(benchmarks)}
    sources = {b: spec.path for b, spec in params.data.benchmarks.items()}
    system_prompts = {b: getattr(spec, "system_prompt", None) for b, spec in params.data.benchmarks.items()}
    per_set = {b: benchmark_sampling(params.generate, spec) for b, spec in params.data.benchmarks.items()}
    rows, kind, journal, n_skipped = _journaled_sampling(params, ref, name, "generate", f"generate-{name}",
                                                         params.generate, benchmarks, sources, seeds, journal_dir,
                                                         out, system_prompts, per_set)
    write_jsonl(out, rows)
    journal.complete()
    return {"n_responses": len(rows), "engine": kind} | ({"n_skipped_too_long": n_skipped} if n_skipped else {})
