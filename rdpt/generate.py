"""Sampling responses with HF ``generate`` or an external engine: batched, seeded, with finish reasons.

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

An external engine (:class:`rdpt.engines.ExternalEngine`: vLLM, a vLLM server) gets the same prompt ids,
batches and stop ids; it returns generated ids, which are cut and decoded here exactly as HF's are. Its
prompts are seeded one by one (:func:`rdpt.engines.prompt_seed`), so a prompt's samples do not depend on
the batch it ran in. The same seed gives the same samples on one engine, never across engines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from tqdm.auto import tqdm

from rdpt.engines import ExternalEngine, prompt_seed
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

    ``model`` is an ``AutoModelForCausalLM`` or an :class:`rdpt.engines.ExternalEngine`.

    ``done`` maps batch index -> that batch's outputs from an earlier, interrupted run (per prompt of
    :func:`batch_plan`'s batch, in its order); those batches are not sampled again. ``on_batch(b,
    prompt_indices, outputs)`` is called after each newly sampled batch.
    """
    if not prompts:
        return []
    stop_ids = _stop_ids(model, tokenizer)
    if isinstance(model, ExternalEngine):
        def run_batch(b: int, idx: list[int], batch: list[list[int]]) -> list[list[list[int]]]:
            return model.sample_batch(batch, [prompt_seed(seed, i) for i in idx],
                                      num_samples=num_samples, temperature=temperature, top_p=top_p,
                                      max_new_tokens=max_new_tokens, stop_ids=stop_ids)
    else:
        run_batch = _hf_batch_runner(model, tokenizer, stop_ids, num_samples=num_samples, temperature=temperature,
                                     top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    plan = batch_plan(encoded, batch_size)
    done = done or {}
    results: list[list[dict] | None] = [None] * len(prompts)
    stop_set = set(stop_ids)
    with tqdm(total=len(prompts), desc=desc, unit="prompt") as bar:
        for b, idx in enumerate(plan):
            if b in done:
                if len(done[b]) != len(idx) or any(len(r) != num_samples for r in done[b]):
                    raise ValueError(f"sample: finished batch {b} does not match the plan")
                for i, rows in zip(idx, done[b]):
                    results[i] = rows
                bar.update(len(idx))
                continue
            # per prompt of the batch, num_samples lists of generated ids
            new = run_batch(b, idx, [encoded[i] for i in idx])
            if len(new) != len(idx) or any(len(rows) != num_samples for rows in new):
                raise ValueError(f"sample: batch {b} came back with the wrong number of samples")
            for i, rows in zip(idx, new):
                results[i] = [_finish(r, stop_set, tokenizer) for r in rows]
            if on_batch is not None:
                on_batch(b, idx, [results[i] for i in idx])
            bar.update(len(idx))
    assert all(r is not None for r in results), "sample: a prompt got no responses"
    return results  # type: ignore[return-value]


def _hf_batch_runner(model, tokenizer, stop_ids: list[int], *, num_samples: int, temperature: float, top_p: float,
                     max_new_tokens: int, seed: int):
    """``run(b, idx, prompt_ids) -> generated ids per prompt per sample`` with HF ``generate``, batch ``b`` seeded."""
    from transformers import GenerationConfig

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
    device = next(model.parameters()).device
    cuda_devices = [device] if device.type == "cuda" else []

    def run(b: int, idx: list[int], batch: list[list[int]]) -> list[list[list[int]]]:
        input_ids, attention_mask = left_pad(batch, pad_id)
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(_batch_seed(seed, b))
            with torch.inference_mode():
                out = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    generation_config=gen_config,
                )  # (len(batch) * num_samples, T + new)
        new = out[:, input_ids.shape[1] :].tolist()
        # Rows are padded past their stop token; _finish cuts each at its first stop id.
        return [new[row * num_samples : (row + 1) * num_samples] for row in range(len(batch))]

    return run
