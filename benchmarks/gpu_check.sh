#!/usr/bin/env bash
# GPU check of the one-pass scorer (rdpt.score.score_items) at realistic size, in under 5 minutes:
# a random-weight model shaped like Qwen2-1.5B (hidden 1536, 28 layers, 12 heads, 2 KV heads,
# intermediate 8960, vocab 151936, tied embeddings) in bf16 scores synthetic 16k-token responses.
# Prints one JSON object: tokens/s, MFU = 2 * params * tokens / time / 989e12 (H100 dense bf16 peak;
# attention FLOPs not counted, so this understates the work at 16k), the fraction of a bare forward,
# peak GPU memory (also for one 32k-token response) and the bf16 difference to the per-sentence reference.
#
#   bash benchmarks/gpu_check.sh                 # on a CUDA machine
#   bash benchmarks/gpu_check.sh --tiny          # the same code on CPU with a tiny model (smoke test)
#   PYTHON=/path/to/python bash benchmarks/gpu_check.sh
#
# Needs torch, transformers, tokenizers, numpy and tqdm; rdpt is imported from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [[ " $* " != *" --tiny "* ]]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
fi
export PYTHONPATH="$PWD:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec "$PYTHON" - "$@" <<'PY'
import argparse, contextlib, json, sys, tempfile, time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from rdpt.models import encode_prompt_response, load_tokenizer
from rdpt.score import collate, plan_batches, reference_score_items, score_items
from scoring import build_tokenizer, long_item, make_items

H100_BF16_DENSE_FLOPS = 989e12

parser = argparse.ArgumentParser()
parser.add_argument("--tiny", action="store_true", help="tiny model on CPU: checks the script, not the GPU")
parser.add_argument("--responses", type=int, default=4)
parser.add_argument("--tokens", type=int, default=16384, help="prompt + response tokens per response")
parser.add_argument("--long-tokens", type=int, default=32768)
args = parser.parse_args()

device = torch.device("cpu" if args.tiny else "cuda")
if device.type == "cuda" and not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device (use --tiny to run the script on CPU)")
if args.tiny:
    shape = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=256, vocab_size=8192)
    args.tokens, args.long_tokens, args.responses = 1024, 2048, 2
else:
    shape = dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                 intermediate_size=8960, vocab_size=151936)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_gb():
    return torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None


def reset_peak():
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


with contextlib.redirect_stdout(sys.stderr), tempfile.TemporaryDirectory() as tmp:
    build_tokenizer(Path(tmp) / "tok", vocab_size=4096, seed=0)
    tok = load_tokenizer(str(Path(tmp) / "tok"))
    config = Qwen2Config(**shape, max_position_embeddings=max(args.tokens, args.long_tokens),
                         tie_word_embeddings=True, rope_theta=1e6, initializer_range=0.02)
    torch.manual_seed(0)
    with device:  # random init directly on the device
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    params = model.num_parameters()  # tied: the embedding counted once, as the LM head matmul

    items = [long_item(tok, f"r{i}", args.tokens, seed=i) for i in range(args.responses)]
    score_items(model, tok, [long_item(tok, "warm", 1024, seed=99)], progress=False)  # kernels, allocator

    reset_peak(); sync()
    scores, stats = score_items(model, tok, items, progress=True, desc="gpu_check")
    sync()
    peak_scoring_gb = peak_gb()
    forward_tokens = stats.forward_tokens

    # A bare forward (one logit position kept) on the same padded batches.
    seqs = [encode_prompt_response(tok, it.prompt, it.response).input_ids[:-1] for it in items]
    sync(); started = time.perf_counter()
    with torch.inference_mode():
        for batch in plan_batches([len(s) for s in seqs], 16384):
            model(**collate([seqs[i] for i in batch], tok.pad_token_id, device), logits_to_keep=1, use_cache=False)
    sync(); forward_s = time.perf_counter() - started

    reset_peak()
    _, long_stats = score_items(model, tok, [long_item(tok, "long", args.long_tokens, seed=7)], progress=False)
    peak_long_gb = peak_gb()

    # bf16 exactness: short responses against the per-sentence reference (full logits, fp32 log-softmax).
    short = make_items(tok, 2, seed=3, lo=8, hi=12)
    ours, _ = score_items(model, tok, short, progress=False)
    ref = reference_score_items(model, tok, short)
    diffs = [abs(a / n - b / n) for x, y in zip(ours, ref) for (a, n), (b, _) in zip(x, y) if n]

report = {
    "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    "torch": torch.__version__,
    "shape": shape,
    "params": params,
    "dtype": stats.dtype,
    "responses": len(items),
    "tokens_per_response": forward_tokens // len(items) + 1,
    "wall_s": stats.wall_s,
    "forward_tokens_per_s": forward_tokens / stats.wall_s,
    "scored_tokens_per_s": stats.tokens_per_s,
    "mfu": 2 * params * forward_tokens / stats.wall_s / H100_BF16_DENSE_FLOPS,
    "fraction_of_forward": forward_s / stats.wall_s,
    "peak_gpu_gb": peak_scoring_gb,
    "long_tokens": long_stats.tokens_scored,
    "long_s": long_stats.wall_s,
    "long_peak_gpu_gb": peak_long_gb,
    "bf16_max_abs_diff_mean_logprob_vs_reference": max(diffs),
}
print(json.dumps(report))
PY
