"""Exact per-sentence log-probabilities of a response under one model, in one forward pass.

For every response, prompt + response is tokenized once (:func:`rdpt.models.encode_prompt_response`),
the base decoder runs once, and the LM head is applied only at the positions that predict response
tokens, chunk by chunk, with an fp32 log-sum-exp. The full ``[L, V]`` log-softmax is never built, so
the extra memory is ``O(chunk_size x V)`` whatever the length of the response::

    python -c "from rdpt.score import assign_tokens as a; print(a([(0,3),(3,6),(6,9)], [(0,4),(4,9)], 'ab. cd ef'))"

Which logits score which tokens, and where a sentence boundary falls. The prompt has P tokens;
position t's logits predict token t + 1; digits below give, per character, its sentence or token::

    response text       Add 2. Then 3.
    char in sentence    00000001111111     s0 = [0, 7) "Add 2. "    s1 = [7, 14) "Then 3."
    char in token       00011233333445     r3 = " Then" = [6, 11) crosses the boundary
    sentence of token   r0:s0  r1:s0  r2:s0  r3:s1  r4:s1  r5:s1    (r3's first visible char "T" is in s1)

    sequence index      0 .. P-1 | P     P+1   P+2   P+3   P+4   P+5
    input ids           prompt   | r0    r1    r2    r3    r4    (r5 is a target only, never fed)
    logits at index     P-1 -> r0, P -> r1, P+1 -> r2, P+2 -> r3, P+3 -> r4, P+4 -> r5
    sentence sums       s0 = lp(r0) + lp(r1) + lp(r2)      s1 = lp(r3) + lp(r4) + lp(r5)

The rule: a token belongs to the sentence holding its first non-whitespace character (r3 above
starts on the space that closes s0 but scores for s1). An all-whitespace or zero-width token goes to
the sentence holding its start offset (clamped to the last sentence): a "\\n\\n" after a sentence
stays with it. A sentence left with no token gets ``(0.0, 0)``; callers treat it as unscored.

Logits follow the model's own head: the output embedding (bias included) in the weights' dtype,
then, in fp32, the final transforms some architectures apply in ``forward`` — Gemma-2/3-style
``final_logit_softcapping`` (``tanh(z / c) * c``), Cohere's ``logit_scale`` (``z * s``) and Granite's
``logits_scaling`` (``z / s``). The tests check the result against ``model(...).logits`` per
architecture; a model with another custom head needs a line in :func:`_final_logit_transform`.
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from rdpt import RdptError
from rdpt.engines import ExternalEngine
from rdpt.models import context_length, encode_prompt_response

log = logging.getLogger(__name__)


@dataclass
class ScoreItem:
    key: str  # response id, named in every error
    prompt: str  # rendered prompt: this model's own chat template of the question, generation prompt on
    response: str  # response text being traced
    spans: list[tuple[int, int]]  # sentence character spans in `response`, contiguous, covering it


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


# per sentence: (sum of token log-probs, number of tokens), and with ``rank_clip`` set, also the sum of
# the tokens' clipped ranks (rank 1 = the model's top choice; see :func:`score_items`)
SentenceScores = list[tuple[float, int]] | list[tuple[float, int, int]]


@dataclass
class _Prepared:
    """One item after tokenization: what the forward pass and the per-sentence sums need."""

    index: int  # position in the caller's list
    key: str
    prompt_ids: list[int]
    response_ids: list[int]
    sentence_of_token: np.ndarray  # (R,) int64: sentence index of each response token
    n_sentences: int

    @property
    def n_inputs(self) -> int:
        # The last response token is a target only, never an input.
        return len(self.prompt_ids) + len(self.response_ids) - 1


def assign_tokens(offsets: list[tuple[int, int]], spans: list[tuple[int, int]], text: str) -> list[int]:
    """Sentence index of each token: the sentence holding its first non-whitespace character.

    ``offsets`` are the tokens' character spans in ``text``; ``spans`` are contiguous sentence spans
    covering ``text`` (validated by the caller). An all-whitespace or zero-width token goes to the
    sentence holding its start offset, clamped to the last sentence.
    """
    if not spans:
        if offsets:
            raise ValueError("tokens but no sentence spans")
        return []
    starts = [start for start, _ in spans]
    last = len(spans) - 1
    sentence_of = []
    for start, end in offsets:
        anchor = start
        for pos in range(start, min(end, len(text))):
            if not text[pos].isspace():
                anchor = pos
                break
        # bisect_right: an empty span shares its start with the next span, and the later one wins.
        sentence_of.append(min(max(bisect.bisect_right(starts, anchor) - 1, 0), last))
    return sentence_of


def _checked_spans(item: ScoreItem) -> list[tuple[int, int]]:
    """The item's spans as int pairs (they may come from an artifact as lists or arrays), validated."""
    spans, text = [(int(a), int(b)) for a, b in item.spans], item.response
    if not spans:
        if text.strip():
            raise RdptError(f"response {item.key}: no sentence spans for a non-blank response")
        return spans
    if spans[0][0] != 0 or spans[-1][1] != len(text):
        raise RdptError(f"response {item.key}: sentence spans must cover the response [0, {len(text)})")
    for (a, b), (c, _) in zip(spans, spans[1:] + [(len(text), len(text))]):
        if not (a <= b and b == c):
            raise RdptError(f"response {item.key}: sentence spans must be contiguous, got {(a, b)} then {c}")
    return spans


def _limits(model) -> tuple[int | None, int | None]:
    """(context length, vocabulary size) of an HF model or an external engine (None = unknown)."""
    if isinstance(model, ExternalEngine):
        return model.context_length, model.vocab_size
    return context_length(model), model.get_input_embeddings().num_embeddings


def _prepare(items: list[ScoreItem], tokenizer, model) -> list[_Prepared]:
    max_context, vocab_size = _limits(model)
    prepared = []
    for index, item in enumerate(items):
        spans = _checked_spans(item)
        if not spans:  # blank response: no sentence to score, nothing to run
            prepared.append(_Prepared(index, item.key, [], [], np.zeros(0, dtype=np.int64), 0))
            continue
        enc = encode_prompt_response(tokenizer, item.prompt, item.response)
        n_total = len(enc.prompt_ids) + len(enc.response_ids)
        if max_context is not None and n_total > max_context:
            raise RdptError(
                f"response {item.key}: prompt + response is {n_total} tokens, "
                f"over the model's context of {max_context}"
            )
        if vocab_size is not None and max(enc.prompt_ids + enc.response_ids, default=0) >= vocab_size:
            raise RdptError(
                f"response {item.key}: token id {max(enc.prompt_ids + enc.response_ids)} is outside the model's "
                f"vocabulary of {vocab_size}: tokenizer and model do not match"
            )
        if enc.response_ids and not enc.prompt_ids:
            raise RdptError(f"response {item.key}: empty prompt, so the first response token has no context")
        sentence_of = assign_tokens(enc.offsets, spans, item.response)
        prepared.append(
            _Prepared(
                index,
                item.key,
                enc.prompt_ids,
                enc.response_ids,
                np.asarray(sentence_of, dtype=np.int64),
                len(spans),
            )
        )
    return prepared


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


def collate(sequences: list[list[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and explicit ``position_ids``, each (B, L).

    With right padding and a causal mask a real token never sees a pad, and explicit positions keep
    every row at 0, 1, 2, ... whatever the model infers from the mask.
    """
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    position_ids = torch.arange(width, dtype=torch.long).expand(len(sequences), width).contiguous()
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": attention_mask.to(device),
        "position_ids": position_ids.to(device),
    }


def _decoder(model):
    """The module that maps ids to final (normed) hidden states, without the LM head."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is None or decoder is model:
        decoder = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if decoder is None or decoder is model:
        raise RdptError(f"{type(model).__name__}: cannot find the base decoder to score with")
    return decoder


def _final_logit_transform(config):
    """The element-wise transform the architecture applies to the head's output in ``forward``."""
    softcap = getattr(config, "final_logit_softcapping", None)
    scale = getattr(config, "logit_scale", None)  # Cohere: logits * logit_scale
    divisor = getattr(config, "logits_scaling", None)  # Granite: logits / logits_scaling

    def transform(logits: torch.Tensor) -> torch.Tensor:
        if isinstance(scale, (int, float)) and not isinstance(scale, bool):
            logits = logits * scale
        if isinstance(divisor, (int, float)) and not isinstance(divisor, bool):
            logits = logits / divisor
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return logits

    return transform


def _token_logprobs(model, batch: list[_Prepared], chunk_size: int, pad_id: int,
                    rank_clip: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """fp32 log-probs of all response tokens of the batch, concatenated in batch order, (sum R,).

    With ``rank_clip``, also each token's rank under the model, 1 + the number of vocabulary entries
    with a strictly larger logit, clipped at ``rank_clip`` (int64, (sum R,)); else None.
    """
    device = model.get_input_embeddings().weight.device
    inputs = collate([p.prompt_ids + p.response_ids[:-1] for p in batch], pad_id, device)
    out = _decoder(model)(**inputs, use_cache=False)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]  # (B, L, H)

    # Response token j of row b sits at index P_b + j and is predicted by the state at P_b + j - 1.
    rows = torch.cat([torch.full((len(p.response_ids),), b, dtype=torch.long) for b, p in enumerate(batch)])
    cols = torch.cat([torch.arange(len(p.response_ids)) + len(p.prompt_ids) - 1 for p in batch])
    states = hidden[rows.to(hidden.device), cols.to(hidden.device)]  # (N, H), N = total response tokens
    del hidden, out

    head = model.get_output_embeddings()
    head_device = head.weight.device  # differs from the decoder's under a multi-device device_map
    states = states.to(head_device)
    targets = torch.cat([torch.tensor(p.response_ids, dtype=torch.long) for p in batch]).to(head_device)
    transform = _final_logit_transform(model.config)
    logprobs = torch.empty(len(targets), dtype=torch.float32, device=head_device)
    ranks = None if rank_clip is None else torch.empty(len(targets), dtype=torch.long, device=head_device)
    for start in range(0, len(targets), chunk_size):
        stop = min(start + chunk_size, len(targets))
        logits = transform(head(states[start:stop]).float())  # (chunk, V) fp32: the only O(V) buffer
        target_logits = logits.gather(1, targets[start:stop, None]).squeeze(1)
        logprobs[start:stop] = target_logits - torch.logsumexp(logits, dim=-1)
        if ranks is not None:
            # A compare + count over the same (chunk, V) logits: ~1/H of the head's cost.
            ranks[start:stop] = ((logits > target_logits[:, None]).sum(dim=-1) + 1).clamp_(max=rank_clip)
        del logits  # freed before the next chunk's head output is allocated: one (chunk, V) buffer at a time
    return logprobs, ranks


def _sentence_sums(prep: _Prepared, token_logprobs: np.ndarray, token_ranks: np.ndarray | None) -> SentenceScores:
    if not np.isfinite(token_logprobs).all():
        bad = int(np.flatnonzero(~np.isfinite(token_logprobs))[0])
        raise RdptError(
            f"response {prep.key}: non-finite log-prob at response token {bad} "
            "(overflow in the weights' dtype? try dtype float32)"
        )
    sums = np.bincount(prep.sentence_of_token, weights=token_logprobs, minlength=prep.n_sentences)
    counts = np.bincount(prep.sentence_of_token, minlength=prep.n_sentences)
    if token_ranks is None:
        return [(float(s), int(c)) for s, c in zip(sums, counts)]
    rank_sums = np.bincount(prep.sentence_of_token, weights=token_ranks, minlength=prep.n_sentences)
    return [(float(s), int(c), int(round(r))) for s, c, r in zip(sums, counts, rank_sums)]


def _dtype_name(model) -> str:
    return str(model.dtype).removeprefix("torch.")


def score_items(
    model,
    tokenizer,
    items: list[ScoreItem],
    *,
    chunk_size: int = 1024,
    max_tokens_per_batch: int = 16384,
    progress: bool = True,
    desc: str = "score",
    rank_clip: int | None = None,
) -> tuple[list[SentenceScores], ScoreStats]:
    """Per item, per sentence ``(sum of token log-probs, n_tokens)`` as float64, in input order.

    With ``rank_clip`` (e.g. 100), each sentence also gets the sum of its tokens' ranks, each clipped
    at ``rank_clip``: ``(sum_logprob, n_tokens, sum_rank)`` (what the Rank-Surprisal Ratio needs).

    ``model`` is any ``AutoModelForCausalLM`` in eval mode on its device; ``tokenizer`` is its own
    fast tokenizer. Batches hold at most ``max_tokens_per_batch`` padded tokens (a longer response
    runs alone); on a CUDA out-of-memory error the budget is halved and the batch retried.
    """
    if chunk_size < 1 or max_tokens_per_batch < 1:
        raise RdptError("score: chunk_size and max_tokens_per_batch must be >= 1")
    if rank_clip is not None and rank_clip < 1:
        raise RdptError("score: rank_clip must be >= 1")
    started = time.perf_counter()
    prepared = _prepare(items, tokenizer, model)
    results: list[SentenceScores | None] = [None] * len(items)
    to_run = []
    for prep in prepared:
        if prep.response_ids:
            to_run.append(prep)
        else:  # blank response: every sentence unscored
            results[prep.index] = [(0.0, 0) if rank_clip is None else (0.0, 0, 0)] * prep.n_sentences

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    budget = max_tokens_per_batch
    forward_tokens = 0
    tokens_total = sum(len(p.response_ids) for p in to_run)
    queue = [[to_run[i] for i in batch] for batch in plan_batches([p.n_inputs for p in to_run], budget)]
    with torch.inference_mode(), tqdm(
        total=tokens_total, unit="tok", unit_scale=True, desc=desc, disable=not progress
    ) as bar:
        while queue:
            batch = queue[0]
            width = batch[0].n_inputs  # longest first: the padded width
            try:
                token_logprobs, token_ranks = _token_logprobs(model, batch, chunk_size, pad_id, rank_clip)
            except torch.cuda.OutOfMemoryError:
                token_logprobs = None  # handled below, once the failed frame's tensors are released
            if token_logprobs is None:
                if len(batch) == 1:
                    raise RdptError(
                        f"response {batch[0].key}: out of memory scoring {width} tokens alone; "
                        "lower score.chunk_size or use a larger device"
                    )
                # Halve the budget and re-plan everything not yet scored; nothing is dropped.
                budget = (len(batch) * width) // 2
                log.warning("out of memory on %d x %d tokens: budget now %d tokens", len(batch), width, budget)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                pending = [p for b in queue for p in b]
                queue = [[pending[i] for i in b] for b in plan_batches([p.n_inputs for p in pending], budget)]
                continue
            token_logprobs = token_logprobs.double().cpu().numpy()
            token_ranks = None if token_ranks is None else token_ranks.cpu().numpy()
            offset = 0
            for prep in batch:
                n = len(prep.response_ids)
                results[prep.index] = _sentence_sums(
                    prep, token_logprobs[offset : offset + n],
                    None if token_ranks is None else token_ranks[offset : offset + n])
                offset += n
            queue.pop(0)
            forward_tokens += len(batch) * width
            bar.update(offset)
            bar.set_postfix(batch=f"{len(batch)}x{width}")

    missing = [items[i].key for i, r in enumerate(results) if r is None]
    if missing:  # a bookkeeping bug, never a silently dropped response
        raise RdptError(f"score: {len(missing)} responses were not scored (first: {missing[0]})")
    wall_s = time.perf_counter() - started
    stats = ScoreStats(
        tokens_scored=tokens_total,
        forward_tokens=forward_tokens,
        wall_s=wall_s,
        tokens_per_s=tokens_total / wall_s if wall_s > 0 else 0.0,
        device=str(model.device),
        dtype=_dtype_name(model),
        n_items=len(items),
    )
    return results, stats  # type: ignore[return-value]


def score_items_external(engine: ExternalEngine, tokenizer, items: list[ScoreItem], *,
                         rank_clip: int | None = None) -> tuple[list[SentenceScores], ScoreStats]:
    """:func:`score_items` through an external engine's prompt log-probs (vLLM, a vLLM server).

    Same tokenization, token -> sentence mapping and sums as :func:`score_items`; only the per-token
    log-probs and ranks come from the engine, which runs each response once (one prefill). Ranks are
    clipped at ``rank_clip`` here.
    """
    if rank_clip is not None and rank_clip < 1:
        raise RdptError("score: rank_clip must be >= 1")
    started = time.perf_counter()
    prepared = _prepare(items, tokenizer, engine)
    results: list[SentenceScores | None] = [None] * len(items)
    to_run = [p for p in prepared if p.response_ids]
    for prep in prepared:
        if not prep.response_ids:  # blank response: every sentence unscored
            results[prep.index] = [(0.0, 0) if rank_clip is None else (0.0, 0, 0)] * prep.n_sentences
    if to_run:
        scored = engine.prompt_logprobs([p.prompt_ids + p.response_ids for p in to_run],
                                        [len(p.prompt_ids) for p in to_run])
        for prep, (lps, ranks) in zip(to_run, scored, strict=True):
            if len(lps) != len(prep.response_ids):
                raise RdptError(f"response {prep.key}: the engine returned {len(lps)} log-probs for "
                                f"{len(prep.response_ids)} tokens")
            clipped = None if rank_clip is None else np.minimum(ranks, rank_clip)
            results[prep.index] = _sentence_sums(prep, np.asarray(lps, dtype=np.float64), clipped)
    wall_s = time.perf_counter() - started
    tokens_total = sum(len(p.response_ids) for p in to_run)
    stats = ScoreStats(
        tokens_scored=tokens_total,
        forward_tokens=sum(len(p.prompt_ids) + len(p.response_ids) for p in to_run),
        wall_s=wall_s,
        tokens_per_s=tokens_total / wall_s if wall_s > 0 else 0.0,
        device=engine.describe(),
        dtype=engine.dtype,
        n_items=len(items),
    )
    return results, stats  # type: ignore[return-value]


def reference_score_items(model, tokenizer, items: list[ScoreItem],
                          rank_clip: int | None = None) -> list[SentenceScores]:
    """The slow, obviously-correct scorer: one full forward per sentence, full fp32 log-softmax.

    For each sentence, the model reads prompt + response tokens up to the sentence's last token
    (the same tokenization as :func:`score_items`), and the sentence's tokens are summed from
    ``log_softmax(model(...).logits)``. Used by the tests and the benchmark only.
    """
    prepared = _prepare(items, tokenizer, model)
    results = []
    with torch.inference_mode():
        for prep in prepared:
            scores: SentenceScores = []
            n_prompt = len(prep.prompt_ids)
            for sentence in range(prep.n_sentences):
                tokens = np.flatnonzero(prep.sentence_of_token == sentence)
                if len(tokens) == 0:
                    scores.append((0.0, 0) if rank_clip is None else (0.0, 0, 0))
                    continue
                ids = prep.prompt_ids + prep.response_ids[: int(tokens[-1]) + 1]
                logits = model(input_ids=torch.tensor([ids], device=model.device), use_cache=False).logits
                logprobs = torch.log_softmax(logits[0].float(), dim=-1)  # (L, V)
                positions = torch.as_tensor(n_prompt + tokens - 1, device=model.device)
                targets = torch.as_tensor([prep.response_ids[j] for j in tokens], device=model.device)
                token_lp = logprobs[positions, targets].double().cpu().numpy()
                if not np.isfinite(token_lp).all():
                    raise RdptError(f"response {prep.key}: non-finite log-prob in sentence {sentence}")
                if rank_clip is None:
                    scores.append((float(token_lp.sum()), len(tokens)))
                else:  # rank from the full distribution: 1 + how many entries are strictly more likely
                    rows = logprobs[positions]  # (n, V)
                    rank = (rows > rows.gather(1, targets[:, None])).sum(dim=-1) + 1
                    scores.append((float(token_lp.sum()), len(tokens), int(rank.clamp(max=rank_clip).sum())))
            results.append(scores)
    return results
