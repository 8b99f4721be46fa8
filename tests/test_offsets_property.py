"""Property: with each toy tokenizer, arbitrary unicode text is segmented and every response token is
assigned to exactly one sentence, in order, through the real offsets the tokenizer reports."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rdpt.provenance.segment import split
from rdpt.provenance.tokens import assign_tokens
from rdpt.toy.styles import STYLES
from rdpt.toy.task import make_toy_data
from rdpt.toy.tokenizer import STUDENT_TOKENIZER, TEACHER_TOKENIZER, train_tokenizer


@pytest.fixture(scope="module")
def toy_tokenizers():
    import random

    data = make_toy_data(0, 20, 4, {"teacher": 60, "student": 60}, {"teacher": 0, "student": 0})
    rng = random.Random(0)
    out = {}
    for role, spec, vocab in (("teacher", TEACHER_TOKENIZER, 400), ("student", STUDENT_TOKENIZER, 330)):
        texts = [STYLES[role].solve(p, rng) for p in data.corpora[role]]
        out[role] = train_tokenizer(texts, vocab, spec, model_max_length=512)
    return out


texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=120
) | st.lists(st.sampled_from(["Ana has 3 pens.", " So 3 + 2 = 5.", "\n", "\\boxed{5}", " e.g. 3.5", "é🙂中"]),
             max_size=8).map("".join)


@pytest.mark.parametrize("role", ["teacher", "student"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts)
def test_every_token_in_exactly_one_sentence(toy_tokenizers, role, text):
    tok = toy_tokenizers[role]
    spans = split(text)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    if not spans:
        assert text.strip() == ""
        return
    owner = assign_tokens(offsets, spans, text)
    assert len(owner) == len(enc["input_ids"])  # one sentence per token, none skipped or doubled
    assert all(0 <= k < len(spans) for k in owner)
    assert owner == sorted(owner)  # tokens go to sentences in reading order
    # The tokens reconstruct the text, so sentence scores cover every character.
    assert tok.decode(enc["input_ids"]) == text
