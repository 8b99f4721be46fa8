"""Score variants (docs/scoring.md, "Score variants"): the per-sentence statistics the one pass writes equal a slow
full-softmax reference, `mean` is today's p bit for bit, and a variant moves classes the way its definition says.

    pytest tests/test_score_variants.py -q
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from rdpt import RdptError
from rdpt.engines.hf import HfEngine
from rdpt.io.journal import check_record
from rdpt.models import load_model, load_tokenizer, render_prompt
from rdpt.provenance import ROLES
from rdpt.provenance.rules import classify_frame, sentence_logprob
from rdpt.provenance.score import WINDOW_TOKENS, ScoreItem, reference_score_items, score_items
from rdpt.selection.strategies import candidate_features, select

WORDS = "we add the value of x then carry one so total is check again sum digits answer step".split()
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def tiny(tiny_lm_factory):
    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(12)) + "." for _ in range(200)]
    folder = tiny_lm_factory("variants", corpus, chat_template=TEMPLATE)
    return load_model(str(folder), "cpu", "float32"), load_tokenizer(str(folder))


def _items(tok, n):
    rng = random.Random(1)
    items = []
    for i in range(n):
        # short (1 token, <= window) and long sentences, glued with or without a space
        sents = [" ".join(rng.choice(WORDS) for _ in range(rng.choice([1, 2, 6, 11]))) + "." + rng.choice([" ", ""])
                 for _ in range(rng.randint(2, 5))]
        text = "".join(sents).rstrip(" ")
        spans, start = [], 0
        for s in sents:
            end = min(start + len(s), len(text))
            spans.append((start, end))
            start = end
        spans[-1] = (spans[-1][0], len(text))
        items.append(ScoreItem(key=f"r{i}", prompt=render_prompt(tok, "add the digits"), response=text, spans=spans))
    return items


def test_variant_columns_match_full_softmax_reference(tiny):
    model, tok = tiny
    items = _items(tok, 6)
    engine = HfEngine(model, chunk_size=7, max_tokens_per_batch=120, pad_id=tok.pad_token_id)
    got, _ = score_items(engine, tok, items, rank_clip=50, variants=True, progress=False)
    want = reference_score_items(model, tok, items, rank_clip=50, variants=True)
    plain, _ = score_items(engine, tok, items, rank_clip=50, progress=False)
    n_long = 0
    for g_resp, w_resp, p_resp in zip(got, want, plain, strict=True):
        for g, w, p in zip(g_resp, w_resp, p_resp, strict=True):
            assert len(g) == 5 and g[:3] == p  # the existing fields are untouched by the flag
            assert g[1:3] == w[1:3]
            if g[1]:
                assert g[3] == pytest.approx(w[3], abs=1e-4)  # first token's log-prob
                assert g[4] == pytest.approx(w[4], abs=1e-4)  # worst window mean
                assert g[4] <= g[0] / g[1] + 1e-12  # the worst window is never above the mean
                n_long += g[1] > WINDOW_TOKENS
            else:
                assert g[3:] == (0.0, 0.0)
        check_record({"keys": ["x"], "scores": [[list(x) for x in g_resp]]})  # journal accepts the records
    assert n_long > 0  # windows really slid


def _frame(rows):
    """rows: per sentence {role: (n, sum, first, window)} -> the joined table classify_frame reads."""
    data = {}
    for role_i, role in enumerate(ROLES):
        n = np.array([r[role_i][0] for r in rows])
        total = np.array([r[role_i][1] for r in rows], dtype=float)
        data[f"n_tokens_{role}"] = n
        data[f"sum_logprob_{role}"] = total
        data[f"mean_logprob_{role}"] = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        data[f"first_logprob_{role}"] = [r[role_i][2] for r in rows]
        data[f"min_window_logprob_{role}"] = [r[role_i][3] for r in rows]
    return pd.DataFrame(data)


def test_mean_is_todays_rule_bit_for_bit():
    rng = np.random.default_rng(0)
    rows = [tuple((int(n), float(-rng.random() * n), -1.0, -1.0) for n in rng.integers(0, 9, 3)) for _ in range(200)]
    df = _frame(rows)
    default, mean = classify_frame(df, 0.1, 0.1), classify_frame(df, 0.1, 0.1, "mean")
    pd.testing.assert_frame_equal(default, mean)
    scored = (default["cls"] != "Unscored").to_numpy()
    assert 0 < scored.sum() < len(df)
    for role in ROLES:  # p is exp(mean_logprob) exactly, as before the variants
        p = np.exp(df[f"mean_logprob_{role}"].to_numpy())
        np.testing.assert_array_equal(default[f"p_{role}"].to_numpy()[scored], p[scored])


def test_drop_first_removes_a_low_first_token():
    # T and S agree on every token but the first, which only S finds unlikely: mean says Teacher, drop_first Shared.
    lp = np.log(0.9)
    t, s, d = (5, 5 * lp, lp, lp), (5, 4 * lp + np.log(0.05), np.log(0.05), lp), (5, 5 * lp, lp, lp)
    one = (1, np.log(0.5), np.log(0.5), np.log(0.5))  # a one-token sentence keeps its mean under drop_first
    df = _frame([(t, s, d), (one, (1, np.log(0.2), np.log(0.2), np.log(0.2)), one)])
    assert classify_frame(df, 0.1, 0.1)["cls"].tolist() == ["Teacher", "Teacher"]
    out = classify_frame(df, 0.1, 0.1, "drop_first")
    assert out["cls"].tolist() == ["Shared", "Teacher"]
    assert out["p_student"].iloc[0] == pytest.approx(0.9) and out["p_student"].iloc[1] == pytest.approx(0.2)


def test_window_min_sees_a_local_dip():
    # Same mean under T and S, but S has a 4-token stretch it finds unlikely: window_min makes it Teacher.
    t, s = (12, 12 * np.log(0.7), np.log(0.7), np.log(0.7)), (12, 12 * np.log(0.7), np.log(0.7), np.log(0.3))
    df = _frame([(t, s, t)])
    assert classify_frame(df, 0.1, 0.1)["cls"].tolist() == ["Shared"]
    assert classify_frame(df, 0.1, 0.1, "window_min")["cls"].tolist() == ["Teacher"]


def test_missing_variant_columns_and_unknown_aggregate():
    df = _frame([((3, -1.0, -0.5, -0.5),) * 3]).drop(columns=[f"first_logprob_{r}" for r in ROLES])
    classify_frame(df, 0.1, 0.1)  # mean needs none of them
    with pytest.raises(RdptError, match="first_logprob_teacher"):
        classify_frame(df, 0.1, 0.1, "drop_first")
    with pytest.raises(RdptError, match="unknown score aggregate"):
        sentence_logprob(df, "teacher", "median")


def test_selection_follows_the_aggregate():
    # Two candidates of one question: A has one Teacher sentence only under mean (S's low first token),
    # B one only under drop_first... so the winner flips with select.aggregate.
    lp = np.log(0.9)
    rows = []
    def sent(rid, idx, t, s):
        rows.append({"response_id": rid, "sentence_idx": idx, **{f"{k}_teacher": v for k, v in t.items()},
                     **{f"{k}_student": v for k, v in s.items()}, "sum_rank_student": 3})
    def stats(n, total, first, window):
        return {"n_tokens": n, "sum_logprob": total, "mean_logprob": total / n, "first_logprob": first,
                "min_window_logprob": window}
    sent("A", 0, stats(5, 5 * lp, lp, lp), stats(5, 4 * lp + np.log(0.05), np.log(0.05), lp))
    sent("B", 0, stats(5, 4 * lp + np.log(0.05), np.log(0.05), lp), stats(5, 4 * np.log(0.6) + np.log(0.95),
                                                                          np.log(0.95), np.log(0.6)))
    sents = pd.DataFrame(rows)
    cands = pd.DataFrame({"response_id": ["A", "B"], "question_id": ["q", "q"], "sample_idx": [0, 1]})
    mean = candidate_features(sents, cands, 0.1)
    drop = candidate_features(sents, cands, 0.1, "drop_first")
    assert mean["n_teacher"].tolist() == [1, 0] and drop["n_teacher"].tolist() == [0, 1]
    assert select(mean, "teacher_count", 0)["response_id"].tolist() == ["A"]
    assert select(drop, "teacher_count", 0)["response_id"].tolist() == ["B"]
    pd.testing.assert_frame_equal(mean, candidate_features(sents, cands, 0.1, "mean"))
