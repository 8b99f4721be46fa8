"""Benchmark the one-pass sentence scorer: speed, exactness, memory, against the obvious alternatives.

Builds a random-weight Qwen2-shaped model and a byte-level BPE tokenizer locally, writes synthetic
reasoning-like responses of 30-60 sentences, and prints ONE JSON object::

    python benchmarks/scoring.py --json              # about 4 minutes on 2 CPU cores
    python benchmarks/scoring.py --json --quick      # a smoke run in well under a minute

Measured, on the same responses in the same run:

- ``speedup_vs_per_sentence``: time of :func:`rdpt.provenance.score.reference_score_items` (one full forward and
  full log-softmax per sentence) / time of :func:`rdpt.provenance.score.score_items`;
- ``max_abs_diff_logprob``: max |difference| of sentence mean log-probs between the two;
- ``fraction_of_forward``: throughput of ``score_items`` / throughput of a bare
  ``model(input_ids, attention_mask, position_ids, logits_to_keep=1)`` on the same padded batches
  (the decoder plus one position of the LM head: the least any scorer must run). ``head_to_body_flops``
  says how much of the model's per-token work the LM head is, which bounds this fraction;
- ``long_seq_peak_rss_gb``: peak RSS of a fresh process scoring ONE 32,768-token response with a
  151,936-token vocabulary (small hidden size), next to the 20 GB a full fp32 [L, V] logits tensor
  would take;
- ``lm_eval_speedup`` / ``lm_eval_max_abs_diff``: the same sentences as lm-eval ``loglikelihood``
  requests (context = prompt + response before the sentence's first token, continuation = the
  sentence's tokens' text) through ``lm_eval.models.huggingface.HFLM``; null with a reason when
  lm-eval is not installed. lm-eval re-tokenizes context + continuation jointly, so the diff is taken
  over the sentences whose lm-eval tokens equal ours, and the others are counted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from rdpt.engines.hf import HfEngine, collate
from rdpt.models import context_length, encode_prompt_response, load_tokenizer, render_prompt
from rdpt.provenance.score import ScoreItem, plan_batches, reference_score_items, score_items
from rdpt.provenance.segment import split
from rdpt.provenance.tokens import assign_tokens


def _score(model, tokenizer, items, *, max_tokens_per_batch=16384, **kwargs):
    """rdpt's scorer on a loaded HF model (the hf engine, default LM-head chunk)."""
    engine = HfEngine(model, max_tokens_per_batch=max_tokens_per_batch, pad_id=tokenizer.pad_token_id)
    return score_items(engine, tokenizer, items, **kwargs)

TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
OPENERS = ["First,", "Next,", "So", "Then", "Wait,", "Hmm,", "Now", "Therefore,", "Let me check:", "Alternatively,"]
VERBS = ["we add", "we multiply", "I subtract", "we divide", "I compare", "we substitute", "we factor", "I square"]
NOUNS = ["the total", "both sides", "the remainder", "the next term", "each digit", "the area", "the sum", "x"]
TAILS = ["to get", "which gives", "and obtain", "so the answer is", "leaving", "so we have"]


def synthetic_sentence(rng: random.Random) -> str:
    a, b = rng.randint(2, 999), rng.randint(2, 99)
    words = [rng.choice(OPENERS), rng.choice(VERBS), str(b), "to" if rng.random() < 0.5 else "from", rng.choice(NOUNS)]
    words += [rng.choice(TAILS), f"{a} + {b} = {a + b}"] if rng.random() < 0.7 else [f"({a})"]
    if rng.random() < 0.3:
        words += ["because", rng.choice(NOUNS), "is", "even" if a % 2 == 0 else "odd"]
    return " ".join(words) + rng.choice([".", ".", ".", "?", "!"])


def synthetic_response(rng: random.Random, n_sentences: int) -> str:
    return "".join(synthetic_sentence(rng) + rng.choice([" ", " ", "\n", "\n\n"]) for _ in range(n_sentences)).strip()


def build_tokenizer(folder: Path, vocab_size: int, seed: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(seed)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((synthetic_response(rng, 20) for _ in range(1500)), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = TEMPLATE
    fast.save_pretrained(folder)


def build_model(vocab_size: int, hidden: int, layers: int, intermediate: int, context: int, seed: int):
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 128),
        max_position_embeddings=context,
        initializer_range=0.1,  # peaked distributions, so that exactness is tested on varied log-probs
        tie_word_embeddings=False,
    )
    return AutoModelForCausalLM.from_config(config).eval()


def head_to_body_flops(model, mean_len: int) -> float:
    """Per-token matmul FLOPs of the LM head over those of the decoder (weights + attention scores)."""
    cfg = model.config
    head = cfg.vocab_size * cfg.hidden_size
    body = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)
    attention = cfg.num_hidden_layers * 2 * mean_len * cfg.hidden_size  # QK^T and AV, causal mean context L/2
    return head / (body + attention)


def make_items(tokenizer, n: int, seed: int, lo: int = 30, hi: int = 60) -> list[ScoreItem]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        response = synthetic_response(rng, rng.randint(lo, hi))
        prompt = render_prompt(tokenizer, f"Problem {i}: compute {rng.randint(10, 999)} * {rng.randint(2, 99)}.")
        items.append(ScoreItem(f"resp{i}", prompt, response, split(response)))
    return items


def long_item(tokenizer, key: str, n_tokens: int, seed: int) -> ScoreItem:
    """A synthetic response cut so that prompt + response is at most n_tokens tokens."""
    prompt = render_prompt(tokenizer, f"Solve long problem {key}.")
    n_prompt = len(encode_prompt_response(tokenizer, prompt, "").prompt_ids)
    text = synthetic_response(random.Random(seed), n_tokens // 8)  # ~15 tokens a sentence: more than needed
    offsets = encode_prompt_response(tokenizer, prompt, text).offsets
    if len(offsets) > n_tokens - n_prompt:
        text = text[: offsets[n_tokens - n_prompt - 1][1]]
    return ScoreItem(key, prompt, text, split(text))


def seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bare_forward(model, tokenizer, items: list[ScoreItem], max_tokens_per_batch: int) -> None:
    """The same padded batches as score_items, through the full model with one logit position kept."""
    seqs = []
    for item in items:
        enc = encode_prompt_response(tokenizer, item.prompt, item.response)
        seqs.append(enc.input_ids[:-1])
    with torch.inference_mode():
        for batch in plan_batches([len(s) for s in seqs], max_tokens_per_batch):
            inputs = collate([seqs[i] for i in batch], tokenizer.pad_token_id, model.device)
            model(**inputs, logits_to_keep=1, use_cache=False)


def sentence_means(scores) -> list[float]:
    return [s / n for sentences in scores for s, n in sentences if n]


def lm_eval_comparison(model, tokenizer, items, ours, ours_s: float, batch_size: int) -> dict:
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except ImportError as err:
        reason = f"lm-eval not importable ({err}); pip install lm-eval to measure"
        return {"lm_eval_speedup": None, "lm_eval_max_abs_diff": None, "lm_eval_note": reason}

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=context_length(model))
    requests, ours_sums, same_tokens = [], [], []
    for item, sentences in zip(items, ours):
        enc = encode_prompt_response(tokenizer, item.prompt, item.response)
        sentence_of = assign_tokens(enc.offsets, item.spans, item.response)
        for k, (logprob, n) in enumerate(sentences):
            if not n:
                continue
            tokens = [j for j, s in enumerate(sentence_of) if s == k]
            start, end = enc.offsets[tokens[0]][0], enc.offsets[tokens[-1]][1]
            context, continuation = item.prompt + item.response[:start], item.response[start:end]
            requests.append(Instance("loglikelihood", {}, (context, continuation), len(requests)))
            ours_sums.append(logprob)
            ctx_enc, cont_enc = lm._encode_pair(context, continuation)
            same_tokens.append(
                ctx_enc == enc.prompt_ids + enc.response_ids[: tokens[0]]
                and cont_enc == [enc.response_ids[j] for j in tokens]
            )
    started = time.perf_counter()
    theirs = lm.loglikelihood(requests, disable_tqdm=True)
    theirs_s = time.perf_counter() - started
    diffs = [abs(a - b) for a, (b, _), same in zip(ours_sums, theirs, same_tokens) if same]
    other = [abs(a - b) for a, (b, _), same in zip(ours_sums, theirs, same_tokens) if not same]
    return {
        "lm_eval_speedup": theirs_s / ours_s,
        "lm_eval_max_abs_diff": max(diffs) if diffs else None,
        "lm_eval_s": theirs_s,
        "lm_eval_requests": len(requests),
        "lm_eval_batch_size": batch_size,
        "lm_eval_token_mismatches": len(other),
        "lm_eval_max_abs_diff_on_mismatches": max(other) if other else None,
        "lm_eval_note": "summed log-probs; diff over sentences whose lm-eval tokens equal ours",
    }


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux


def long_seq_child(tokenizer_dir: str, n_tokens: int, vocab: int) -> dict:
    """Run in a fresh process: peak RSS of scoring one n_tokens-long response."""
    tokenizer = load_tokenizer(tokenizer_dir)
    model = build_model(vocab, hidden=64, layers=2, intermediate=256, context=n_tokens, seed=0)
    rss_model_gb = peak_rss_gb()
    item = long_item(tokenizer, "long", n_tokens, seed=0)
    (scores,), stats = _score(model, tokenizer, [item], progress=False)
    n_prompt = len(encode_prompt_response(tokenizer, item.prompt, "").prompt_ids)
    return {
        "long_seq_peak_rss_gb": peak_rss_gb(),
        "long_seq_rss_after_model_gb": rss_model_gb,
        "long_seq_tokens": n_prompt + stats.tokens_scored,
        "long_seq_vocab": vocab,
        "long_seq_sentences": len(scores),
        "long_seq_s": stats.wall_s,
        "long_seq_full_logits_fp32_gb": (n_prompt + stats.tokens_scored) * vocab * 4 / 1e9,
    }


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "load_average_1m_at_start": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object on stdout")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--responses", type=int, default=None, help="responses for speed and exactness")
    parser.add_argument("--long-seq-tokens", type=int, default=32768)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 avoids OpenMP spin-waits on a busy machine")
    parser.add_argument("--long-seq-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.long_seq_child:
        print(json.dumps(long_seq_child(args.long_seq_child, args.long_seq_tokens, 151936)))
        return

    # Libraries may print to stdout; keep stdout for the one JSON object.
    with contextlib.redirect_stdout(sys.stderr):
        report = run(args)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))


def run(args) -> dict:
    quick = args.quick
    n_responses = args.responses or (2 if quick else 6)
    report: dict = {"machine": machine_info()}
    budget = 16384
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp) / "tokenizer"
        build_tokenizer(tok_dir, vocab_size=4096, seed=0)
        tokenizer = load_tokenizer(str(tok_dir))
        # Qwen2-shaped and scaled down so that the head is as small a part of the work as in a 7B model.
        hidden, layers = (128, 2) if quick else (256, 8)
        vocab = max(len(tokenizer), 4096)  # a model's vocab may exceed its tokenizer's, as Qwen's does
        model = build_model(vocab, hidden, layers, intermediate=int(hidden * 5.5), context=8192, seed=0)
        items = make_items(tokenizer, n_responses, seed=1)
        lengths = [len(encode_prompt_response(tokenizer, it.prompt, it.response).input_ids) for it in items]
        report["model"] = {
            "arch": "Qwen2ForCausalLM (random weights)",
            "hidden": hidden,
            "layers": layers,
            "vocab": model.config.vocab_size,
            "params": model.num_parameters(),
            "dtype": str(model.dtype).removeprefix("torch."),
            "head_to_body_flops": head_to_body_flops(model, sum(lengths) // len(lengths) // 2),
        }
        report["data"] = {
            "responses": n_responses,
            "sentences": sum(len(it.spans) for it in items),
            "min_sentences_per_response": min(len(it.spans) for it in items),
            "mean_tokens_per_response": sum(lengths) / len(lengths),
            "max_tokens_per_batch": budget,
        }

        _score(model, tokenizer, items[:1], progress=False)  # warm-up: allocator, kernels
        repeats = 2 if quick else 5
        ours_s = forward_s = float("inf")
        for _ in range(repeats):  # interleaved, so that a load change on the machine hits both alike
            ours_s = min(ours_s, seconds(lambda: _score(model, tokenizer, items, max_tokens_per_batch=budget,
                                                             progress=False)))
            forward_s = min(forward_s, seconds(lambda: bare_forward(model, tokenizer, items, budget)))
        ours, stats = _score(model, tokenizer, items, max_tokens_per_batch=budget, progress=False)

        reference: list = []
        reference_s = seconds(lambda: reference.extend(reference_score_items(model, tokenizer, items)))

        diffs = [abs(a - b) for a, b in zip(sentence_means(ours), sentence_means(reference))]
        report.update(
            {
                "speedup_vs_per_sentence": reference_s / ours_s,
                "max_abs_diff_logprob": max(diffs),
                "fraction_of_forward": forward_s / ours_s,
                "fraction_of_forward_baseline": "model(input_ids, attention_mask, position_ids, logits_to_keep=1)",
                "ours_s": ours_s,
                "reference_s": reference_s,
                "forward_s": forward_s,
                "ours_tokens_per_s": stats.tokens_scored / ours_s,
                "timing": f"best of {repeats} for ours and the bare forward, one run of the reference",
            }
        )
        report.update(lm_eval_comparison(model, tokenizer, items, ours, ours_s, batch_size=8))

        child = subprocess.run(
            [sys.executable, __file__, "--long-seq-child", str(tok_dir), "--long-seq-tokens",
             str(4096 if quick else args.long_seq_tokens), "--threads", str(torch.get_num_threads())],
            capture_output=True, text=True, check=False,
        )
        if child.returncode != 0:
            raise SystemExit(f"long-sequence child failed:\n{child.stderr[-2000:]}")
        report.update(json.loads(child.stdout.strip().splitlines()[-1]))
    report["machine"]["load_average_1m_at_end"] = os.getloadavg()[0]
    return report


if __name__ == "__main__":
    main()
