"""HF vs vLLM on the same model and questions: sampling speed and accuracy, scoring speed and agreement.

Runs in the vLLM venv (docs/scaling-up.md) and prints ONE JSON object, everything measured in one run::

    .venv-vllm/bin/python benchmarks/engines.py --model data/toy/models/teacher \\
        --questions data/toy/data/toy_easy.jsonl --samples 4 --max-new-tokens 160 --json

- ``sample``: per engine, wall time for all questions x samples (vLLM: start-up timed apart), generated
  tokens per second, accuracy graded by math-verify, and the share of truncated responses; the vLLM /
  HF accuracy difference with its 95% normal interval (independent samples of the same model);
- ``score``: the HF-sampled responses scored per sentence by the HF one-pass scorer and by vLLM's prompt
  log-probs: wall times, tokens/s, the max |difference| of sentence mean log-probs and how many clipped
  ranks differ.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time


def _accuracy(questions, outs) -> tuple[float, int, float]:
    from rdpt.generation.grade import grade

    flags = [grade(q["answer"], r["text"]) for q, rows in zip(questions, outs) for r in rows]
    truncated = sum(r["finish_reason"] == "length" for rows in outs for r in rows)
    return sum(flags) / len(flags), len(flags), truncated / len(flags)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="data/toy/models/teacher")
    ap.add_argument("--questions", default="data/toy/data/toy_easy.jsonl")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    args = ap.parse_args()

    import torch

    from rdpt.engines.hf import HfEngine
    from rdpt.engines.vllm import VllmEngine
    from rdpt.generation.sample import sample
    from rdpt.models import load_model, load_tokenizer, render_prompt, resolve_device
    from rdpt.params import VllmParams
    from rdpt.provenance.score import ScoreItem, score_items
    from rdpt.provenance.segment import split

    with open(args.questions) as fh:
        questions = [json.loads(line) for line in fh if line.strip()]
    device, dtype = resolve_device()
    tok = load_tokenizer(args.model, padding_side="left")
    prompts = [render_prompt(tok, q["question"]) for q in questions]
    kw = {"num_samples": args.samples, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": args.max_new_tokens,
          "batch_size": args.batch_size, "seed": 0}
    report: dict = {"model": args.model, "questions": len(questions), "samples": args.samples,
                    "device": str(device), "dtype": str(dtype).removeprefix("torch."),
                    "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}

    t = time.perf_counter()
    model = load_model(args.model, device, dtype)
    hf = HfEngine(model, pad_id=tok.pad_token_id)
    hf_load = time.perf_counter() - t
    t = time.perf_counter()
    hf_out = sample(hf, tok, prompts, desc="hf", **kw)
    hf_s = time.perf_counter() - t

    t = time.perf_counter()
    engine = VllmEngine(args.model, VllmParams(gpu_memory_utilization=args.gpu_memory_utilization),
                        dtype=str(dtype).removeprefix("torch."), seed=0)
    vl_load = time.perf_counter() - t
    t = time.perf_counter()
    vl_out = sample(engine, tok, prompts, desc="vllm", **kw)
    vl_s = time.perf_counter() - t

    stats = {}
    for name, outs, load, wall in (("hf", hf_out, hf_load, hf_s), ("vllm", vl_out, vl_load, vl_s)):
        acc, n, trunc = _accuracy(questions, outs)
        tokens = sum(r["n_tokens"] for rows in outs for r in rows)
        stats[name] = {"load_s": round(load, 2), "sample_s": round(wall, 2), "tokens": tokens,
                       "tokens_per_s": round(tokens / wall, 1), "accuracy": round(acc, 4), "n": n,
                       "truncated": round(trunc, 4)}
    diff = stats["vllm"]["accuracy"] - stats["hf"]["accuracy"]
    se = math.sqrt(sum(s["accuracy"] * (1 - s["accuracy"]) / s["n"] for s in stats.values()))
    report["sample"] = {**stats, "accuracy_diff": round(diff, 4),
                        "accuracy_diff_ci95": [round(diff - 1.96 * se, 4), round(diff + 1.96 * se, 4)],
                        "vllm_over_hf_time": round(vl_s / hf_s, 3)}

    items = []
    for p, rows in zip(prompts, hf_out):
        for r in rows:
            if r["text"].strip():
                items.append(ScoreItem(key=str(len(items)), prompt=p, response=r["text"], spans=split(r["text"])))
    t = time.perf_counter()
    ref, ref_stats = score_items(hf, tok, items, rank_clip=100, progress=False)
    hf_score = time.perf_counter() - t
    t = time.perf_counter()
    ext, _ = score_items(engine, tok, items, rank_clip=100, progress=False)
    vl_score = time.perf_counter() - t
    engine.close()
    max_diff, rank_mismatch, sentences = 0.0, 0, 0
    for a, b in zip(ext, ref):
        for (la, na, ra), (lb, nb, rb) in zip(a, b):
            if na:
                sentences += 1
                max_diff = max(max_diff, abs(la / na - lb / nb))
                rank_mismatch += ra != rb
    report["score"] = {"responses": len(items), "sentences": sentences, "tokens": ref_stats.tokens_scored,
                       "hf_s": round(hf_score, 2), "vllm_s": round(vl_score, 2),
                       "vllm_over_hf_time": round(vl_score / hf_score, 3),
                       "max_abs_diff_mean_logprob": float(f"{max_diff:.3g}"), "rank_mismatches": rank_mismatch}
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":  # vLLM may spawn its engine process: the guard keeps the child from rerunning this
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
