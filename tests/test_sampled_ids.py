"""A model's own responses are scored on the token ids it sampled, not on a re-tokenization of their text.

Decoding a sample and tokenizing the text again can give other ids (a BPE merges what the model emitted as
pieces), so p_D of a re-tokenized response is not the probability of the sample. Generations keep the sampled
ids; the score stage uses them for the model that wrote the response (tests/test_pipeline_e2e.py runs it).
"""

import numpy as np
import pytest
import torch

from rdpt import RdptError
from rdpt.engines.hf import HfEngine
from rdpt.models import encode_prompt, load_model, load_tokenizer
from rdpt.provenance.score import ScoreItem, score_items
from rdpt.provenance.tokens import assign_tokens, sampled_offsets

CORPUS = ["We add two and three. Then the total is five. So the answer is 5."] * 40
TEMPLATE = "{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}A: "
TEXT = "We add two and three. Then the total is five."
SPANS = [(0, 21), (21, len(TEXT))]


@pytest.fixture(scope="module")
def lm(tiny_lm_factory):
    folder = tiny_lm_factory("sampled_ids_lm", CORPUS, chat_template=TEMPLATE, bos=False)
    tok = load_tokenizer(folder)
    model = load_model(folder, torch.device("cpu"), torch.float32)
    return tok, model


def _pieces(tok, text: str) -> list[int]:
    """The same text as single-byte-level tokens: a valid sample, never what the BPE would produce."""
    return [tok.convert_tokens_to_ids(t) for t in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
            for t in list(t[0])]


def _reference(model, prompt_ids, ids, offsets):
    """Per-sentence (sum log-prob, n) of ``ids`` after ``prompt_ids`` from one full log-softmax."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt_ids + ids])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    token_lp = [float(lp[len(prompt_ids) + j - 1, t]) for j, t in enumerate(ids)]
    sentence = assign_tokens(offsets, SPANS, TEXT)
    return [(float(sum(x for x, s in zip(token_lp, sentence) if s == k)), sentence.count(k)) for k in range(2)]


def test_a_non_canonical_sample_is_scored_on_its_own_ids(lm):
    tok, model = lm
    ids = _pieces(tok, TEXT)
    canonical = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == TEXT and ids != canonical and len(ids) > len(canonical)
    engine = HfEngine(model, pad_id=tok.pad_token_id)
    prompt = "Q: sum?\nA: "
    (own,), stats = score_items(engine, tok, [ScoreItem("r", prompt, TEXT, SPANS, token_ids=ids)], progress=False)
    (text,), _ = score_items(engine, tok, [ScoreItem("r", prompt, TEXT, SPANS)], progress=False)
    assert stats.n_sampled_ids == 1 and stats.n_retokenized_differs == 1
    assert sum(n for _, n in own) == len(ids) and sum(n for _, n in text) == len(canonical)
    want = _reference(model, encode_prompt(tok, prompt), ids, sampled_offsets(tok, ids, TEXT))
    np.testing.assert_allclose([s for s, _ in own], [s for s, _ in want], atol=1e-4)
    assert [n for _, n in own] == [n for _, n in want]
    assert not np.allclose([s for s, _ in own], [s for s, _ in text], atol=1e-3)  # the two differ


def test_a_canonical_sample_scores_exactly_as_its_text(lm):
    tok, model = lm
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    engine = HfEngine(model, pad_id=tok.pad_token_id)
    items = [ScoreItem("a", "Q: x\nA: ", TEXT, SPANS, token_ids=ids), ScoreItem("b", "Q: x\nA: ", TEXT, SPANS)]
    (own, text), stats = score_items(engine, tok, items, progress=False)
    assert own == text and stats.n_sampled_ids == 1 and stats.n_retokenized_differs == 0


def test_offsets_of_sampled_ids_cover_the_text_and_a_mismatch_is_an_error(lm):
    tok, _ = lm
    ids = _pieces(tok, TEXT)
    offsets = sampled_offsets(tok, ids, TEXT)
    assert offsets[0][0] == 0 and offsets[-1][1] == len(TEXT)
    assert all(a <= b == c for (a, b), (c, _) in zip(offsets, offsets[1:]))
    with pytest.raises(RdptError, match="not the decode of its sampled token ids"):
        score_items(HfEngine(lm[1]), tok, [ScoreItem("r", "Q: x\nA: ", TEXT, SPANS, token_ids=ids[:-2])],
                    progress=False)


def test_invalid_utf8_in_a_sample_decodes_to_a_replacement_char_with_consistent_offsets(lm):
    tok, _ = lm
    # the first byte of a two-byte character alone: its decode is U+FFFD, a width-one span
    byte = tok.convert_tokens_to_ids(tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str("é")[0][0][0])
    ids = _pieces(tok, "So 5") + [byte]
    text = tok.decode(ids)
    assert text.endswith("\ufffd")
    offsets = sampled_offsets(tok, ids, text)
    assert offsets[-1] == (len(text) - 1, len(text))
