"""The evaluation protocol (rdpt/analysis/pass_at_k.py): the unbiased pass@k estimator against enumeration, avg@k,
the truncation rate, and where they are reported (the correlate metrics, the selection report's Table 1)."""

import itertools
import json
import math

import pandas as pd
import pytest

from rdpt.analysis.pass_at_k import evaluation, pass_at_k, report_ks, summary
from rdpt.selection.report import accuracy_table, load_runs, metrics, table1_markdown


def _brute_force(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (c of them correct) that hold a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 4, 5, 8])
def test_pass_at_k_is_the_enumerated_probability(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_brute_force(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_values_and_edges():
    assert pass_at_k(16, 0, 16) == 0.0 and pass_at_k(16, 1, 16) == 1.0
    assert pass_at_k(16, 4, 1) == pytest.approx(4 / 16)  # pass@1 = c / n
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(4, 2)) == pytest.approx(0.5)
    assert pass_at_k(64, 3, 8) == pytest.approx(1 - math.comb(61, 8) / math.comb(64, 8))
    assert 0.0 < pass_at_k(2000, 1, 1000) == pytest.approx(0.5)  # exact integers: no overflow at large n
    for bad in [(4, 5, 1), (4, 1, 0), (4, 1, 5), (4, -1, 1)]:
        with pytest.raises(ValueError, match="pass@k needs"):
            pass_at_k(*bad)


def test_reported_ks():
    assert [report_ks(n) for n in (1, 2, 4, 6, 16)] == [[1], [1, 2], [1, 2, 4], [1, 2, 4, 6], [1, 2, 4, 8, 16]]


def _responses(per_question: dict[str, list[bool]], truncated: set[tuple[str, int]] = frozenset()) -> pd.DataFrame:
    return pd.DataFrame([{"question_id": q, "correct": ok, "finish_reason": "length" if (q, j) in truncated
                          else "stop"} for q, oks in per_question.items() for j, ok in enumerate(oks)])


def test_summary_avg_at_k_pass_at_k_and_truncation():
    # q1: 1 of 4 right, q2: 4 of 4, q3: 0 of 4 (two of its samples cut at the token limit)
    df = _responses({"q1": [False, True, False, False], "q2": [True] * 4, "q3": [False] * 4},
                    {("q3", 0), ("q3", 1)})
    got = summary(df)
    assert got["n_questions"] == 3 and got["samples_per_question"] == 4
    assert got["avg_at_k"] == pytest.approx(round((0.25 + 1 + 0) / 3, 4))
    assert got["pass_at_k"]["1"] == got["avg_at_k"]  # pass@1 = avg@k
    assert got["pass_at_k"]["2"] == pytest.approx(round((0.5 + 1 + 0) / 3, 4))
    assert got["pass_at_k"]["4"] == pytest.approx(round(2 / 3, 4))
    assert (got["n_truncated"], got["truncation_rate"]) == (2, round(2 / 12, 4))
    # questions with different sample counts (an interrupted run): pass@k up to the smallest n
    uneven = summary(_responses({"a": [True, False, False, False], "b": [False, True]}))
    assert uneven["samples_per_question"] == [2, 4] and list(uneven["pass_at_k"]) == ["1", "2"]
    assert uneven["avg_at_k"] == pytest.approx((0.25 + 0.5) / 2)  # each question weighs the same


def test_evaluation_per_benchmark_and_model():
    rows = []
    for bench, model, oks in [("b", "teacher", [True, True]), ("b", "student", [False, True]),
                              ("a", "teacher", [False, False])]:
        rows += [{"benchmark": bench, "model": model, "question_id": "q", "correct": ok, "finish_reason": "stop"}
                 for ok in oks]
    got = evaluation(pd.DataFrame(rows))
    assert list(got) == ["a", "b"] and set(got["b"]) == {"teacher", "student"}
    assert got["b"]["student"]["pass_at_k"] == {"1": 0.5, "2": 1.0}
    assert got["a"]["teacher"]["pass_at_k"] == {"1": 0.0, "2": 0.0}


def test_selection_table1_reports_pass_at_k_and_truncation(tmp_path):
    # per run: benchmark x has 2 questions x 4 samples, y has 3 questions x 2 samples
    def write(arm, seed, x, y, cut):
        d = tmp_path / arm / f"seed{seed}"
        d.mkdir(parents=True)
        rows = [{"benchmark": b, "question_id": f"{b}{q}", "correct": ok, "finish_reason": "length" if
                 (b, q, j) in cut else "stop"} for b, per_q in (("x", x), ("y", y)) for q, oks in enumerate(per_q)
                for j, ok in enumerate(oks)]
        (d / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    write("random", 0, [[True, False, False, False], [False] * 4], [[True, False], [False, False], [True, True]],
          {("x", 1, 0)})
    write("teacher_count", 0, [[True] * 4, [False, False, False, True]], [[True, True]] * 3, set())
    runs = load_runs(tmp_path, ["teacher_count", "random"], [0], ["x", "y"]).set_index(["arm", "benchmark"])
    assert runs.at[("random", "x"), "k"] == 4 and runs.at[("random", "y"), "k"] == 2
    assert runs.at[("random", "x"), "accuracy"] == pytest.approx(0.125)  # avg@4
    assert runs.at[("random", "x"), "pass_at_k"] == pytest.approx(0.5)  # q0 has a right sample, q1 none
    assert runs.at[("random", "y"), "pass_at_k"] == pytest.approx(2 / 3, abs=1e-4)  # pass@2 per question: 1, 0, 1
    assert runs.at[("random", "x"), "truncation_rate"] == pytest.approx(1 / 8)
    assert runs.at[("random", "avg"), "k"] == 0  # the benchmarks' k differ
    table = accuracy_table(runs.reset_index())
    out = metrics(table, {"arms": {}, "n_candidates": 0, "n_dropped_no_sentence": 0, "beta": 0.1}, {})
    cell = out["accuracy"]["x"]["teacher_count"]
    assert (cell["mean"], cell["k"], cell["pass_at_k"], cell["truncation_rate"]) == (0.625, 4, 1.0, 0.0)
    assert out["accuracy"]["x"]["random"]["truncation_rate"] == 0.125
    md = table1_markdown(table, ["teacher_count", "random"], ["x", "y"])
    assert "| strategy | x pass@4 | y pass@2 | x truncated | y truncated |" in md
    assert "| `random` | 50.0 | 66.7 | 12.5 | 0.0 |" in md
