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
from rdpt.artifacts import SCHEMAS, read_table, write_json, write_jsonl, write_table
from rdpt.data import Question, load_questions
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


# ---------------------------------------------------------------------------------------- sampling
def sample_responses(model, tokenizer, questions: list[Question], benchmark: str, sampling: SamplingParams,
                     seed: int, desc: str) -> list[dict]:
    """K sampled responses per question, as `generations` rows (ids: <benchmark>/<question_id>/<k>)."""
    from rdpt.generate import sample

    prompts = [render_prompt(tokenizer, q.question) for q in questions]
    outputs = sample(
        model, tokenizer, prompts, num_samples=sampling.num_samples, temperature=sampling.temperature,
        top_p=sampling.top_p, max_new_tokens=sampling.max_new_tokens, batch_size=sampling.batch_size,
        seed=seed, desc=desc,
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


def teach(params: Params, teacher_path: str, out: str) -> dict:
    """The teacher answers the train questions under its own template (the distillation data)."""
    from rdpt.grade import grade

    if params.models.distilled.path is not None:
        # An existing distilled model is traced as is: no distillation data is needed or sampled.
        write_jsonl(out, [])
        log.info("teach: skipped (models.distilled.path = %s)", params.models.distilled.path)
        return {"skipped": True}
    questions = load_questions(params.data.train)
    if params.teach.n_questions is not None:
        questions = questions[: params.teach.n_questions]
    model, tokenizer = _load(params, "teacher", teacher_path, padding_side="left")
    rows = sample_responses(model, tokenizer, questions, "train", params.teach, params.seed, "teach")
    n_total = len(rows)
    n_length = sum(r["finish_reason"] == "length" for r in rows)
    if params.teach.only_correct:
        rows = [r for r in rows if r["finish_reason"] == "stop" and grade(r["answer"], r["text"])]
    if not rows:
        raise RdptError("teach: the teacher produced no usable response (check the teacher model and teach.*)")
    write_jsonl(out, rows)
    stats = {"n_questions": len(questions), "n_sampled": n_total, "n_truncated": n_length, "n_kept": len(rows)}
    log.info("teach: %s", stats)
    return stats


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

    from rdpt.train import sft

    rows = read_table(teach_path, "generations")
    model, tokenizer = _load(params, "student", student_path)
    examples = [{"prompt": render_prompt(tokenizer, q), "response": t} for q, t in zip(rows["question"], rows["text"])]
    stats = sft(model, tokenizer, examples, params.distill, output_dir=str(tmp / "_trainer"), seed=params.seed)
    shutil.rmtree(tmp / "_trainer", ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    report = {"trained": True, "base": student_path, **stats}
    write_json(tmp / "train_report.json", report)
    tmp.rename(out)
    return report


def generate(params: Params, role: str, model_path: str, out: str) -> dict:
    """Each benchmark's questions, K samples each, from one model."""
    model, tokenizer = _load(params, role, model_path, padding_side="left")
    rows: list[dict] = []
    for i, (name, spec) in enumerate(params.data.benchmarks.items()):
        questions = load_questions(spec)
        rows += sample_responses(model, tokenizer, questions, name, params.generate, params.seed + 1000 * i,
                                 f"generate {role} {name}")
    write_jsonl(out, rows)
    return {"n_responses": len(rows)}


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
          out_dir: str) -> dict:
    """Per-sentence log-probs of the traced responses under one model, one forward pass per response."""
    from rdpt.score import ScoreItem, score_items

    gens = read_table(generations_path, "generations").set_index("response_id")
    sents = read_table(sentences_path, "sentences")
    missing = set(sents["response_id"]) - set(gens.index)
    if missing:
        raise RdptError(f"{sentences_path}: response_id {sorted(missing)[0]!r} not in {generations_path}")
    model, tokenizer = _load(params, role, model_path)
    items, index = [], []
    for rid, group in sents.groupby("response_id", sort=True):
        group = group.sort_values("sentence_idx")
        spans = list(zip(group["start"].astype(int), group["end"].astype(int)))
        items.append(ScoreItem(key=rid, prompt=render_prompt(tokenizer, gens.at[rid, "question"]),
                               response=gens.at[rid, "text"], spans=spans))
        index.append(group["sentence_idx"].tolist())
    results, stats = score_items(model, tokenizer, items, chunk_size=params.score.chunk_size,
                                 max_tokens_per_batch=params.score.max_tokens_per_batch, desc=f"score {role}")
    rows = []
    for item, idxs, sentence_scores in zip(items, index, results, strict=True):
        for k, (total, n) in zip(idxs, sentence_scores, strict=True):
            rows.append({"response_id": item.key, "sentence_idx": k, "n_tokens": n, "sum_logprob": total,
                         "mean_logprob": total / n if n else float("nan")})
    table = pd.DataFrame(rows, columns=list(SCHEMAS["scores"]))
    cost = {"model": role, "path": model_path, **stats.__dict__}
    out = Path(out_dir)
    write_table(out / "scores.parquet", table, "scores")
    write_json(out / "cost.json", cost)
    return cost


# ----------------------------------------------------------------------------------- classification
def classify(params: Params, sentences_path: str, score_dirs: dict[str, str], out: str) -> pd.DataFrame:
    from rdpt.classify import classify_frame

    df = read_table(sentences_path, "sentences")
    for role in ROLES:
        scores = read_table(Path(score_dirs[role]) / "scores.parquet", "scores")
        scores = scores.rename(columns={c: f"{c}_{role}" for c in ("n_tokens", "sum_logprob", "mean_logprob")})
        merged = df.merge(scores, on=["response_id", "sentence_idx"], how="left", validate="one_to_one")
        if merged[f"n_tokens_{role}"].isna().any():
            rid = merged.loc[merged[f"n_tokens_{role}"].isna(), "response_id"].iloc[0]
            raise RdptError(f"{score_dirs[role]}/scores.parquet: no score for a sentence of {rid!r}")
        df = merged
    classified = classify_frame(df, params.classify.alpha, params.classify.beta)
    write_table(out, classified, "classified")
    return classified


# -------------------------------------------------------------------------------------- correlation
def correlate(params: Params, classified_path: str, graded_path: str, cost_dirs: dict[str, str],
              reports_dir: str) -> dict:
    """Accuracy, class shares, position-wise curves and their areas, figures and the shares table."""
    from rdpt import correlate as stats
    from rdpt import report

    sents = read_table(classified_path, "classified")
    graded = read_table(graded_path, "graded")
    traced = graded[graded["model"] == "distilled"]
    n_sent = sents.groupby("response_id").size()
    responses = traced[["response_id", "benchmark", "correct"]].assign(
        n_sentences=lambda d: d["response_id"].map(n_sent).fillna(0).astype(int))

    reports = Path(reports_dir)
    shares = stats.class_shares(sents, responses)
    curves = stats.position_curves(sents, responses, params.correlate.min_responses)
    area = stats.area_between(curves)
    metrics = stats.metrics(sents, responses, shares, area)
    accuracy = (graded.groupby(["benchmark", "model"])["correct"].mean().round(4)
                .unstack("model").reindex(columns=list(ROLES)))
    payload = {"accuracy": {b: {m: _num(v) for m, v in row.items()} for b, row in accuracy.iterrows()},
               "provenance": metrics,
               "truncated": {m: int(n) for m, n in graded.assign(t=graded["finish_reason"] == "length")
                             .groupby("model")["t"].sum().items()}}
    write_json(reports / "metrics.json", payload)
    cost = {role: json.loads((Path(d) / "cost.json").read_text()) for role, d in cost_dirs.items()}
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
        raise RdptError(f"correlate.example: response {example!r} has no classified sentence")
    report.plot_action_split(one, figures / "action_split.png", title=f"Action split: {example}")
    for bench in sorted(responses["benchmark"].unique()):
        report.plot_position_curves(curves, area, figures / f"position_curves_{bench}.png", bench)
    return payload


def _num(value):
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
