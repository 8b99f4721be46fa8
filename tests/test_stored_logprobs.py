"""A teacher's sampled log-probs reused as its scores (issue item 7): HF sampling returns the raw log-prob of
each drawn token (``output_logits``, not the temperature/top-p warped scores), and scoring the samples from
that store (:class:`rdpt.provenance.stored.StoredLogprobs`) equals a separate teacher pass, sentence by sentence::

    pytest tests/test_stored_logprobs.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rdpt.engines.hf import HfEngine
from rdpt.generation.sample import stop_ids
from rdpt.models import encode_prompt, load_model, load_tokenizer, render_prompt
from rdpt.provenance.score import ScoreItem, score_items
from rdpt.provenance.segment import split
from rdpt.provenance.stored import StoredLogprobs

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CORPUS = [f"Add {a} and {b}. Then {a} + {b} = {a + b}. The answer is {a + b}." for a in range(30) for b in range(5)]
# Sampling runs left-padded prompts through a KV cache, token by token; the separate pass runs each sequence
# unpadded in one go. Same maths, other reduction orders: in fp32 the per-token log-probs differ by float
# rounding only (measured: max |delta| per sentence sum 2.4e-6 over 12 sentences here), so 1e-5 per sum.
ATOL = 1e-5


@pytest.fixture(scope="module")
def teacher(tiny_lm_factory):
    path = tiny_lm_factory("stored_lp_lm", CORPUS, chat_template=TEMPLATE)
    return load_model(path, torch.device("cpu"), torch.float32), load_tokenizer(path, padding_side="left")


def _sampled(model, tok, temperature=0.7, top_p=0.9):
    """Samples of prompts of different lengths (so some are left-padded), with their stored log-probs."""
    engine = HfEngine(model, pad_id=tok.pad_token_id)
    prompts = [render_prompt(tok, q) for q in ("What is 3 + 4?", "Add 12 and 2, then tell me the sum.", "1 + 1?")]
    encoded = [encode_prompt(tok, p) for p in prompts]
    stops = set(stop_ids(engine, tok))
    out = engine.sample(encoded, seed=0, batch_index=0, prompt_indices=[0, 1, 2], num_samples=3,
                        temperature=temperature, top_p=top_p, max_new_tokens=24, stop_ids=sorted(stops),
                        return_logprobs=True)
    items, store = [], {}
    for p, (prompt, ids_p) in enumerate(zip(prompts, encoded, strict=True)):
        for k, (ids, lps, ranks) in enumerate(out[p]):
            assert len(ids) == len(lps) == len(ranks)
            cut = next((j for j, t in enumerate(ids) if t in stops), len(ids))  # scoring excludes the stop token
            ids, lps, ranks = ids[:cut], lps[:cut], ranks[:cut]
            text = tok.decode(ids, skip_special_tokens=True)
            if not split(text):
                continue
            items.append(ScoreItem(f"r{p}-{k}", prompt, text, split(text), token_ids=ids))
            store[tuple(ids_p + ids)] = (lps, ranks)
    return items, store


def test_sampled_log_probs_are_the_raw_model_log_probs_not_the_warped_ones(teacher):
    model, tok = teacher
    items, store = _sampled(model, tok)
    (seq, (lps, ranks)), *_ = store.items()
    n_prompt = len(seq) - len(lps)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([list(seq)])).logits[0, n_prompt - 1: -1].float()
    targets = torch.tensor(seq[n_prompt:])
    raw = torch.log_softmax(logits, -1).gather(1, targets[:, None])[:, 0].double().numpy()
    warped = torch.log_softmax(logits / 0.7, -1).gather(1, targets[:, None])[:, 0].double().numpy()
    np.testing.assert_allclose(lps, raw, atol=1e-5)
    want_ranks = ((logits > logits.gather(1, targets[:, None])).sum(-1) + 1).tolist()
    assert ranks == want_ranks  # unclipped ranks of the raw logits
    assert np.abs(np.asarray(lps) - warped).max() > 1e-2  # temperature 0.7 would have shifted them visibly


def test_scores_from_stored_log_probs_equal_a_separate_teacher_pass(teacher):
    model, tok = teacher
    items, store = _sampled(model, tok)
    assert len(items) >= 6
    opened = []
    stored = StoredLogprobs(store, lambda: opened.append(1) or HfEngine(model), context_length=512)
    got, _ = score_items(stored, tok, items, rank_clip=5, progress=False)
    want, _ = score_items(HfEngine(model, pad_id=tok.pad_token_id), tok, items, rank_clip=5, progress=False)
    assert (stored.hits, stored.misses, opened) == (len(items), 0, [])  # no second forward pass at all
    assert [[x[2] for x in g] for g in got] == [[x[2] for x in w] for w in want]  # clipped rank sums agree
    deltas = [abs(a[0] - b[0]) for g, w in zip(got, want, strict=True) for a, b in zip(g, w, strict=True)]
    assert [[x[1] for x in g] for g in got] == [[x[1] for x in w] for w in want]  # the same tokens per sentence
    print(f"max |delta| of reused vs recomputed sentence sums: {max(deltas):.2e} over {len(deltas)} sentences")
    assert max(deltas) < ATOL


def test_a_response_without_stored_log_probs_is_scored_by_the_fallback(teacher):
    model, tok = teacher
    items, store = _sampled(model, tok)
    store.pop(next(iter(store)))
    stored = StoredLogprobs(store, lambda: HfEngine(model), context_length=512)
    got, _ = score_items(stored, tok, items, progress=False)
    want, _ = score_items(HfEngine(model), tok, items, progress=False)
    assert (stored.hits, stored.misses) == (len(items) - 1, 1)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose([x[0] for x in g], [x[0] for x in w], atol=ATOL)
    no_ranks = StoredLogprobs({k: (lps, None) for k, (lps, _) in store.items()}, lambda: HfEngine(model),
                              context_length=512)
    ranked, _ = score_items(no_ranks, tok, items[:2], rank_clip=100, progress=False)  # ranks: not stored
    assert no_ranks.misses == 2 and all(len(x) == 3 for x in ranked[0])
