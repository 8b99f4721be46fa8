import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rdpt import RdptError
from rdpt.provenance.segment import SEGMENTERS, sentences, split

METHODS = sorted(SEGMENTERS)


def test_registry_has_the_three_methods():
    assert METHODS == ["nltk", "pysbd", "regex"]


def test_unknown_method_is_a_user_error():
    with pytest.raises(RdptError, match="unknown segmentation method 'spacy'.*regex"):
        split("A. B.", "spacy")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("text", ["", " ", "\n\n\t ", "\r\n"])
def test_blank_text_has_no_sentence(method, text):
    assert split(text, method) == []


@pytest.mark.parametrize("method", METHODS)
def test_whitespace_attaches_to_previous_sentence_and_leading_to_first(method):
    text = "  First one.  Second one?\n\nThird one!\n"
    assert sentences(text, method) == ["  First one.  ", "Second one?\n\n", "Third one!\n"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("We add. So 3.5 + 1 = 4.5.", ["We add. ", "So 3.5 + 1 = 4.5."]),
        ("Use e.g. a table, i.e. a grid. Next.", ["Use e.g. a table, i.e. a grid. ", "Next."]),
        ("Dr. Who vs. Me etc. and more. End", ["Dr. Who vs. Me etc. and more. ", "End"]),
        ("The answer is 7. Next", ["The answer is 7. ", "Next"]),
        ("Plan:\n1. Expand it.\n2. Solve it.", ["Plan:\n", "1. Expand it.\n", "2. Solve it."]),
        ("**3.** Bold marker.", ["**3.** Bold marker."]),
        ("Wait... really?! Yes.", ["Wait... ", "really?! ", "Yes."]),
        ('He said "stop." Then left.', ['He said "stop." ', "Then left."]),
        ("no punctuation\nnext line", ["no punctuation\n", "next line"]),
        ("a\r\nb\r\n\r\nc", ["a\r\n", "b\r\n\r\n", "c"]),
        ("中文。句子！好", ["中文。", "句子！", "好"]),
        # content-free pieces merge: into the previous sentence, or forward when they open the text
        ("Done.\n---\n...\nNext.", ["Done.\n---\n...\n", "Next."]),
        ("...\nHello. World.", ["...\nHello. ", "World."]),
        ("!!! ??", ["!!! ??"]),
        # math is kept whole
        ("Set $x = 3. y$ now. So \\boxed{3. 5\n}. Ok", ["Set $x = 3. y$ now. ", "So \\boxed{3. 5\n}. ", "Ok"]),
        ("Then $$a.\nb$$ and \\[c.\nd\\] fine. End", ["Then $$a.\nb$$ and \\[c.\nd\\] fine. ", "End"]),
        # a price is not inline math (pandoc's rule), so the period after it still ends the sentence
        ("It costs $5. Then $6. Done.", ["It costs $5. ", "Then $6. ", "Done."]),
        # an unclosed \boxed (truncated output) protects nothing
        ("So \\boxed{3. Then", ["So \\boxed{3. ", "Then"]),
    ],
)
def test_regex_splitter(text, expected):
    assert sentences(text, "regex") == expected


@pytest.mark.parametrize("method", ["pysbd", "nltk"])
def test_library_splitters_never_cut_inside_math(method):
    text = "Answer \\boxed{3. 5}. Done. And $x = 1. y$ too."
    assert sentences(text, method) == ["Answer \\boxed{3. 5}. ", "Done. ", "And $x = 1. y$ too."]


# Pieces, not characters, so that the tricky tokens (math openers, markers, \r\n) meet often enough.
_TEXT = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8"), max_size=6),  # anything: control characters, emoji, CJK
        st.sampled_from(list(".!?。\n\r\t $\\{}") + ["\r\n", "e.g. ", "1. ", "\\boxed{", "$$", "\\[", "\\]"]),
    ),
    max_size=30,
).map("".join)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT)
def test_spans_rebuild_any_text(method, text):
    spans = split(text, method)
    if not text.strip():
        assert spans == []
        return
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a < b for a, b in spans)
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(spans))
    assert "".join(text[a:b] for a, b in spans) == text
    # every sentence but a lone one carries a letter or digit
    if len(spans) > 1:
        assert all(any(c.isalnum() for c in text[a:b]) for a, b in spans)


@pytest.mark.parametrize("method", ["regex", "pysbd", "nltk"])
@pytest.mark.parametrize("text", ["\x1f0", "a.\x1f0 b. c", "\x1f1. x\x00y."])
def test_control_characters_found_by_hypothesis(method, text):
    spans = split(text, method)
    assert "".join(text[a:b] for a, b in spans) == text
