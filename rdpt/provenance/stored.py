"""Scores from log-probs kept at sampling time: a teacher that sampled a response already computed the raw
log-prob of every token it drew, so scoring that response under the same teacher needs no second forward pass.

:class:`StoredLogprobs` is an engine for :func:`rdpt.provenance.score.score_items`: the items carry their sampled
``token_ids`` (so prepare() maps tokens to sentences by the scorer's own character offsets), and a sequence
whose response ids were stored with their log-probs is answered from the store; any other sequence, or one that
needs ranks, goes to the ``fallback`` engine (opened only if needed)::

    python -c "from rdpt.provenance.stored import StoredLogprobs; print(StoredLogprobs.__doc__)"
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rdpt.engines.base import Engine


class StoredLogprobs(Engine):
    """Answers :meth:`token_logprobs` from ``{prompt + response ids: response log-probs}``; the rest goes to a
    fallback.

    ``store`` maps ``tuple(prompt ids + response ids)`` (stop token excluded, as scoring sees them; the prompt
    as :func:`rdpt.models.encode_prompt` gives it to sampling and scoring alike) to the response tokens'
    log-probs under the model, aligned. ``fallback``: a function that opens the real engine, called on the
    first miss only.
    """

    name = "stored"

    def __init__(self, store: dict[tuple[int, ...], list[float]], fallback: Callable[[], Engine], *,
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
            kept = None if rank_clip is not None else self.store.get(tuple(seq))
            if kept is not None and len(kept) != len(seq) - start:  # a store built for another prompt split
                kept = None
            if kept is None:  # ranks were never stored; a response sampled elsewhere has no log-probs here
                missed.append(i)
            else:
                out[i] = (np.asarray(kept, dtype=np.float64), None)
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
