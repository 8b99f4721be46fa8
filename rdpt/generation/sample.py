"""Sampling responses through any engine: batched, seeded, resumable, with finish reasons.

Used by ``teach`` (teacher answers the train questions), ``generate`` (test responses of the three
models), ``candidates`` and the toy world's accuracy report::

    outs = sample(engine, tok, [render_prompt(tok, q) for q in questions], num_samples=4,
                  temperature=1.0, top_p=1.0, max_new_tokens=256, batch_size=64, seed=0)
    outs[i][k]["text"], outs[i][k]["finish_reason"]          # prompt i, sample k

A batch holds ``batch_size`` prompts x ``num_samples`` sequences. Batches are built from the prompts
sorted longest-first (ties by position); the engine seeds batch ``b`` from ``(seed, b)`` (HF) or each
prompt from ``(seed, prompt index)`` (vLLM, a server), never from what ran before, so the same prompts,
settings and seed give the same outputs on one engine. That is also what makes a stage resumable:
batch ``b`` holds the same prompts and draws the same samples whether or not batches before it ran in
this process, so finished batches can be passed in as ``done`` and skipped (``on_batch`` sees each new
one, for the journal). Only temperature, top_p and the params' top_k / min_p (0 = off, the defaults) shape the
distribution: top-k and repetition penalties from the model's generation config are never applied, so responses
are plain samples of the model.

Every engine gets the same prompt ids and stop ids and returns generated ids, which are cut and decoded
here, so ``text``, ``finish_reason`` and ``n_tokens`` mean the same whatever the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tqdm.auto import tqdm

from rdpt.engines.base import Engine
from rdpt.models import encode_prompt


def stop_ids(engine: Engine, tokenizer) -> list[int]:
    """The tokenizer's EOS first, plus any other end ids in the model's own generation config."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    extra = getattr(engine.generation_config, "eos_token_id", None)
    for i in [extra] if isinstance(extra, int) else (extra or []):
        if i not in ids:
            ids.append(i)
    if not ids:
        raise ValueError("sample: the tokenizer has no EOS token")
    return ids


def batch_plan(encoded: list[list[int]], batch_size: int) -> list[list[int]]:
    """Prompt indices of each batch: longest first (ties by position), ``batch_size`` per batch.

    Longest first: an out-of-memory error shows up on the first batch, and padding stays small.
    """
    order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _finish(new_ids, stop_ids: set[int], tokenizer) -> dict:
    """Cut a generated row at its first stop token (kept in token_ids) and decode it; a sample with log-probs
    (``(ids, logprobs, ranks)``) keeps them, cut alike, as ``token_logprobs`` and ``token_ranks``."""
    if isinstance(new_ids, tuple):
        ids, lps, ranks = new_ids
        row = _finish(ids, stop_ids, tokenizer)
        n = row["n_tokens"]
        return row | {"token_logprobs": [float(x) for x in lps[:n]], "token_ranks": [int(r) for r in ranks[:n]]}
    cut = next((j for j, t in enumerate(new_ids) if t in stop_ids), None)
    if cut is None:
        token_ids, reason, text_ids = new_ids, "length", new_ids
    else:
        token_ids, reason, text_ids = new_ids[: cut + 1], "stop", new_ids[:cut]
    text = tokenizer.decode(text_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return {"text": text, "finish_reason": reason, "n_tokens": len(token_ids), "token_ids": token_ids}


def sample(
    engine: Engine,
    tokenizer,
    prompts: list[str],
    *,
    num_samples: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    top_k: int = 0,
    min_p: float = 0.0,
    desc: str = "generate",
    return_logprobs: bool = False,
    done: Mapping[int, list[list[dict]]] | None = None,
    on_batch: Callable[[int, list[int], list[list[dict]]], None] | None = None,
) -> list[list[dict]]:
    """``num_samples`` responses per rendered prompt, in the prompts' order.

    Each response is ``{"text", "finish_reason": "stop" | "length", "n_tokens", "token_ids"}``;
    ``token_ids`` are the generated ids up to and including the stop token (when there is one),
    ``n_tokens == len(token_ids)``, and ``text`` decodes them without special tokens. With ``return_logprobs``,
    also ``token_logprobs`` and ``token_ranks`` (raw, aligned with ``token_ids``; see :meth:`Engine.sample`).

    ``engine`` is any :class:`rdpt.engines.base.Engine` (``HfEngine(model)`` for a loaded HF model).

    ``done`` maps batch index -> that batch's outputs from an earlier, interrupted run (per prompt of
    :func:`batch_plan`'s batch, in its order); those batches are not sampled again. ``on_batch(b,
    prompt_indices, outputs)`` is called after each newly sampled batch.
    """
    if not prompts:
        return []
    stops = stop_ids(engine, tokenizer)
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    plan = batch_plan(encoded, batch_size)
    done = done or {}
    results: list[list[dict] | None] = [None] * len(prompts)
    stop_set = set(stops)
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
            new = engine.sample([encoded[i] for i in idx], seed=seed, batch_index=b, prompt_indices=idx,
                                num_samples=num_samples, temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                                max_new_tokens=max_new_tokens, stop_ids=stops,
                                **({"return_logprobs": True} if return_logprobs else {}))
            if len(new) != len(idx) or any(len(rows) != num_samples for rows in new):
                raise ValueError(f"sample: batch {b} came back with the wrong number of samples")
            for i, rows in zip(idx, new):
                results[i] = [_finish(r, stop_set, tokenizer) for r in rows]
            if on_batch is not None:
                on_batch(b, idx, [results[i] for i in idx])
            bar.update(len(idx))
    assert all(r is not None for r in results), "sample: a prompt got no responses"
    return results  # type: ignore[return-value]
