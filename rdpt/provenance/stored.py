"""Scores from log-probs kept at sampling time: a teacher that sampled a response already computed the raw
log-prob of every token it drew, so scoring that response under the same teacher needs no second forward pass.

:class:`StoredLogprobs` is an engine for :func:`rdpt.provenance.score.score_items`: the items carry their sampled
``token_ids`` (so prepare() maps tokens to sentences by the scorer's own character offsets), and a sequence
whose response ids were stored with their log-probs is answered from the store; any other sequence, or one that
needs ranks, goes to the ``fallback`` engine (opened only if needed)::

    python -c "from rdpt.provenance.stored import StoredLogprobs; print(StoredLogprobs.__doc__)"

:func:`sampled_store` builds the store from `generations` rows sampled with ``keep_logprobs`` (the ``score``
stage does this by itself: ``select_score@teacher`` on candidates the teacher sampled needs no teacher pass).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from rdpt.engines.base import Engine
from rdpt.io.journal import digest
from rdpt.models import encode_prompt


class StoredLogprobs(Engine):
    """Answers :meth:`token_logprobs` from ``{prompt + response ids: (response log-probs, ranks)}``; the rest
    goes to a fallback.

    ``store`` maps ``tuple(prompt ids + response ids)`` (stop token excluded, as scoring sees them; the prompt
    as :func:`rdpt.models.encode_prompt` gives it to sampling and scoring alike) to the response tokens'
    log-probs under the model and their unclipped ranks (or None: not stored), aligned. ``fallback``: a
    function that opens the real engine, called on the first miss only.
    """

    name = "stored"

    def __init__(self, store: dict[tuple[int, ...], tuple[list[float], list[int] | None]],
                 fallback: Callable[[], Engine], *,
                 context_length: int | None = None, vocab_size: int | None = None):
        self.store, self._open, self._engine = store, fallback, None
        self.context_length, self.vocab_size = context_length, vocab_size
        self.hits = self.misses = 0

    def _fallback(self) -> Engine:
        if self._engine is None:
            self._engine = self._open()
        return self._engine

    def token_logprobs(self, sequences, starts, *, rank_clip=None):
        out: list = [None] * len(sequences)
        missed = []
        for i, (seq, start) in enumerate(zip(sequences, starts, strict=True)):
            lps, ranks = self.store.get(tuple(seq), (None, None))
            if lps is not None and len(lps) != len(seq) - start:  # a store built for another prompt split
                lps = None
            if lps is None or (rank_clip is not None and ranks is None):  # sampled elsewhere, or no ranks kept
                missed.append(i)
            else:
                clipped = None if rank_clip is None else np.minimum(np.asarray(ranks, dtype=np.int64), rank_clip)
                out[i] = (np.asarray(lps, dtype=np.float64), clipped)
        self.hits += len(sequences) - len(missed)
        self.misses += len(missed)
        if missed:
            scored = self._fallback().token_logprobs([sequences[i] for i in missed], [starts[i] for i in missed],
                                                     rank_clip=rank_clip)
            for i, result in zip(missed, scored, strict=True):
                out[i] = result
        return out

    def sample(self, prompts, **kwargs):
        return self._fallback().sample(prompts, **kwargs)

    def describe(self) -> str:
        return f"stored+{self._engine.describe()}" if self._engine is not None else "stored"

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


def sampled_store(gens: pd.DataFrame, items, tokenizer) -> dict[tuple[int, ...], tuple[list[float], list[int]]]:
    """``{prompt + response ids: (log-probs, ranks)}`` of the items whose row kept its sampling log-probs.

    ``items`` are :func:`rdpt.provenance.traced.traced_items`'s: an item has ``token_ids`` only when the scoring
    model sampled it itself (its row's ``model``). Its stored values are used only when they were computed after
    the same prompt ids the scorer builds (the row's ``prompt_digest``) and cover every scored id; any other
    item is left to a forward pass.
    """
    if "token_logprobs" not in gens.columns:
        return {}
    store = {}
    for item in items:
        if item.token_ids is None:
            continue
        lps, ranks, prompt = (gens.at[item.key, c] for c in ("token_logprobs", "token_ranks", "prompt_digest"))
        if not isinstance(lps, (list, np.ndarray)) or not isinstance(ranks, (list, np.ndarray)):
            continue
        prompt_ids = encode_prompt(tokenizer, item.prompt)
        n = len(item.token_ids)  # the stop token is cut off the scored ids; the stored values go one further
        if prompt != digest(prompt_ids) or len(lps) < n or len(ranks) < n:
            continue
        store[tuple(prompt_ids + item.token_ids)] = ([float(x) for x in lps[:n]], [int(r) for r in ranks[:n]])
    return store
