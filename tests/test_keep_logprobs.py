"""``keep_logprobs``: the teacher's sampling log-probs stored in the candidates and reused by ``select_score``
(issue item 7). The stages themselves run on a tiny LM: ``candidates`` -> ``segment`` -> ``score`` with the kept
log-probs equals ``score`` by a forward pass, sentence by sentence, and needs no forward pass at all::

    pytest tests/test_keep_logprobs.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rdpt.io.artifacts import read_table
from rdpt.models import role_ref
from rdpt.params import parse_params
from rdpt.provenance.score import score
from rdpt.provenance.segment import segment
from rdpt.selection.candidates import candidates

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CORPUS = [f"Add {a} and {b}. Then {a} + {b} = {a + b}. The answer is {a + b}." for a in range(30) for b in range(5)]
# sampled (KV cache, left padding) vs one unpadded pass: float rounding only (tests/test_stored_logprobs.py)
ATOL = 1e-5


@pytest.fixture(scope="module")
def pool(tiny_lm_factory, tmp_path_factory):
    """Candidates sampled with keep_logprobs by a tiny teacher, segmented; (params, teacher ref, folder)."""
    lm = tiny_lm_factory("keep_lp_lm", CORPUS, chat_template=TEMPLATE)
    tmp = tmp_path_factory.mktemp("keep_lp")
    with open(tmp / "train.jsonl", "w") as fh:
        for i, (a, b) in enumerate([(3, 4), (12, 2), (1, 1), (20, 3), (7, 0), (5, 4)]):
            fh.write(json.dumps({"id": str(i), "question": f"Add {a} and {b}.", "answer": str(a + b)}) + "\n")
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["models"]["teacher"]["path"] = lm
    data["data"]["train"]["path"] = str(tmp / "train.jsonl")
    data["select"]["candidates"] |= {"n_questions": 6, "num_samples": 3, "temperature": 0.8, "max_new_tokens": 24,
                                     "batch_size": 4, "only_correct": False, "keep_logprobs": True,
                                     "temperatures": None}
    params = parse_params(data)
    teacher = role_ref(params, "teacher", lm)
    candidates(params, teacher, str(tmp / "cands.jsonl"), str(tmp / "cands.json"))
    segment(params, str(tmp / "cands.jsonl"), str(tmp / "sents.parquet"), str(tmp / "empty.parquet"))
    return params, teacher, tmp


def _without_logprobs(src: Path, dst: Path, **changes) -> str:
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    with open(dst, "w") as fh:
        for r in rows:
            r = {k: v for k, v in r.items() if k not in ("token_logprobs", "token_ranks", "prompt_digest")} \
                if not changes else r | changes
            fh.write(json.dumps(r) + "\n")
    return str(dst)


def test_candidates_keep_raw_log_probs_and_ranks_aligned_with_the_sampled_ids(pool):
    _, _, tmp = pool
    rows = [json.loads(line) for line in (tmp / "cands.jsonl").read_text().splitlines()]
    assert len(rows) == 18
    for r in rows:
        assert len(r["token_logprobs"]) == len(r["token_ranks"]) == len(r["token_ids"]) == r["n_tokens"]
        assert all(x <= 0 for x in r["token_logprobs"]) and all(k >= 1 for k in r["token_ranks"])
        assert len(r["prompt_digest"]) == 64
    # at temperature 0.8 some drawn tokens are not the model's top choice
    assert any(k > 1 for r in rows for k in r["token_ranks"])


def test_select_score_from_kept_log_probs_equals_a_teacher_pass(pool):
    params, teacher, tmp = pool
    sents = str(tmp / "sents.parquet")
    reused = score(params, teacher, "teacher", str(tmp / "cands.jsonl"), sents, str(tmp / "reused"))
    plain = _without_logprobs(tmp / "cands.jsonl", tmp / "plain.jsonl")
    passed = score(params, teacher, "teacher", plain, sents, str(tmp / "passed"))
    n_responses = read_table(tmp / "sents.parquet", "sentences")["response_id"].nunique()
    assert (reused["reused_sampling_logprobs"], reused["forward_passes"]) == (n_responses, 0)
    assert "reused_sampling_logprobs" not in passed
    a = read_table(tmp / "reused" / "scores.parquet", "scores").sort_values(["response_id", "sentence_idx"])
    b = read_table(tmp / "passed" / "scores.parquet", "scores").sort_values(["response_id", "sentence_idx"])
    assert len(a) == len(b) >= n_responses >= 12
    assert a["n_tokens"].tolist() == b["n_tokens"].tolist()
    assert a["sum_rank"].tolist() == b["sum_rank"].tolist()  # ranks clipped at score.rank_clip alike
    for col in ("sum_logprob", "first_logprob", "min_window_logprob"):
        np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), atol=ATOL, equal_nan=True)


def test_log_probs_kept_after_another_prompt_are_not_trusted(pool):
    params, teacher, tmp = pool
    tampered = _without_logprobs(tmp / "cands.jsonl", tmp / "tampered.jsonl", prompt_digest="0" * 64)
    out = score(params, teacher, "teacher", tampered, str(tmp / "sents.parquet"), str(tmp / "tampered"))
    assert "reused_sampling_logprobs" not in out  # nothing matched: a plain forward pass
    assert out["tokens_scored"] == sum(read_table(tmp / "tampered" / "scores.parquet", "scores")["n_tokens"]) > 0


def test_another_model_never_reads_the_teachers_log_probs(pool):
    params, teacher, tmp = pool
    other = role_ref(params, "student", teacher.path)  # same weights, but not the path that sampled them
    moved = _without_logprobs(tmp / "cands.jsonl", tmp / "moved.jsonl", model="somewhere/else")
    out = score(params, other, "student", moved, str(tmp / "sents.parquet"), str(tmp / "other"))
    assert "reused_sampling_logprobs" not in out


def test_mixed_temperature_pool_is_each_temperature_sampled_alone(pool, tmp_path):
    """select.candidates.temperatures: the first temperature's candidates are exactly a plain run at it (same seed),
    the others follow as candidates 2, 3 of the same question, each row naming its temperature."""
    params, teacher, _ = pool
    spec = params.select.candidates
    mixed = params.model_copy(update={"select": params.select.model_copy(update={"candidates": spec.model_copy(
        update={"num_samples": 4, "temperatures": [0.5, 1.5]})})})
    plain = params.model_copy(update={"select": params.select.model_copy(update={"candidates": spec.model_copy(
        update={"num_samples": 2, "temperature": 0.5})})})
    report = candidates(mixed, teacher, str(tmp_path / "mixed.jsonl"), str(tmp_path / "mixed.json"))
    candidates(plain, teacher, str(tmp_path / "plain.jsonl"), str(tmp_path / "plain.json"))
    rows = [json.loads(line) for line in (tmp_path / "mixed.jsonl").read_text().splitlines()]
    ref = {r["response_id"]: r for r in map(json.loads, (tmp_path / "plain.jsonl").read_text().splitlines())}
    assert len(rows) == 24 and report["kept_by_temperature"] == {"0.5": 12, "1.5": 12}
    assert [r["sample_idx"] for r in rows[:4]] == [0, 1, 2, 3] and rows[0]["question_id"] == rows[3]["question_id"]
    for r in rows:
        assert r["response_id"] == f"candidates/{r['question_id']}/{r['sample_idx']}"
        assert r["temperature"] == (0.5 if r["sample_idx"] < 2 else 1.5)
        if r["sample_idx"] < 2:
            assert r["token_ids"] == ref[r["response_id"]]["token_ids"]
    # the hotter half is a different draw
    assert any(r["token_ids"] != rows[i - 2]["token_ids"] for i, r in enumerate(rows) if r["sample_idx"] >= 2)
