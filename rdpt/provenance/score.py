"""Exact per-sentence log-probabilities of a response under one model, in one forward pass.

For every response, prompt + response is tokenized once (:mod:`rdpt.provenance.tokens`, which also maps each
token to its sentence by character offsets) and the engine runs it once
(:meth:`rdpt.engines.base.Engine.token_logprobs`: for ``hf``, one decoder pass and the LM head only at the
response positions, chunked, fp32 log-sum-exp). The sums per sentence are made here, the same for every engine.
One planner batches responses by a padded-token budget, longest first; a journal resumes a killed run's
batches (``done``, ``on_batch``). The score stage's inputs come from :mod:`rdpt.provenance.traced`::

    python stages/score.py --role teacher --model data/toy/models/teacher \\
        --generations data/generations/distilled.jsonl --sentences data/sentences.parquet --out /tmp/scores
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

import rdpt.models
from rdpt import RdptError
from rdpt.engines import engine_kind, open_engine
from rdpt.engines.base import Engine, OutOfMemory
from rdpt.io.artifacts import (
    OPTIONAL_COLUMNS,
    SCHEMAS,
    atomic_dir,
    split_timing,
    write_json,
    write_table,
    write_timing,
)
from rdpt.io.journal import Journal, digest, run_fingerprint
from rdpt.models import (
    ModelRef,
    context_length,
    load_tokenizer,
    original_context_length,
    overridden_config,
)
from rdpt.params import Params
from rdpt.provenance.stored import StoredLogprobs, sampled_store
from rdpt.provenance.tokens import Prepared, ScoreItem, prepare
from rdpt.provenance.traced import read_traced, traced_items

log = logging.getLogger(__name__)


@dataclass
class ScoreStats:
    """Cost accounting of one :func:`score_items` call (recorded in the scores artifact)."""

    tokens_scored: int  # response tokens whose log-prob was computed
    forward_tokens: int  # padded tokens run through the decoder (prompt + response - 1, per batch row)
    wall_s: float  # tokenization + forward + LM head, end to end
    tokens_per_s: float  # tokens_scored / wall_s
    device: str
    dtype: str  # weights dtype; log-softmax is always fp32
    n_items: int
    n_sampled_ids: int = 0  # responses scored on the ids the model sampled (its own responses)
    n_retokenized_differs: int = 0  # ... of which re-tokenizing the decoded text gives other ids
    # with ``original_window`` given (a model run under config_overrides): responses whose prompt + response is
    # longer than the model's own window; None = not asked (and left out of cost.json)
    n_past_original_window: int | None = None


# per sentence: (sum of token log-probs, number of tokens), and with ``rank_clip`` set, also the sum of
# the tokens' clipped ranks (rank 1 = the model's top choice; see :func:`score_items`); with ``variants``
# two more floats at the end: (first_logprob, min_window_logprob) (see :data:`WINDOW_TOKENS`)
SentenceScores = list[tuple]

# The local window of the ``window_min`` score variant (docs/scoring.md, "Score variants"): the lowest mean
# log-prob over any WINDOW_TOKENS consecutive tokens of a sentence (the sentence's own mean when it is shorter).
WINDOW_TOKENS = 4


def plan_batches(lengths: list[int], max_tokens_per_batch: int) -> list[list[int]]:
    """Indices into ``lengths`` grouped into batches, longest first, each within the padded-token budget.

    Sorting longest first keeps padding small and makes an out-of-memory error show up on the first
    batch. A sequence longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        # The first member of a batch is its longest, so the padded size is len(batch) * that length.
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_tokens_per_batch:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _variant_stats(token_logprobs: np.ndarray, sentence_of_token: np.ndarray, sums: np.ndarray,
                   counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sentence, from the same per-token log-probs: the log-prob of its first token (the one with the lowest
    response index) and the lowest mean log-prob over :data:`WINDOW_TOKENS` consecutive tokens of it (its mean
    ``sums / counts`` when it has at most that many). 0.0 for a sentence without tokens, like its sum."""
    n = len(counts)
    first, window = np.zeros(n), np.zeros(n)
    order = np.argsort(sentence_of_token, kind="stable")  # each sentence's tokens, in response order
    lps = token_logprobs[order]
    ends = np.cumsum(counts)
    for s in np.flatnonzero(counts):
        seg = lps[ends[s] - counts[s]: ends[s]]
        first[s] = seg[0]
        if counts[s] <= WINDOW_TOKENS:
            window[s] = sums[s] / counts[s]
        else:
            window[s] = np.lib.stride_tricks.sliding_window_view(seg, WINDOW_TOKENS).sum(axis=1).min() / WINDOW_TOKENS
    return first, window


def _sentence_sums(prep: Prepared, token_logprobs: np.ndarray, token_ranks: np.ndarray | None,
                   variants: bool = False) -> SentenceScores:
    if not np.isfinite(token_logprobs).all():
        bad = int(np.flatnonzero(~np.isfinite(token_logprobs))[0])
        raise RdptError(
            f"response {prep.key}: non-finite log-prob at response token {bad} "
            "(overflow in the weights' dtype? try dtype float32)"
        )
    sums = np.bincount(prep.sentence_of_token, weights=token_logprobs, minlength=prep.n_sentences)
    counts = np.bincount(prep.sentence_of_token, minlength=prep.n_sentences)
    if token_ranks is None:
        out = [(float(s), int(c)) for s, c in zip(sums, counts)]
    else:
        rank_sums = np.bincount(prep.sentence_of_token, weights=token_ranks, minlength=prep.n_sentences)
        out = [(float(s), int(c), int(round(r))) for s, c, r in zip(sums, counts, rank_sums)]
    if not variants:
        return out
    first, window = _variant_stats(token_logprobs, prep.sentence_of_token, sums, counts)
    return [(*x, float(f), float(w)) for x, f, w in zip(out, first, window)]


def score_items(
    engine: Engine,
    tokenizer,
    items: list[ScoreItem],
    *,
    rank_clip: int | None = None,
    variants: bool = False,
    original_window: int | None = None,
    done: Mapping[str, SentenceScores] | None = None,
    on_batch: Callable[[list[str], list[SentenceScores], dict], None] | None = None,
    progress: bool = True,
    desc: str = "score",
) -> tuple[list[SentenceScores], ScoreStats]:
    """Per item, per sentence ``(sum of token log-probs, n_tokens)`` as float64, in input order.

    With ``rank_clip`` (e.g. 100), each sentence also gets the sum of its tokens' ranks, each clipped
    at ``rank_clip``: ``(sum_logprob, n_tokens, sum_rank)`` (what the Rank-Surprisal Ratio needs).
    With ``variants``, each tuple ends with ``(first_logprob, min_window_logprob)``, computed from the same
    per-token log-probs (no other pass): what the score variants of :mod:`rdpt.provenance.rules` read.

    ``engine`` is any :class:`rdpt.engines.base.Engine`; ``tokenizer`` is the model's own fast tokenizer.
    Batches hold at most ``engine.token_budget`` padded tokens, longest first (a longer response runs
    alone); when the engine runs out of memory it shrinks its budget and what is left is re-planned.

    Resume: ``done`` maps response key -> its scores from an interrupted run. A response's scores can
    differ in the last bits with the batch it ran in, so the plan is made from *all* items, as an
    uninterrupted run makes it, and batches whose responses are all done are skipped whole.
    ``on_batch(keys, scores, stats)`` sees each newly scored batch (responses without tokens form one
    batch of their own), for the journal. The returned stats count this call's work only.

    ``original_window``: the model's own context when it runs with a longer one (``config_overrides``); the
    stats then count the responses scored past it (``n_past_original_window``).
    """
    if rank_clip is not None and rank_clip < 1:
        raise RdptError("score: rank_clip must be >= 1")
    started = time.perf_counter()
    prepared = prepare(items, tokenizer, engine.context_length, engine.vocab_size)
    done = dict(done or {})
    results: list[SentenceScores | None] = [done.get(p.key) for p in prepared]
    runnable = [p for p in prepared if p.response_ids]
    blank = [p for p in prepared if not p.response_ids]  # nothing to run: every sentence unscored

    def plan(pending: list[Prepared]) -> list[list[Prepared]]:
        return [[pending[i] for i in b] for b in plan_batches([p.n_inputs for p in pending], engine.token_budget)]

    queue = plan(runnable) + ([blank] if blank else [])
    forward_tokens = tokens_scored = 0
    with torch.inference_mode(), tqdm(total=sum(len(p.response_ids) for p in runnable), unit="tok",
                                      unit_scale=True, desc=desc, disable=not progress) as bar:
        bar.update(sum(len(p.response_ids) for p in runnable if p.key in done))
        while queue:
            batch = [p for p in queue[0] if p.key not in done]
            if not batch:
                queue.pop(0)
                continue
            batch_started = time.perf_counter()
            width = batch[0].n_inputs  # longest first: the padded width
            if batch[0].response_ids:
                try:
                    scored = engine.token_logprobs([p.prompt_ids + p.response_ids for p in batch],
                                                   [len(p.prompt_ids) for p in batch], rank_clip=rank_clip)
                except OutOfMemory:
                    if len(batch) == 1 or not engine.shrink(len(batch) * width):
                        raise RdptError(f"response {batch[0].key}: out of memory scoring {width} tokens alone; "
                                        "lower score.chunk_size or use a larger device") from None
                    pending = [p for b in queue for p in b if p.response_ids and p.key not in done]
                    queue = plan(pending) + ([blank] if blank else [])
                    continue
                sums = []
                for prep, (lps, ranks) in zip(batch, scored, strict=True):
                    if len(lps) != len(prep.response_ids):
                        raise RdptError(f"response {prep.key}: the engine returned {len(lps)} log-probs for "
                                        f"{len(prep.response_ids)} tokens")
                    clipped = None if rank_clip is None else np.minimum(np.asarray(ranks), rank_clip)
                    sums.append(_sentence_sums(prep, np.asarray(lps, dtype=np.float64), clipped, variants))
                n_tokens = sum(len(p.response_ids) for p in batch)
                # padded tokens through the decoder (an engine that batches unpadded still runs this many)
                n_forward = len(batch) * width
            else:
                empty = ((0.0, 0) if rank_clip is None else (0.0, 0, 0)) + ((0.0, 0.0) if variants else ())
                sums = [[empty] * p.n_sentences for p in batch]
                n_tokens = n_forward = 0
            queue.pop(0)
            for prep, sentence_scores in zip(batch, sums):
                results[prep.index] = sentence_scores
                done[prep.key] = sentence_scores
            forward_tokens += n_forward
            tokens_scored += n_tokens
            if on_batch is not None:
                on_batch([p.key for p in batch], sums, {"tokens_scored": n_tokens, "forward_tokens": n_forward,
                                                        "wall_s": time.perf_counter() - batch_started})
            bar.update(n_tokens)
            bar.set_postfix(batch=f"{len(batch)}x{width}")

    missing = [items[i].key for i, r in enumerate(results) if r is None]
    if missing:  # a bookkeeping bug, never a silently dropped response
        raise RdptError(f"score: {len(missing)} responses were not scored (first: {missing[0]})")
    wall_s = time.perf_counter() - started
    stats = ScoreStats(tokens_scored=tokens_scored, forward_tokens=forward_tokens, wall_s=wall_s,
                       tokens_per_s=tokens_scored / wall_s if wall_s > 0 else 0.0, device=engine.describe(),
                       dtype=engine.dtype, n_items=len(items), n_sampled_ids=sum(p.sampled for p in prepared),
                       n_retokenized_differs=sum(p.retokenized_differs for p in prepared),
                       n_past_original_window=None if original_window is None else
                       sum(p.n_total > original_window for p in prepared))
    return results, stats  # type: ignore[return-value]


def reference_score_items(model, tokenizer, items: list[ScoreItem],
                          rank_clip: int | None = None, variants: bool = False) -> list[SentenceScores]:
    """The slow, obviously-correct scorer: one full forward per sentence, full fp32 log-softmax.

    For each sentence, the model reads prompt + response tokens up to the sentence's last token
    (the same tokenization as :func:`score_items`), and the sentence's tokens are summed from
    ``log_softmax(model(...).logits)``. With ``variants``, the first token's log-prob and the lowest
    :data:`WINDOW_TOKENS`-token window mean are appended, window by window. Used by the tests and the benchmark only.
    """
    from rdpt.placement import input_device

    prepared = prepare(items, tokenizer, context_length(model), model.get_input_embeddings().num_embeddings)
    results = []
    device = input_device(model)
    with torch.inference_mode():
        for prep in prepared:
            scores: SentenceScores = []
            n_prompt = len(prep.prompt_ids)
            for sentence in range(prep.n_sentences):
                tokens = np.flatnonzero(prep.sentence_of_token == sentence)
                if len(tokens) == 0:
                    scores.append(((0.0, 0) if rank_clip is None else (0.0, 0, 0)) + ((0.0, 0.0) if variants else ()))
                    continue
                ids = prep.prompt_ids + prep.response_ids[: int(tokens[-1]) + 1]
                logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits
                logprobs = torch.log_softmax(logits[0].float(), dim=-1)  # (L, V)
                logprobs = logprobs.to(device)
                positions = torch.as_tensor(n_prompt + tokens - 1, device=device)
                targets = torch.as_tensor([prep.response_ids[j] for j in tokens], device=device)
                token_lp = logprobs[positions, targets].double().cpu().numpy()
                if not np.isfinite(token_lp).all():
                    raise RdptError(f"response {prep.key}: non-finite log-prob in sentence {sentence}")
                if rank_clip is None:
                    entry: tuple = (float(token_lp.sum()), len(tokens))
                else:  # rank from the full distribution: 1 + how many entries are strictly more likely
                    rows = logprobs[positions]  # (n, V)
                    rank = (rows > rows.gather(1, targets[:, None])).sum(dim=-1) + 1
                    entry = (float(token_lp.sum()), len(tokens), int(rank.clamp(max=rank_clip).sum()))
                if variants:
                    n_win = min(WINDOW_TOKENS, len(token_lp))
                    windows = [float(token_lp[i:i + n_win].sum()) / n_win for i in range(len(token_lp) - n_win + 1)]
                    entry = (*entry, float(token_lp[0]), min(windows))
                scores.append(entry)
            results.append(scores)
    return results


def score(params: Params, ref: ModelRef, name: str, generations_path: str, sentences_path: str, out_dir: str,
          journal_dir: str | None = None, timing_out: str | None = None) -> dict:
    """Per-sentence log-probs of the traced responses under one model (``name``: its role), one pass per response.

    Writes ``<out_dir>/scores.parquet`` and ``cost.json`` (tokens, device, dtype: deterministic) together, and
    the wall-clock time to ``timing_out``. Resumable: finished batches are journaled
    under ``journal_dir`` (see :mod:`rdpt.io.journal`) and a rerun skips them whole.
    """
    gens, sents = read_traced(generations_path, sentences_path)
    tokenizer = load_tokenizer(ref)
    items, index = traced_items(tokenizer, gens, sents, model=ref.path)
    kind = engine_kind(ref, params.score.engine)
    n_sentences = {it.key: len(it.spans) for it in items}
    seen: set[str] = set()

    def valid(unit: str, data) -> bool:  # a record holds whole responses of this run, each once
        keys, scores = data["keys"], data["scores"]
        if len(keys) != len(scores) or any(k not in n_sentences or k in seen for k in keys):
            return False
        if any(len(s) != n_sentences[k] or any(len(x) != 5 for x in s) for k, s in zip(keys, scores)):
            return False
        seen.update(keys)
        return True

    # the model's own samples that kept their log-probs (keep_logprobs) are answered from them: no forward pass
    store = sampled_store(gens, items, tokenizer)
    fingerprint = run_fingerprint(
        params, "score", name, ref, kind, [sys.modules[__name__], rdpt.models],
        score=params.score.model_dump(),
        items=digest([[it.key, it.prompt, it.response, it.spans, it.token_ids] for it in items]),
        **({"stored": digest(sorted(store.items()))} if store else {}))
    with Journal(journal_dir, f"score-{name}", fingerprint, valid, target=out_dir) as journal:
        done = {k: [tuple(x) for x in s] for d in journal.done.values() for k, s in zip(d["keys"], d["scores"])}
        def real() -> Engine:
            return open_engine(ref, params.score.engine, params, tokenizer, scoring=params.score)

        if store:
            config = overridden_config(ref)
            engine = StoredLogprobs(store, real, context_length=context_length(config),
                                    vocab_size=getattr(config, "vocab_size", None))
        else:
            engine = real()
        original = original_context_length(ref) if ref.config_overrides else None
        try:
            results, stats = score_items(
                engine, tokenizer, items, rank_clip=params.score.rank_clip, variants=True, done=done,
                original_window=original,
                desc=f"score {name}",
                on_batch=lambda keys, scores, st: journal.append(
                    str(len(journal.done)), {"keys": keys, "scores": scores, "stats": st}))
        finally:
            engine.close()
        # Cost of the whole job, resumed batches included (their time was spent by the killed run).
        totals = {k: sum(d["stats"][k] for d in journal.done.values()) for k in ("tokens_scored", "forward_tokens",
                                                                                  "wall_s")}
        stats.tokens_scored, stats.forward_tokens, stats.wall_s = (totals["tokens_scored"], totals["forward_tokens"],
                                                                   totals["wall_s"])
        stats.tokens_per_s = stats.tokens_scored / stats.wall_s if stats.wall_s > 0 else 0.0
    rows = []
    for item, idxs, sentence_scores in zip(items, index, results, strict=True):
        for k, (total, n, rank, first, window) in zip(idxs, sentence_scores, strict=True):
            rows.append({"response_id": item.key, "sentence_idx": k, "n_tokens": n, "sum_logprob": total,
                         "mean_logprob": total / n if n else float("nan"), "sum_rank": rank,
                         "first_logprob": first if n else float("nan"),
                         "min_window_logprob": window if n else float("nan")})
    table = pd.DataFrame(rows, columns=[*SCHEMAS["scores"], *OPTIONAL_COLUMNS["scores"]])
    record = dict(stats.__dict__)
    if record.pop("n_past_original_window") is not None:  # only a model run under config_overrides says more
        record |= {"config_overrides": ref.config_overrides, "original_context_length": original,
                   "context_length": engine.context_length, "n_past_original_window": stats.n_past_original_window}
    if store:  # how many responses came from the sampling log-probs, how many needed a forward pass
        record |= {"reused_sampling_logprobs": engine.hits, "forward_passes": engine.misses}
    cost, timing = split_timing({"model": name, "path": ref.path, "engine": kind, **record})
    with atomic_dir(out_dir) as out:  # scores and cost appear together or not at all
        write_table(out / "scores.parquet", table, "scores")
        write_json(out / "cost.json", cost)
    write_timing(timing_out, timing)
    journal.complete()
    return {**cost, **timing}
