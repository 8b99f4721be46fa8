"""Sampling responses with HF ``generate``: batched, left-padded, seeded, with finish reasons.

Used by ``teach`` (teacher answers the train questions), ``generate`` (test responses of the three
models) and the toy world's accuracy report::

    outs = sample(model, tok, [render_prompt(tok, q) for q in questions], num_samples=4,
                  temperature=1.0, top_p=1.0, max_new_tokens=256, batch_size=64, seed=0)
    outs[i][k]["text"], outs[i][k]["finish_reason"]          # prompt i, sample k

A batch holds ``batch_size`` prompts x ``num_samples`` sequences (``num_return_sequences``).
Prompts are left-padded so that every row's next token sits in the last column::

    input_ids   [PAD PAD p1 p2 p3] -> new tokens n1 n2 ... EOS [PAD ...]
    attention   [0   0   1  1  1 ]

Determinism: batches are built from the prompts sorted longest-first (ties by position) and batch
``b`` is sampled with the torch seed derived from ``(seed, b)``, inside a forked RNG, so the same
prompts, settings and seed give the same outputs whatever ran before. That is also what makes a
stage resumable: batch ``b`` holds the same prompts and draws the same samples whether or not batches
before it ran in this process, so finished batches can be passed in as ``done`` and skipped
(``on_batch`` sees each new one, for the journal). Only temperature and top_p
shape the distribution: top-k and repetition penalties from the model's generation config are
switched off, so responses are plain samples of the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from tqdm.auto import tqdm

from rdpt.models import encode_prompt


def _stop_ids(model, tokenizer) -> list[int]:
    """The tokenizer's EOS first, plus any other end ids in the model's own generation config."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for i in [extra] if isinstance(extra, int) else (extra or []):
        if i not in ids:
            ids.append(i)
    if not ids:
        raise ValueError("sample: the tokenizer has no EOS token")
    return ids


def _batch_seed(seed: int, batch_index: int) -> int:
    return (seed * 1_000_003 + batch_index) % (2**63 - 1)


def batch_plan(encoded: list[list[int]], batch_size: int) -> list[list[int]]:
    """Prompt indices of each batch: longest first (ties by position), ``batch_size`` per batch.

    Longest first: an out-of-memory error shows up on the first batch, and padding stays small.
    """
    order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def left_pad(batch: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (B, T), padded on the left."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, ids in enumerate(batch):
        if ids:
            input_ids[i, width - len(ids):] = torch.tensor(ids)
            attention_mask[i, width - len(ids):] = 1
    return input_ids, attention_mask


def _finish(new_ids: list[int], stop_ids: set[int], tokenizer) -> dict:
    """Cut a generated row at its first stop token (kept in token_ids) and decode it."""
    cut = next((j for j, t in enumerate(new_ids) if t in stop_ids), None)
    if cut is None:
        token_ids, reason, text_ids = new_ids, "length", new_ids
    else:
        token_ids, reason, text_ids = new_ids[: cut + 1], "stop", new_ids[:cut]
    text = tokenizer.decode(text_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return {"text": text, "finish_reason": reason, "n_tokens": len(token_ids), "token_ids": token_ids}


def sample(
    model,
    tokenizer,
    prompts: list[str],
    *,
    num_samples: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    desc: str = "generate",
    done: Mapping[int, list[list[dict]]] | None = None,
    on_batch: Callable[[int, list[int], list[list[dict]]], None] | None = None,
) -> list[list[dict]]:
    """``num_samples`` responses per rendered prompt, in the prompts' order.

    Each response is ``{"text", "finish_reason": "stop" | "length", "n_tokens", "token_ids"}``;
    ``token_ids`` are the generated ids up to and including the stop token (when there is one),
    ``n_tokens == len(token_ids)``, and ``text`` decodes them without special tokens.

    ``done`` maps batch index -> that batch's outputs from an earlier, interrupted run (per prompt of
    :func:`batch_plan`'s batch, in its order); those batches are not sampled again. ``on_batch(b,
    prompt_indices, outputs)`` is called after each newly sampled batch.
    """
    from transformers import GenerationConfig

    if not prompts:
        return []
    stop_ids = _stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    gen_config = GenerationConfig(
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        top_k=0,  # 0 = off; otherwise the global default of 50 would apply
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        min_length=0,
        max_new_tokens=max_new_tokens,
        num_return_sequences=num_samples,
        pad_token_id=pad_id,
        eos_token_id=stop_ids,
        use_cache=True,
    )
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    plan = batch_plan(encoded, batch_size)
    done = done or {}
    device = next(model.parameters()).device
    results: list[list[dict] | None] = [None] * len(prompts)
    stop_set = set(stop_ids)
    cuda_devices = [device] if device.type == "cuda" else []
    with tqdm(total=len(prompts), desc=desc, unit="prompt") as bar:
        for b, idx in enumerate(plan):
            if b in done:
                if len(done[b]) != len(idx) or any(len(r) != num_samples for r in done[b]):
                    raise ValueError(f"sample: finished batch {b} does not match the plan")
                for i, rows in zip(idx, done[b]):
                    results[i] = rows
                bar.update(len(idx))
                continue
            input_ids, attention_mask = left_pad([encoded[i] for i in idx], pad_id)
            with torch.random.fork_rng(devices=cuda_devices):
                torch.manual_seed(_batch_seed(seed, b))
                with torch.inference_mode():
                    out = model.generate(
                        input_ids=input_ids.to(device),
                        attention_mask=attention_mask.to(device),
                        generation_config=gen_config,
                    )  # (len(idx) * num_samples, T + new)
            new = out[:, input_ids.shape[1] :].tolist()
            for row, i in enumerate(idx):
                rows = new[row * num_samples : (row + 1) * num_samples]
                results[i] = [_finish(r, stop_set, tokenizer) for r in rows]
            if on_batch is not None:
                on_batch(b, idx, [results[i] for i in idx])
            bar.update(len(idx))
    assert all(r is not None for r in results), "sample: a prompt got no responses"
    return results  # type: ignore[return-value]
