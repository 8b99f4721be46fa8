"""The pipeline's steps, one function per DVC stage; `stages/*.py` only parse options and call these.

Each step reads its inputs (checked against :mod:`rdpt.artifacts` schemas), calls the concept
modules (generate, segment, score, classify, grade, correlate, report) and writes its outputs
atomically. Run the whole thing with ``dvc repro``; one step with e.g. ``dvc repro classify``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rdpt import RdptError
from rdpt.artifacts import (
    SCHEMAS,
    atomic_dir,
    check_same_keys,
    read_json,
    read_table,
    write_json,
    write_jsonl,
    write_table,
)
from rdpt.data import Question, load_questions
from rdpt.journal import Journal, code_fingerprint, digest, model_fingerprint
from rdpt.models import (
    ModelRef,
    load_model,
    load_tokenizer,
    render_prompt,
    resolve_device,
    resolve_ref,
    write_ref,
)
from rdpt.params import Params, SamplingParams

log = logging.getLogger(__name__)

ROLES = ("teacher", "student", "distilled")


def model_ref(params: Params, role: str, path: str) -> ModelRef:
    """The model at ``path`` with the revision / chat template params give for ``role``."""
    spec = getattr(params.models, role)
    revision = spec.revision if spec.path == path else None
    return resolve_ref(path, revision, spec.chat_template)


def _load(params: Params, role: str, path: str, padding_side: str = "right"):
    device, dtype = resolve_device(params.device, params.dtype)
    ref = model_ref(params, role, path)
    tokenizer = load_tokenizer(ref, padding_side=padding_side)
    model = load_model(ref, device, dtype)
    log.info("%s: %s on %s (%s)", role, ref.path, device, str(dtype).removeprefix("torch."))
    return model, tokenizer


def _open(params: Params, role: str, path: str, engine: str, padding_side: str = "right"):
    """(model, tokenizer, engine name): the model at ``path`` on the engine it runs on.

    ``server`` when params name a server for ``role`` and ``path`` is that role's model (a model trained
    here, e.g. a selection run's student, stays local); else ``engine`` (``hf`` | ``vllm``). The tokenizer
    always loads here: rdpt renders, tokenizes and decodes on its side whatever the engine.
    """
    from rdpt.engines import load_generation_config

    ref = model_ref(params, role, path)
    spec = getattr(params.models, role)
    if spec.server is not None and ref.path == spec.path:
        from rdpt.server import ServerEngine

        tokenizer = load_tokenizer(ref, padding_side=padding_side)
        server = ServerEngine(spec.server, params.server, model=ref.path,
                              generation_config=load_generation_config(ref.path, ref.revision))
        log.info("%s: %s served at %s (%s)", role, server.model, spec.server, ref.path)
        return server, tokenizer, "server"
    if engine == "vllm":
        from rdpt.vllm_engine import VllmEngine

        tokenizer = load_tokenizer(ref, padding_side=padding_side)
        _, dtype = resolve_device(params.device, params.dtype)
        llm = VllmEngine(ref.path, params.vllm, dtype=str(dtype).removeprefix("torch."), seed=params.seed,
                         revision=ref.revision)
        log.info("%s: %s on vLLM (%s)", role, ref.path, llm.describe())
        return llm, tokenizer, "vllm"
    model, tokenizer = _load(params, role, path, padding_side)
    return model, tokenizer, "hf"


def _close(model) -> None:
    """Shut an external engine down (its processes, its memory); an HF model is left to the GC."""
    from rdpt.engines import ExternalEngine

    if isinstance(model, ExternalEngine):
        model.close()


# ----------------------------------------------------------------------------------------- journals
# teach, generate and score journal each finished batch (rdpt/journal.py), so a killed run resumes.
def _fingerprint(params: Params, stage: str, role: str, model_path: str, modules: list, **inputs) -> dict:
    """Everything a journaled stage's records depend on (the journal key)."""
    device, dtype = resolve_device(params.device, params.dtype)
    ref = model_ref(params, role, model_path)
    return {"stage": stage, "role": role, "model": model_fingerprint(ref.path, ref.revision, ref.chat_template),
            "device": device.type, "dtype": str(dtype), "code": code_fingerprint(modules), **inputs}


def _sample_plans(tokenizer, prompts: dict[str, list[str]], batch_size: int) -> dict[str, list[list[int]]]:
    from rdpt.generate import batch_plan
    from rdpt.models import encode_prompt

    return {name: batch_plan([encode_prompt(tokenizer, p) for p in ps], batch_size) for name, ps in prompts.items()}


def _sample_record_check(plans: dict[str, list[list[int]]], num_samples: int):
    """A journaled batch must hold the plan's prompts and num_samples well-formed responses each."""

    def valid(unit: str, data) -> bool:
        name, _, b = unit.rpartition("/")
        if name not in plans or not b.isdigit() or int(b) >= len(plans[name]):
            return False
        idx = plans[name][int(b)]
        return data["prompts"] == idx and len(data["samples"]) == len(idx) and all(
            len(per_prompt) == num_samples
            and all(isinstance(r["text"], str) and r["finish_reason"] in ("stop", "length")
                    and isinstance(r["n_tokens"], int) for r in per_prompt)
            for per_prompt in data["samples"])

    return valid


# ---------------------------------------------------------------------------------------- sampling
def sample_responses(model, tokenizer, questions: list[Question], benchmark: str, sampling: SamplingParams,
                     seed: int, desc: str, journal: Journal | None = None) -> list[dict]:
    """K sampled responses per question, as `generations` rows (ids: <benchmark>/<question_id>/<k>).

    With a journal, batches it holds (units ``<benchmark>/<batch>``) are reused and new ones recorded.
    """
    from rdpt.generate import sample

    prompts = [render_prompt(tokenizer, q.question) for q in questions]
    done, on_batch = None, None
    if journal is not None:
        done = {int(u.rpartition("/")[2]): d["samples"] for u, d in journal.done.items()
                if u.rpartition("/")[0] == benchmark}

        def record(b: int, idx: list[int], samples: list[list[dict]]) -> None:
            journal.append(f"{benchmark}/{b}", {"prompts": idx, "samples": samples})

        on_batch = record

    outputs = sample(
        model, tokenizer, prompts, num_samples=sampling.num_samples, temperature=sampling.temperature,
        top_p=sampling.top_p, max_new_tokens=sampling.max_new_tokens, batch_size=sampling.batch_size,
        seed=seed, desc=desc, done=done, on_batch=on_batch,
    )
    rows = []
    for q, samples in zip(questions, outputs, strict=True):
        for k, s in enumerate(samples):
            rows.append({
                "response_id": f"{benchmark}/{q.id}/{k}", "benchmark": benchmark, "question_id": q.id,
                "sample_idx": k, "question": q.question, "answer": q.answer, "text": s["text"],
                "finish_reason": s["finish_reason"], "n_tokens": int(s["n_tokens"]),
            })
    return rows


def teach(params: Params, teacher_path: str, out: str, journal_dir: str | None = None) -> dict:
    """The teacher answers the train questions under its own template (the distillation data).

    Resumable: finished batches are journaled under ``journal_dir`` (see :mod:`rdpt.journal`).
    """
    if params.models.distilled.path is not None:
        # An existing distilled model is traced as is: no distillation data is needed or sampled.
        write_jsonl(out, [])
        log.info("teach: skipped (models.distilled.path = %s)", params.models.distilled.path)
        return {"skipped": True}
    questions = load_questions(params.data.train)
    if params.teach.n_questions is not None:
        questions = questions[: params.teach.n_questions]
    stats = _teacher_samples(params, teacher_path, questions, params.teach, "teach", "train", out, journal_dir)
    log.info("teach: %s", stats)
    return stats


def _teacher_samples(params: Params, teacher_path: str, questions: list[Question], spec, stage: str, benchmark: str,
                     out: str, journal_dir: str | None, extra: dict | None = None) -> dict:
    """K teacher responses per question (``spec``: sampling + ``only_correct``), journaled, written to ``out``.

    With ``only_correct``, only finished responses whose answer is right are kept (rejection sampling).
    """
    import rdpt.generate
    import rdpt.models
    from rdpt.grade import grade

    sampling = SamplingParams(**{k: getattr(spec, k) for k in SamplingParams.model_fields})
    model, tokenizer, engine = _open(params, "teacher", teacher_path, sampling.engine, padding_side="left")
    fingerprint = _fingerprint(
        params, stage, "teacher", teacher_path, [rdpt.generate, rdpt.models], seed=params.seed, engine=engine,
        sampling=sampling.model_dump(), questions=digest([[q.id, q.question] for q in questions]))
    plans = _sample_plans(tokenizer, {benchmark: [render_prompt(tokenizer, q.question) for q in questions]},
                          sampling.batch_size)
    with Journal(journal_dir, stage, fingerprint, _sample_record_check(plans, sampling.num_samples)) as journal:
        rows = sample_responses(model, tokenizer, questions, benchmark, sampling, params.seed, stage, journal)
        _close(model)
        n_total = len(rows)
        n_length = sum(r["finish_reason"] == "length" for r in rows)
        if spec.only_correct:
            rows = [r for r in rows if r["finish_reason"] == "stop" and grade(r["answer"], r["text"])]
        if not rows:
            raise RdptError(f"{stage}: the teacher produced no usable response (check the teacher model and "
                            f"the {stage} params)")
        write_jsonl(out, [r | (extra or {}) for r in rows])
        journal.complete()
    return {"n_questions": len(questions), "n_sampled": n_total, "n_truncated": n_length, "n_kept": len(rows),
            "engine": engine}


def distill(params: Params, student_path: str, teach_path: str, out_dir: str) -> dict:
    """Fine-tune the student on the teacher's responses, or record the distilled checkpoint params name."""
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    for folder in (out, tmp):
        if folder.exists():
            shutil.rmtree(folder)
    spec = params.models.distilled
    if spec.path is not None:
        # An existing distilled model: nothing is trained; the folder records which model/revision.
        write_ref(tmp, ModelRef(spec.path, spec.revision, spec.chat_template))
        tmp.rename(out)
        return {"trained": False, "model": spec.path, "revision": spec.revision}

    from rdpt.launch import fine_tune

    rows = read_table(teach_path, "generations")
    # In this process, or under `accelerate launch` when params.launch asks for it (rdpt/launch.py).
    stats = fine_tune(params, student_path, rows, seed=params.seed, out_dir=tmp)
    report = {"trained": True, "base": student_path, **stats}
    write_json(tmp / "train_report.json", report)
    tmp.rename(out)
    return report


def generate(params: Params, role: str, model_path: str, out: str, journal_dir: str | None = None) -> dict:
    """Each benchmark's questions, K samples each, from one model.

    Resumable: finished batches are journaled under ``journal_dir`` (see :mod:`rdpt.journal`).
    """
    import rdpt.generate
    import rdpt.models

    benchmarks = {name: load_questions(spec) for name, spec in params.data.benchmarks.items()}
    sampling = params.generate
    model, tokenizer, engine = _open(params, role, model_path, sampling.engine, padding_side="left")
    fingerprint = _fingerprint(
        params, "generate", role, model_path, [rdpt.generate, rdpt.models], seed=params.seed, engine=engine,
        sampling=sampling.model_dump(),
        benchmarks=[[name, digest([[q.id, q.question] for q in qs])] for name, qs in benchmarks.items()])
    prompts = {name: [render_prompt(tokenizer, q.question) for q in qs] for name, qs in benchmarks.items()}
    check = _sample_record_check(_sample_plans(tokenizer, prompts, sampling.batch_size), sampling.num_samples)
    with Journal(journal_dir, f"generate-{role}", fingerprint, check) as journal:
        rows: list[dict] = []
        for i, (name, questions) in enumerate(benchmarks.items()):
            rows += sample_responses(model, tokenizer, questions, name, sampling, params.seed + 1000 * i,
                                     f"generate {role} {name}", journal)
        _close(model)
        write_jsonl(out, rows)
        journal.complete()
    return {"n_responses": len(rows), "engine": engine}


# ------------------------------------------------------------------------------------------ grading
def evaluate(generations: dict[str, str], out: str) -> pd.DataFrame:
    """Grade every response of every model with math-verify; an unparseable gold names file and row."""
    from rdpt.grade import grade

    frames = []
    for role, path in generations.items():
        df = read_table(path, "generations")
        correct = []
        for i, (gold, text) in enumerate(zip(df["answer"], df["text"])):
            try:
                correct.append(bool(grade(str(gold), str(text))))
            except RdptError as err:
                raise RdptError(f"{path}: row {i}: {err}") from None
        frames.append(df.assign(model=role, correct=correct)[list(SCHEMAS["graded"])])
    graded = pd.concat(frames, ignore_index=True)
    write_table(out, graded, "graded")
    return graded


# ------------------------------------------------------------------------------------- segmentation
def segment(params: Params, generations_path: str, out: str, empty_out: str) -> dict:
    """Split each traced response into sentences (character spans that reconstruct it exactly)."""
    from rdpt.segment import segment as split

    df = read_table(generations_path, "generations")
    rows, empty = [], []
    for rid, bench, text in zip(df["response_id"], df["benchmark"], df["text"]):
        spans = split(str(text), params.segment.method)
        if not spans:
            empty.append({"response_id": rid, "benchmark": bench})
        for k, (start, end) in enumerate(spans):
            rows.append({"response_id": rid, "benchmark": bench, "sentence_idx": k, "start": start, "end": end,
                         "text": text[start:end]})
    columns = list(SCHEMAS["sentences"])
    write_table(out, pd.DataFrame(rows, columns=columns), "sentences")
    write_table(empty_out, pd.DataFrame(empty, columns=["response_id", "benchmark"]), "empty_responses")
    return {"n_responses": len(df), "n_sentences": len(rows), "n_empty": len(empty)}


# ------------------------------------------------------------------------------------------ scoring
def score(params: Params, role: str, model_path: str, generations_path: str, sentences_path: str,
          out_dir: str, journal_dir: str | None = None) -> dict:
    """Per-sentence log-probs of the traced responses under one model, one forward pass per response.

    Resumable: finished batches are journaled under ``journal_dir`` (see :mod:`rdpt.journal`).
    """
    import rdpt.models
    import rdpt.score
    from rdpt.score import ScoreItem

    gens = read_table(generations_path, "generations").set_index("response_id")
    sents = read_table(sentences_path, "sentences")
    missing = set(sents["response_id"]) - set(gens.index)
    if missing:
        raise RdptError(f"{sentences_path}: response_id {sorted(missing)[0]!r} not in {generations_path}")
    rebuilt = sents.sort_values(["response_id", "sentence_idx"]).groupby("response_id")["text"].agg("".join)
    stale = rebuilt.to_numpy() != gens.loc[rebuilt.index, "text"].to_numpy()
    if stale.any():
        raise RdptError(f"{sentences_path}: the sentences of response {rebuilt.index[stale.argmax()]!r} do not "
                        f"rebuild its text in {generations_path} (stale file? rerun segment: dvc repro)")
    model, tokenizer, engine = _open(params, role, model_path, params.score.engine)
    items, index = [], []
    for rid, group in sents.groupby("response_id", sort=True):
        group = group.sort_values("sentence_idx")
        spans = list(zip(group["start"].astype(int), group["end"].astype(int)))
        items.append(ScoreItem(key=rid, prompt=render_prompt(tokenizer, gens.at[rid, "question"]),
                               response=gens.at[rid, "text"], spans=spans))
        index.append(group["sentence_idx"].tolist())
    journal = Journal(journal_dir, f"score-{role}", _fingerprint(
        params, "score", role, model_path, [rdpt.score, rdpt.models], engine=engine, score=params.score.model_dump(),
        items=digest([[it.key, it.prompt, it.response, it.spans] for it in items])))
    results, stats = _score_journaled(model, tokenizer, items, params.score, journal, f"score {role}")
    _close(model)
    rows = []
    for item, idxs, sentence_scores in zip(items, index, results, strict=True):
        for k, (total, n, rank) in zip(idxs, sentence_scores, strict=True):
            rows.append({"response_id": item.key, "sentence_idx": k, "n_tokens": n, "sum_logprob": total,
                         "mean_logprob": total / n if n else float("nan"), "sum_rank": rank})
    table = pd.DataFrame(rows, columns=list(SCHEMAS["scores"]))
    cost = {"model": role, "path": model_path, "engine": engine, **stats.__dict__}
    with atomic_dir(out_dir) as out:  # scores and cost appear together or not at all
        write_table(out / "scores.parquet", table, "scores")
        write_json(out / "cost.json", cost)
    journal.complete()
    return cost


def _score_journaled(model, tokenizer, items: list, sp, journal: Journal, desc: str):
    """:func:`rdpt.score.score_items` batch by batch, each finished batch journaled; same return value.

    A response's scores can differ in the last bits with the batch it ran in (padded width, matmul
    shapes), so a resumed run keeps the plan an uninterrupted run makes: batches are formed from all
    items, finished ones are skipped whole, the others run exactly as planned. Only an out-of-memory
    error (CUDA) changes the plan, as in ``score_items``: the budget halves for what is left.
    """
    import torch
    from tqdm.auto import tqdm

    from rdpt.engines import ExternalEngine
    from rdpt.score import ScoreStats, plan_batches, score_items, score_items_external
    from rdpt.score import _prepare  # tokenizes and validates every item up front (context, vocab, spans)

    external = isinstance(model, ExternalEngine)

    prepared = _prepare(items, tokenizer, model)
    n_sentences = {p.key: p.n_sentences for p in prepared}
    seen: set[str] = set()

    def valid(unit: str, data) -> bool:  # a record holds whole responses of this run, each once
        keys, scores = data["keys"], data["scores"]
        if len(keys) != len(scores) or any(k not in n_sentences or k in seen for k in keys):
            return False
        if any(len(s) != n_sentences[k] or any(len(x) not in (2, 3) for x in s) for k, s in zip(keys, scores)):
            return False
        seen.update(keys)
        return True

    journal.valid = valid
    with journal:
        done = {k: [tuple(x) for x in s] for d in journal.done.values() for k, s in zip(d["keys"], d["scores"])}
        runnable = [p.index for p in prepared if p.response_ids]
        budget = sp.max_tokens_per_batch
        queue = [[runnable[i] for i in b] for b in plan_batches([prepared[i].n_inputs for i in runnable], budget)]
        blank = [p.index for p in prepared if not p.response_ids]  # no forward pass: a unit of their own
        queue += [blank] if blank else []

        def ooms() -> int:  # CUDA out-of-memory errors so far (score_items recovers from them silently)
            if external or model.device.type != "cuda":
                return 0
            return torch.cuda.memory_stats(model.device).get("num_ooms", 0)

        def run(batch_items: list, budget: int):
            if external:  # the engine plans its own memory; a batch is one round of requests
                return score_items_external(model, tokenizer, batch_items, rank_clip=sp.rank_clip)
            return score_items(model, tokenizer, batch_items, chunk_size=sp.chunk_size, max_tokens_per_batch=budget,
                               progress=False, desc=desc, rank_clip=sp.rank_clip)

        total = sum(len(p.response_ids) for p in prepared)
        with tqdm(total=total, unit="tok", unit_scale=True, desc=desc) as bar:
            bar.update(sum(len(p.response_ids) for p in prepared if p.key in done))
            while queue:
                batch = [i for i in queue.pop(0) if items[i].key not in done]
                if not batch:
                    continue
                before = ooms()
                results, stats = run([items[i] for i in batch], budget)
                record = journal.append(str(len(journal.done)), {
                    "keys": [items[i].key for i in batch], "scores": results, "stats": stats.__dict__})
                done.update({k: [tuple(x) for x in s] for k, s in zip(record["keys"], record["scores"])})
                bar.update(stats.tokens_scored)
                if ooms() > before and prepared[batch[0]].response_ids:
                    # score_items split this batch after an out-of-memory error: plan the rest smaller too.
                    budget = len(batch) * prepared[batch[0]].n_inputs // 2
                    pending = [i for b in queue for i in b if prepared[i].response_ids and items[i].key not in done]
                    queue = [[pending[i] for i in b] for b in plan_batches([prepared[i].n_inputs for i in pending],
                                                                           budget)] + ([blank] if blank else [])
        # Cost of the whole job, resumed batches included (their time was spent by the killed run).
        totals: dict = {}
        for data in journal.done.values():
            for key, value in data["stats"].items():
                numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
                totals[key] = totals.get(key, 0) + value if numeric else value
        fields = set(ScoreStats.__dataclass_fields__)
        if totals:
            stats = ScoreStats(**{k: v for k, v in totals.items() if k in fields})
        else:  # nothing to score
            stats = run([], budget)[1]
        stats.tokens_per_s = stats.tokens_scored / stats.wall_s if stats.wall_s > 0 else 0.0
        if external:
            stats.device, stats.dtype = model.describe(), model.dtype
        else:
            stats.device, stats.dtype = str(model.device), str(model.dtype).removeprefix("torch.")
    return [done[it.key] for it in items], stats


# ------------------------------------------------------------------------------------------ noise floor
def noise(params: Params, role: str, model_path: str, generations_path: str, sentences_path: str, out: str) -> dict:
    """Re-score a few traced responses under other batch plans / precision: the scorer's noise floor.

    ``classify.noise_responses`` responses, picked evenly over the sorted ids, once per setup of
    ``classify.noise_replicates`` (see :mod:`rdpt.calibrate`); 0 writes an empty table and loads no model.
    """
    from rdpt.calibrate import NOISE_COLUMNS, pick_responses, rescore_replicates
    from rdpt.score import ScoreItem

    cfg = params.classify
    sents = read_table(sentences_path, "sentences")
    picked = pick_responses(sents["response_id"], cfg.noise_responses)
    if not picked:
        write_table(out, pd.DataFrame({c: pd.Series(dtype=object) for c in NOISE_COLUMNS}), "noise")
        return {"n_responses": 0}
    gens = read_table(generations_path, "generations").set_index("response_id")
    missing = sorted(set(picked) - set(gens.index))
    if missing:
        raise RdptError(f"{sentences_path}: response_id {missing[0]!r} not in {generations_path}")
    model, tokenizer = _load(params, role, model_path)
    items, index = [], []
    for rid, group in sents[sents["response_id"].isin(picked)].groupby("response_id", sort=True):
        group = group.sort_values("sentence_idx")
        spans = list(zip(group["start"].astype(int), group["end"].astype(int)))
        items.append(ScoreItem(key=rid, prompt=render_prompt(tokenizer, gens.at[rid, "question"]),
                               response=gens.at[rid, "text"], spans=spans))
        index.append(group["sentence_idx"].tolist())
    table = rescore_replicates(model, tokenizer, items, index, cfg.noise_replicates, params.score.chunk_size)
    write_table(out, table, "noise")
    return {"n_responses": len(items), "n_rows": len(table)}


# ----------------------------------------------------------------------------------- classification
def classify(params: Params, sentences_path: str, score_dirs: dict[str, str], out: str,
             noise_dir: str | None = None, calibration_out: str | None = None) -> pd.DataFrame:
    """Classify every sentence; with ``calibration_out``, also write the thresholds used and the beta sweep.

    ``noise_dir`` holds ``<role>.parquet`` from the `noise` stages (needed by ``classify.alpha: auto``).
    """
    from rdpt.classify import classify_frame

    df = read_table(sentences_path, "sentences")
    for role in ROLES:
        path = Path(score_dirs[role]) / "scores.parquet"
        scores = read_table(path, "scores")
        # Exactly one score per sentence, and a finite one wherever a token was scored.
        check_same_keys(df, sentences_path, scores, path, ["response_id", "sentence_idx"])
        scored = scores["n_tokens"].to_numpy() > 0
        for column in ("sum_logprob", "mean_logprob"):
            bad = scored & ~np.isfinite(scores[column].to_numpy(dtype=np.float64))
            if bad.any():
                i = int(bad.argmax())
                raise RdptError(f"{path}: row {i}: {column} is {scores[column].iloc[i]} for a scored sentence of "
                                f"{scores['response_id'].iloc[i]!r} (non-finite log-prob: rerun score in float32)")
        scores = scores.rename(
            columns={c: f"{c}_{role}" for c in ("n_tokens", "sum_logprob", "mean_logprob", "sum_rank")})
        merged = df.merge(scores, on=["response_id", "sentence_idx"], how="left", validate="one_to_one")
        if merged[f"n_tokens_{role}"].isna().any():
            rid = merged.loc[merged[f"n_tokens_{role}"].isna(), "response_id"].iloc[0]
            raise RdptError(f"{score_dirs[role]}/scores.parquet: no score for a sentence of {rid!r}")
        df = merged
    thresholds = _thresholds(params, df, noise_dir)
    classified = classify_frame(df, thresholds["alpha_used"], thresholds["beta_used"])
    write_table(out, classified, "classified")
    if calibration_out is not None:
        from rdpt.calibrate import beta_sweep

        sweep = beta_sweep(classified, thresholds["alpha_used"], params.classify.beta_grid)
        write_json(calibration_out, {**thresholds, "beta_sweep": sweep.to_dict(orient="records")})
    return classified


def _thresholds(params: Params, scores: pd.DataFrame, noise_dir: str | None) -> dict:
    """alpha/beta for classify (numbers from params, or calibrated: rdpt/calibrate.py) and how they were chosen."""
    from rdpt.calibrate import noise_floor, resolve_thresholds

    tables = {}
    if noise_dir is not None:
        for role in ROLES:
            path = Path(noise_dir) / f"{role}.parquet"
            tables[role] = read_table(path, "noise")
            unknown = ~tables[role]["response_id"].isin(scores["response_id"]).to_numpy()
            if unknown.any():
                raise RdptError(f"{path}: row {int(unknown.argmax())}: response_id "
                                f"{tables[role]['response_id'].iloc[int(unknown.argmax())]!r} is not a scored "
                                "response (stale file? dvc repro)")
    cfg = params.classify
    return resolve_thresholds(cfg.alpha, cfg.beta, noise_floor(scores, tables), cfg.noise_quantile)


# -------------------------------------------------------------------------------------- correlation
def correlate(params: Params, classified_path: str, graded_path: str, cost_dirs: dict[str, str],
              reports_dir: str, calibration_path: str | None = None) -> dict:
    """Accuracy, class shares, position-wise curves and their areas, figures and the shares table.

    Also the quantified correlation and, with ``calibration_path`` (from classify), the thresholds used and
    the beta sweep: see :func:`_quantified`.
    """
    from rdpt import correlate as stats
    from rdpt import report

    sents = read_table(classified_path, "classified")
    graded = read_table(graded_path, "graded")
    traced = graded[graded["model"] == "distilled"]
    if traced.empty:
        raise RdptError(f"{graded_path}: no graded response of the distilled model (rerun evaluate: dvc repro)")
    unknown = ~sents["response_id"].isin(traced["response_id"]).to_numpy()
    if unknown.any():
        i = int(unknown.argmax())
        raise RdptError(f"{classified_path}: row {i}: response_id {sents['response_id'].iloc[i]!r} is not a "
                        f"distilled response in {graded_path} (stale file? dvc repro)")
    # A trace cut at max_new_tokens never reaches its answer: kept, it would count as "incorrect" only
    # because it is long. Excluded by default, and always counted.
    truncated = traced["finish_reason"] == "length"
    n_truncated = traced[truncated].groupby("benchmark").size()
    if params.correlate.exclude_truncated:
        traced = traced[~truncated]
        sents = sents[sents["response_id"].isin(traced["response_id"])]
    n_sent = sents.groupby("response_id").size()
    responses = traced[["response_id", "benchmark", "correct"]].assign(
        n_sentences=lambda d: d["response_id"].map(n_sent).fillna(0).astype(int))

    reports = Path(reports_dir)
    shares = stats.class_shares(sents, responses)
    curves = stats.position_curves(sents, responses, params.correlate.min_responses)
    area = stats.area_between(curves)
    metrics = stats.metrics(sents, responses, shares, area)
    for bench, entry in metrics.items():
        entry["n_truncated"] = int(n_truncated.get(bench, 0))
        entry["n_excluded_truncated"] = entry["n_truncated"] if params.correlate.exclude_truncated else 0
    accuracy = (graded.groupby(["benchmark", "model"])["correct"].mean().round(4)
                .unstack("model").reindex(columns=list(ROLES)))
    payload = {"accuracy": {b: {m: _num(v) for m, v in row.items()} for b, row in accuracy.iterrows()},
               "provenance": metrics,
               "truncated": {m: int(n) for m, n in graded.assign(t=graded["finish_reason"] == "length")
                             .groupby("model")["t"].sum().items()}}
    payload.update(_quantified(params, sents, responses, traced, reports, calibration_path))
    write_json(reports / "metrics.json", payload)
    cost = {role: read_json(Path(d) / "cost.json") for role, d in cost_dirs.items()}
    write_json(reports / "cost.json", cost)

    (reports / "tables").mkdir(parents=True, exist_ok=True)
    (reports / "tables" / "class_shares.md").write_text(stats.shares_table_markdown(shares))
    curves_out = reports / "plots" / "position_curves.csv"
    curves_out.parent.mkdir(parents=True, exist_ok=True)
    curves.to_csv(curves_out, index=False, float_format="%.6g")

    figures = reports / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    example = params.correlate.example or report.pick_example(sents, responses)
    one = sents[sents["response_id"] == example]
    if one.empty:
        raise RdptError(f"correlate.example: response {example!r} has no classified sentence "
                        "(or it is truncated and correlate.exclude_truncated is on)")
    report.plot_action_split(one, figures / "action_split.png", title=f"Action split: {example}")
    for bench in sorted(responses["benchmark"].unique()):
        report.plot_position_curves(curves, area, figures / f"position_curves_{bench}.png", bench)
    # where the curves above stop: responses reaching each index vs correlate.min_responses
    report.plot_index_counts(stats.index_counts(sents, responses, params.correlate.min_responses),
                             params.correlate.min_responses, figures / "index_counts.png",
                             sorted(responses["benchmark"].unique()))
    return payload


def _quantified(params: Params, sents: pd.DataFrame, responses: pd.DataFrame, traced: pd.DataFrame, reports: Path,
                calibration_path: str | None) -> dict:
    """Metrics blocks ``correlation`` (rdpt/stats.py) and ``classify`` (thresholds used, rdpt/calibrate.py);
    writes tables/correlation.md and, given a calibration, plots/beta_sensitivity.csv and its figure."""
    from rdpt import report
    from rdpt import stats as quant

    cfg = params.correlate
    units = quant.response_units(sents, responses.merge(traced[["response_id", "question_id", "n_tokens"]],
                                                        on="response_id", how="left"))
    table = quant.correlation_table(units, cfg.n_bootstrap, cfg.seed, cfg.reference)
    perm = quant.area_permutation_test(sents, units, cfg.min_responses, cfg.n_permutations, cfg.seed,
                                       cfg.permutation)
    (reports / "tables").mkdir(parents=True, exist_ok=True)
    (reports / "tables" / "correlation.md").write_text(quant.correlation_markdown(table, perm, cfg.n_bootstrap))
    out = {"correlation": quant.correlation_metrics(table, perm, cfg.n_bootstrap)}
    if calibration_path is not None:
        calibration = read_json(calibration_path)
        sweep = pd.DataFrame(calibration.pop("beta_sweep"))
        out["classify"] = calibration
        csv = reports / "plots" / "beta_sensitivity.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        sweep.to_csv(csv, index=False, float_format="%.6g")
        report.plot_beta_sensitivity(sweep, calibration["alpha_used"], calibration["beta_used"],
                                     reports / "figures" / "beta_sensitivity.png")
    return out


# ------------------------------------------------------------------------------------------- viewer
def viewer(classified_path: str, graded_path: str, generations_path: str, out_dir: str) -> list[Path]:
    """One self-contained HTML provenance viewer per benchmark (``<out_dir>/<benchmark>.html``)."""
    from rdpt import viewer as view

    sents = read_table(classified_path, "classified")
    graded = read_table(graded_path, "graded")
    gens = read_table(generations_path, "generations")
    for column in ("start", "end", "text"):  # carried from the sentences table by classify
        if column not in sents.columns:
            raise RdptError(f"{classified_path}: missing column {column!r} (rerun classify)")
    traced = graded[graded["model"] == "distilled"]
    correct = dict(zip(traced["response_id"].astype(str), traced["correct"].astype(bool)))
    ungraded = sorted(set(gens["response_id"].astype(str)) - set(correct))
    if ungraded:
        raise RdptError(f"{graded_path}: no grade for distilled response {ungraded[0]!r} (rerun evaluate)")
    try:
        records = view.viewer_records(sents, gens, correct)
    except RdptError as err:
        raise RdptError(f"{classified_path}: {err} (rerun the stages: dvc repro)") from None
    return view.write_viewers(records, out_dir)


# ---------------------------------------------------------------------------------------- selection
def candidates(params: Params, teacher_path: str, out: str, report_out: str, journal_dir: str | None = None) -> dict:
    """Candidate responses for data selection: K teacher samples per train question, or a dataset of them.

    Only finished, correct candidates are kept when ``select.candidates.only_correct`` (rejection sampling,
    as in ``teach``); rows follow the `generations` schema (ids ``candidates/<question_id>/<k>``) plus a
    ``source`` column, so ``segment`` and ``score`` read them like any traced response. Teacher sampling
    is journaled (resumable) like ``teach``.
    """
    from rdpt.data import load_candidates
    from rdpt.grade import grade

    spec = params.select.candidates
    if spec.source == "teacher":
        questions = load_questions(params.data.train)
        if spec.n_questions is not None:
            questions = questions[: spec.n_questions]
        stats = _teacher_samples(params, teacher_path, questions, spec, "candidates", "candidates", out, journal_dir,
                                 extra={"source": teacher_path})
    else:
        ds = spec.dataset
        if spec.only_correct and ds.answer_field is None:
            raise RdptError("select.candidates.only_correct needs select.candidates.dataset.answer_field "
                            "(or set only_correct: false)")
        rows = [{"response_id": f"candidates/{c.question_id}/{c.sample_idx}", "benchmark": "candidates",
                 "question_id": c.question_id, "sample_idx": c.sample_idx, "question": c.question,
                 "answer": c.answer, "text": c.response, "finish_reason": "stop", "n_tokens": 0,
                 "source": c.source} for c in load_candidates(ds)]
        stats = {"n_questions": len({r["question_id"] for r in rows}), "n_sampled": len(rows), "n_truncated": 0}
        if spec.only_correct:
            rows = [r for r in rows if grade(r["answer"], r["text"])]
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


def select_data(params: Params, candidates_path: str, sentences_path: str, score_dirs: dict[str, str],
                out_dir: str) -> dict:
    """Apply every selection arm to the scored candidates: ``<out>/<arm>/seed<k>.jsonl`` + ``summary.json``.

    Each selection file holds the chosen candidates (`generations` rows + their features), one per question;
    deterministic strategies write the same file for every seed, so DVC reruns only runs whose data changed.
    """
    from rdpt import select as sel

    cands = read_table(candidates_path, "generations")
    sents = read_table(sentences_path, "sentences")[["response_id", "sentence_idx"]]
    for role in ("teacher", "student"):
        path = Path(score_dirs[role]) / "scores.parquet"
        scores = read_table(path, "scores").rename(
            columns={c: f"{c}_{role}" for c in ("n_tokens", "sum_logprob", "mean_logprob", "sum_rank")})
        sents = sents.merge(scores, on=["response_id", "sentence_idx"], how="left", validate="one_to_one")
        if sents[f"n_tokens_{role}"].isna().any():
            rid = sents.loc[sents[f"n_tokens_{role}"].isna(), "response_id"].iloc[0]
            raise RdptError(f"{path}: no score for a sentence of {rid!r} (rerun its score stage)")
    # A candidate without any sentence (blank text) can never be trained on: it leaves the pool.
    with_sentences = cands[cands["response_id"].isin(set(sents["response_id"]))]
    n_dropped = len(cands) - len(with_sentences)
    by_beta: dict[float, pd.DataFrame] = {}

    def features(beta: float) -> pd.DataFrame:
        if beta not in by_beta:
            by_beta[beta] = sel.candidate_features(sents, with_sentences, beta)
        return by_beta[beta]

    reference = features(params.select.beta)
    fields = list(SCHEMAS["generations"]) + [c for c in ("source",) if c in cands.columns]
    rows_of = with_sentences[fields].set_index("response_id", drop=False)
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    summary: dict = {"beta": params.select.beta, "n_candidates": int(len(with_sentences)),
                     "n_dropped_no_sentence": int(n_dropped),
                     "n_questions": int(with_sentences["question_id"].nunique()), "arms": {}}
    for arm in params.select.arms:
        strategy, arm_beta = sel.parse_arm(arm)
        beta = params.select.beta if arm_beta is None else arm_beta
        per_seed = []
        for seed in params.select.seeds:
            chosen = sel.select(features(beta), strategy, seed)
            ids = chosen["response_id"]
            rows = rows_of.loc[ids].reset_index(drop=True)
            # Selection-time features travel with each row (at the arm's beta), for inspection.
            extra = chosen[list(sel.FEATURES)].reset_index(drop=True)
            # to_json: native types, and an infinite RSR (NLL 0) becomes null rather than non-standard JSON
            records = json.loads(pd.concat([rows, extra], axis=1).to_json(orient="records", force_ascii=False))
            write_jsonl(tmp / arm / f"seed{seed}.jsonl", records)
            # Statistics at the common beta, so arms compare on one scale.
            common = sel.selection_stats(reference.set_index("response_id").loc[ids].reset_index())
            per_seed.append(common | {"mean_teacher_count_own_beta": sel.selection_stats(chosen)["mean_teacher_count"]})
        stats = pd.DataFrame(per_seed).mean().to_dict()
        summary["arms"][arm] = {"strategy": strategy, "beta": beta, "doc": sel.STRATEGIES[strategy].doc,
                                **{k: float(v) for k, v in stats.items()}}
    write_json(tmp / "summary.json", summary)
    write_table(tmp / "features.parquet", reference, "candidate_features")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return summary


def select_run(params: Params, student_path: str, selection_path: str, seed: int, out_dir: str) -> dict:
    """Fine-tune the original student on one selection (``distill`` hyper-parameters), then evaluate it on
    every benchmark with ``generate``'s sampling settings: ``<out>/eval.jsonl`` + ``train_report.json``."""
    from rdpt.grade import grade
    from rdpt.launch import fine_tune

    rows = read_table(selection_path, "generations")
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    for folder in (out, tmp):
        shutil.rmtree(folder, ignore_errors=True)
    # Trained (in this process or under accelerate launch) and saved: every engine samples from the folder.
    stats = fine_tune(params, student_path, rows, seed=seed, out_dir=tmp / "model")
    model, tokenizer, _ = _open(params, "student", str(tmp / "model"), params.generate.engine, padding_side="left")
    evals: list[dict] = []
    for i, (name, spec) in enumerate(params.data.benchmarks.items()):
        # the same seeds as `generate` for seed 0; each seed samples afresh
        evals += sample_responses(model, tokenizer, load_questions(spec), name, params.generate, seed + 1000 * i,
                                  f"evaluate {Path(out_dir).parent.name}/seed{seed} {name}")
    _close(model)
    for r in evals:
        r["correct"] = bool(grade(r["answer"], r["text"]))
    accuracy = pd.DataFrame(evals).groupby("benchmark")["correct"].mean()
    report = {"selection": selection_path, "seed": seed, "base": student_path, **stats,
              "accuracy": {b: float(a) for b, a in accuracy.items()}}
    write_jsonl(tmp / "eval.jsonl", evals)
    write_json(tmp / "train_report.json", report)
    if not params.select.keep_models:
        shutil.rmtree(tmp / "model")
    tmp.rename(out)
    return report


def select_report(params: Params, selections_dir: str, runs_dir: str, candidates_report: str,
                  reports_dir: str, metrics_out: str) -> dict:
    """Accuracy per arm x benchmark (mean and 95% CI over seeds, paired delta vs random) and the tables."""
    from rdpt import selection_report as sr

    summary = json.loads((Path(selections_dir) / "summary.json").read_text())
    runs = sr.load_runs(runs_dir, params.select.arms, params.select.seeds, list(params.data.benchmarks))
    table = sr.accuracy_table(runs)
    metrics = sr.metrics(table, summary, json.loads(Path(candidates_report).read_text()))
    reports = Path(reports_dir)
    tmp = reports.with_name(f".{reports.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sr.write_tables(table, summary, params.select, tmp)
    sr.plot_accuracy(table, tmp / "accuracy.png")
    shutil.rmtree(reports, ignore_errors=True)
    tmp.rename(reports)
    write_json(metrics_out, metrics)
    return metrics


def _num(value):
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
