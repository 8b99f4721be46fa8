"""The evaluation protocol end to end on a tiny model: per-benchmark num_samples in `generate` (journaled, resumed),
multi-part golds carried into the rows and graded, and AceReason-style pseudo-gold candidates."""

import json

import pandas as pd
import pytest

from rdpt.generation.grade import evaluate
from rdpt.generation.responses import benchmark_sampling, generate
from rdpt.io.artifacts import read_table, write_jsonl
from rdpt.models import role_ref
from rdpt.params import SamplingParams, parse_params

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CORPUS = [f"Add {a} and {b}. Then {a} + {b} = {a + b}. The answer is {a + b}." for a in range(20) for b in range(4)]


@pytest.fixture(scope="module")
def tiny(tiny_lm_factory):
    return tiny_lm_factory("protocol_lm", CORPUS, chat_template=TEMPLATE)


def test_benchmark_sampling_overrides_num_samples_only():
    base = SamplingParams(num_samples=2, temperature=0.6)
    assert benchmark_sampling(base, None) is base
    got = benchmark_sampling(base, type("Spec", (), {"num_samples": 5})())
    assert (got.num_samples, got.temperature) == (5, 0.6)


def test_generate_samples_each_benchmark_its_own_k_and_carries_gold_parts(tiny, tmp_path):
    plain = tmp_path / "plain.jsonl"
    write_jsonl(plain, [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(3)])
    multi = tmp_path / "multi.jsonl"
    write_jsonl(multi, [{"id": 7, "question": "Roots of (x-2)(x-3)?", "final_answer": ["$2$", "$3$"]},
                        {"id": 8, "question": "What is 2 + 2?", "final_answer": ["$4$"]}])
    params = parse_params({
        "device": "cpu", "models": {"teacher": {"path": tiny}, "student": {"path": tiny}},
        "data": {"train": {"path": str(plain)}, "benchmarks": {
            "plain": {"path": str(plain), "id_field": "id"},
            "multi": {"path": str(multi), "answer_field": "final_answer", "answer_format": "list", "id_field": "id",
                      "num_samples": 3}}},
        "generate": {"num_samples": 2, "max_new_tokens": 6, "batch_size": 2}})
    out, journals = tmp_path / "gen.jsonl", tmp_path / "journals"
    stats = generate(params, role_ref(params, "teacher", tiny), "teacher", str(out), journal_dir=str(journals))
    rows = read_table(out, "generations")
    assert stats["n_responses"] == 3 * 2 + 2 * 3 == len(rows)
    assert rows.groupby("benchmark")["question_id"].value_counts().to_dict() == {
        ("multi", "7"): 3, ("multi", "8"): 3, ("plain", "q0"): 2, ("plain", "q1"): 2, ("plain", "q2"): 2}
    raw = [json.loads(line) for line in out.read_text().splitlines()]
    parts = {r["question_id"]: r.get("answer_parts") for r in raw}
    assert parts["7"] == ["$2$", "$3$"] and parts["8"] is None and parts["q0"] is None  # one part: plain answer
    first = out.read_bytes()
    # a rerun over the completed journal writes the same bytes (the per-benchmark k is part of the check)
    generate(params, role_ref(params, "teacher", tiny), "teacher", str(out), journal_dir=str(journals))
    assert out.read_bytes() == first

    # graded: a response naming both roots is right, one naming one root is wrong
    fixed = [r | {"text": r"\boxed{3, 2}" if r["sample_idx"] == 0 else r"\boxed{2}"} if r["question_id"] == "7"
             else r for r in raw]
    write_jsonl(tmp_path / "fixed.jsonl", fixed)
    graded = evaluate({"teacher": str(tmp_path / "fixed.jsonl")}, str(tmp_path / "graded.parquet"))
    seven = graded[graded["question_id"] == "7"].sort_values("response_id")
    assert seven["correct"].tolist() == [True, False, False]


def test_candidates_with_pseudo_gold_keep_rows_with_a_final_answer(tmp_path):
    from rdpt.selection.candidates import candidates

    rows = [{"category": "math", "input": "1+1?", "output": "<think>\n1+1=2\n</think>\n\nSo $\\boxed{2}$."},
            {"category": "math", "input": "1+1?", "output": "<think>\nIt is two, \\boxed{2}\n</think>\n\nTwo."},
            {"category": "math", "input": "2+2?", "output": "<think>\n2+2 is 4 and then"},
            {"category": "code", "input": "Reverse a string.", "output": "<think>\nslice\n</think>\n\n`s[::-1]`"}]
    path = tmp_path / "ace.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = parse_params({
        "device": "cpu", "models": {"teacher": {"path": "t"}, "student": {"path": "s"}},
        "data": {"train": {"path": str(path)}, "benchmarks": {"b": {"path": str(path)}}},
        "select": {"candidates": {"source": "dataset", "only_correct": True, "dataset": {
            "path": str(path), "question_field": "input", "response_field": "output", "filter": {"category": "math"},
            "pseudo_gold": True}}}})
    report = candidates(params, role_ref(params, "teacher", "unused"), str(tmp_path / "c.jsonl"),
                        str(tmp_path / "c.json"))
    # 3 math rows read; 2 have no final answer after </think> (none boxed, or cut off); 1 kept
    assert (report["n_sampled"], report["n_no_final_answer"], report["n_kept"]) == (3, 2, 1)
    kept = pd.read_json(tmp_path / "c.jsonl", lines=True, dtype=False)
    assert kept[["response_id", "answer"]].values.tolist() == [["candidates/0/0", "2"]]
