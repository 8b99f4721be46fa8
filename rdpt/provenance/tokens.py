"""From a response and its sentence spans to scored tokens: tokenization, checks, the token -> sentence map.

Prompt + response is tokenized once (:func:`rdpt.models.encode_prompt_response`, or the sampled ids for a
model's own response), checked against the model's context and vocabulary, and each response token is assigned
to one sentence by character offsets::

    python -c "from rdpt.provenance.tokens import assign_tokens as a; \\
        print(a([(0,3),(3,6),(6,9)], [(0,4),(4,9)], 'ab. cd ef'))"

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
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from rdpt import RdptError
from rdpt.models import Encoded, encode_prompt, encode_prompt_response


@dataclass
class ScoreItem:
    key: str  # response id, named in every error
    prompt: str  # rendered prompt: this model's own chat template of the question, generation prompt on
    response: str  # response text being traced
    spans: list[tuple[int, int]]  # sentence character spans in `response`, contiguous, covering it
    # The ids the model sampled for `response` (stop token excluded), when this model wrote it: it is then
    # scored on exactly those ids, not on a re-tokenization of the decoded text. None: tokenize the text.
    token_ids: list[int] | None = None



@dataclass
class Prepared:
    """One item after tokenization: what the forward pass and the per-sentence sums need."""

    index: int  # position in the caller's list
    key: str
    prompt_ids: list[int]
    response_ids: list[int]
    sentence_of_token: np.ndarray  # (R,) int64: sentence index of each response token
    n_sentences: int
    sampled: bool = False  # scored on its sampled ids
    retokenized_differs: bool = False  # ... which re-tokenizing the text would not give
    n_total: int = 0  # prompt + response tokens

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


def prepare(items: list[ScoreItem], tokenizer, max_context: int | None, vocab_size: int | None) -> list[Prepared]:
    """Tokenize and check every item up front (context, vocabulary, spans), before any model runs."""
    prepared = []
    for index, item in enumerate(items):
        spans = _checked_spans(item)
        if not spans:  # blank response: no sentence to score, nothing to run
            prepared.append(Prepared(index, item.key, [], [], np.zeros(0, dtype=np.int64), 0))
            continue
        same = True
        if item.token_ids is None:
            enc = encode_prompt_response(tokenizer, item.prompt, item.response)
        else:
            try:
                enc, same = encode_prompt_sampled(tokenizer, item.prompt, item.response, item.token_ids)
            except RdptError as err:
                raise RdptError(f"response {item.key}: {err}") from None
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
            Prepared(
                index,
                item.key,
                enc.prompt_ids,
                enc.response_ids,
                np.asarray(sentence_of, dtype=np.int64),
                len(spans),
                sampled=item.token_ids is not None,
                retokenized_differs=not same,
                n_total=n_total,
            )
        )
    return prepared


def sampled_offsets(tokenizer, token_ids: list[int], text: str) -> list[tuple[int, int]]:
    """Character span in ``text`` of each sampled token, where ``text`` is their decode (as sampling decodes).

    Token j spans ``[len(decode(ids[:j])), len(decode(ids[:j+1])))``; a special token, or a byte-level piece
    that completes no character, is zero-width. Quadratic in the length: used only for the rare response
    whose re-tokenized text differs from what was sampled.
    """
    def decoded(ids):
        return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    if decoded(token_ids) != text:
        raise RdptError("the response text is not the decode of its sampled token ids (edited after sampling?)")
    ends = [len(decoded(token_ids[: j + 1])) for j in range(len(token_ids))]
    offsets, start = [], 0
    for end in ends:
        end = min(max(end, start), len(text))  # a partial UTF-8 piece may decode shorter: keep spans monotone
        offsets.append((start, end))
        start = end
    return offsets


def encode_prompt_sampled(tokenizer, prompt_text: str, response: str, token_ids: list[int]) -> tuple[Encoded, bool]:
    """Prompt ids + the response's *sampled* ids (a model scoring its own sample), with character offsets.

    Returns the encoding and whether re-tokenizing ``response`` gives the same ids (then the offsets are the
    tokenizer's, and scoring the text or the ids is the same thing).
    """
    prompt_ids = encode_prompt(tokenizer, prompt_text)
    enc = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
    if list(enc["input_ids"]) == list(token_ids):
        return Encoded(prompt_ids, list(token_ids), [tuple(o) for o in enc["offset_mapping"]]), True
    return Encoded(prompt_ids, list(token_ids), sampled_offsets(tokenizer, list(token_ids), response)), False
