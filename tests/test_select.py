"""Data selection: the Teacher/Student/Common rule, candidate features, every strategy (ties, single
candidates), arm parsing, candidate datasets, and the seed statistics of the report."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rdpt import RdptError
from rdpt.io.data import load_candidates
from rdpt.params import CandidateDataset, parse_params
from rdpt.provenance.rules import label_teacher_student
from rdpt.selection.arms import arm_seeds, parse_arm
from rdpt.selection.report import accuracy_table, load_runs, mean_ci, table1_markdown
from rdpt.selection.strategies import FEATURES, STRATEGIES, candidate_features, select, selection_stats
from tests.conftest import write_selection_pool


# ------------------------------------------------------------------------------------- the label rule
def test_teacher_student_common_rule_at_the_boundaries():
    p_t = np.array([0.9, 0.5, 0.2, 0.5, 0.6, 0.3])
    p_s = np.array([0.2, 0.5, 0.9, 0.45, 0.5, 0.4])
    got = label_teacher_student(p_t, p_s, beta=0.1)
    # 0.6 - 0.5 is 0.09999999999999998 in float64: not > 0.1, so Common; 0.4 - 0.3 = 0.10000000000000003: Student
    assert got.tolist() == ["Teacher", "Common", "Student", "Common", "Common", "Student"]
    assert label_teacher_student([0.7], [0.5], beta=0.0).tolist() == ["Teacher"]
    assert label_teacher_student([0.5], [0.5], beta=0.0).tolist() == ["Common"]
    with pytest.raises(RdptError, match="p_teacher"):
        label_teacher_student([np.nan], [0.5], 0.1)


# ---------------------------------------------------------------------------------------- features
def _sentences(rows):
    """rows: (response_id, sentence_idx, pT, pS, n_t, n_s, sum_rank_s) -> a scored sentence table."""
    df = pd.DataFrame(rows, columns=["response_id", "sentence_idx", "pT", "pS", "n_tokens_teacher",
                                     "n_tokens_student", "sum_rank_student"])
    with np.errstate(divide="ignore"):
        df["mean_logprob_teacher"] = np.log(df["pT"])
        df["mean_logprob_student"] = np.log(df["pS"])
    df["sum_logprob_student"] = df["mean_logprob_student"] * df["n_tokens_student"]
    return df


def _cands(ids):
    return pd.DataFrame({"response_id": ids, "question_id": [i.split("/")[0] for i in ids],
                         "sample_idx": [int(i.split("/")[1]) for i in ids]})


def test_candidate_features_by_hand():
    s = _sentences([
        ("q/0", 0, 0.9, 0.2, 3, 4, 8),   # Teacher
        ("q/0", 1, 0.5, 0.5, 2, 2, 2),   # Common
        ("q/0", 2, 0.1, 0.6, 2, 0, 0),   # no student token: unscored
        ("q/1", 0, 0.2, 0.8, 5, 5, 5),   # Student
    ])
    f = candidate_features(s, _cands(["q/0", "q/1"]), beta=0.1).set_index("response_id")
    assert list(f.columns[2:]) == list(FEATURES)
    a = f.loc["q/0"]
    assert (a.n_sentences, a.n_scored, a.n_teacher, a.n_student, a.n_common) == (3, 2, 1, 0, 1)
    assert a.teacher_ratio == pytest.approx(0.5)
    assert a.student_tokens == 6
    lp = 4 * np.log(0.2) + 2 * np.log(0.5)
    assert a.student_mean_logprob == pytest.approx(lp / 6)
    assert a.rsr == pytest.approx((8 + 2) / -lp)  # sum of clipped ranks / sum of NLL
    b = f.loc["q/1"]
    assert (b.n_teacher, b.n_student, b.teacher_ratio) == (0, 1, 0.0)
    assert b.rsr == pytest.approx(5 / (-5 * np.log(0.8)))


def test_candidate_without_sentences_is_an_error():
    s = _sentences([("q/0", 0, 0.9, 0.2, 3, 4, 8)])
    with pytest.raises(RdptError, match="'q/1' has no sentence"):
        candidate_features(s, _cands(["q/0", "q/1"]), beta=0.1)


# -------------------------------------------------------------------------------------- strategies
def _features(**cols):
    n = len(next(iter(cols.values())))
    base = {"question_id": ["a"] * n, "response_id": [f"a/{i}" for i in range(n)], "sample_idx": list(range(n)),
            "n_sentences": [5] * n, "n_scored": [5] * n, "n_teacher": [1] * n, "n_student": [0] * n,
            "n_common": [4] * n, "teacher_ratio": [0.2] * n, "student_tokens": [50] * n,
            "student_mean_logprob": [-1.0] * n, "rsr": [2.0] * n}
    base.update(cols)
    return pd.DataFrame(base)


@pytest.mark.parametrize("strategy, cols, winner", [
    ("teacher_count", {"n_teacher": [2, 5, 3]}, "a/1"),
    ("min_teacher_count", {"n_teacher": [2, 5, 1]}, "a/2"),
    ("teacher_ratio", {"teacher_ratio": [0.5, 0.4, 0.9]}, "a/2"),
    ("longest", {"student_tokens": [10, 80, 30]}, "a/1"),
    ("grape", {"student_mean_logprob": [-0.4, -2.0, -0.3]}, "a/2"),
    ("rsr", {"rsr": [3.0, 1.5, 2.0]}, "a/1"),  # lower is better
])
def test_each_strategy_picks_its_best_candidate(strategy, cols, winner):
    assert select(_features(**cols), strategy, seed=0)["response_id"].tolist() == [winner]


@pytest.mark.parametrize("strategy", sorted(set(STRATEGIES) - {"random"}))  # random draws: no ties
def test_ties_go_to_the_earliest_candidate_whatever_the_row_order(strategy):
    f = _features(n_teacher=[3, 3, 3])  # every feature ties
    assert select(f, strategy, 0)["response_id"].tolist() == ["a/0"]
    assert select(f.iloc[::-1], strategy, 0)["response_id"].tolist() == ["a/0"]
    # A tie between two best candidates only: the earlier of the two.
    g = _features(n_teacher=[1, 4, 4], teacher_ratio=[0.1, 0.8, 0.8], student_tokens=[9, 70, 70],
                  student_mean_logprob=[-3.0, -0.5, -0.5], rsr=[9.0, 1.0, 1.0])
    flip = {"min_teacher_count": "a/0"}
    assert select(g.iloc[[2, 0, 1]], strategy, 0)["response_id"].tolist() == [flip.get(strategy, "a/1")]


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_single_candidate_and_one_pick_per_question(strategy):
    f = pd.concat([_features(n_teacher=[2, 7]),
                   _features(n_teacher=[4]).assign(question_id="b", response_id="b/0"),
                   _features(n_teacher=[1, 1, 6]).assign(question_id="c", response_id=["c/0", "c/1", "c/2"])])
    chosen = select(f, strategy, seed=3)
    assert chosen["question_id"].tolist() == ["a", "b", "c"]  # every question, once, in order
    assert chosen.set_index("question_id").at["b", "response_id"] == "b/0"


def test_random_is_reproducible_per_seed_and_varies_across_seeds():
    f = pd.concat([_features(n_teacher=[1, 2, 3, 4]).assign(question_id=q, response_id=[f"{q}/{i}" for i in range(4)])
                   for q in "abcdefgh"])
    picks = {seed: select(f, "random", seed)["sample_idx"].tolist() for seed in range(4)}
    assert picks[0] == select(f.sample(frac=1, random_state=1), "random", 0)["sample_idx"].tolist()
    assert len({tuple(p) for p in picks.values()}) > 1


def test_nan_feature_is_an_error_naming_the_candidate():
    with pytest.raises(RdptError, match="a/1"):
        select(_features(student_mean_logprob=[-1.0, float("nan")]), "grape", 0)


def test_selection_stats():
    f = _features(n_teacher=[2, 4], teacher_ratio=[0.4, 0.8], student_tokens=[10, 30], rsr=[1.0, np.inf])
    s = selection_stats(f)
    assert (s["n_questions"], s["mean_tokens"], s["mean_teacher_count"]) == (2, 20.0, 3.0)
    assert s["mean_teacher_ratio"] == pytest.approx(0.6) and s["mean_rsr"] == 1.0  # inf left out


# ------------------------------------------------------------------------------------- arms, params
def test_parse_arm():
    assert parse_arm("teacher_count") == ("teacher_count", None)
    assert parse_arm("teacher_count_beta0.05") == ("teacher_count", 0.05)
    assert parse_arm("min_teacher_count_beta1") == ("min_teacher_count", 1.0)
    with pytest.raises(ValueError, match="unknown strategy 'best'"):
        parse_arm("best")
    with pytest.raises(ValueError, match="does not use beta"):
        parse_arm("grape_beta0.1")
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\]"):
        parse_arm("teacher_count_beta2.5")


def _params(select: dict):
    return parse_params({"models": {"teacher": {"path": "t"}, "student": {"path": "s"}},
                         "data": {"train": {"path": "x"}, "benchmarks": {"b": {"path": "y"}}},
                         "select": select}, "params.yaml")


@pytest.mark.parametrize("select, message", [
    ({"arms": ["teacher_count", "nope"]}, "select.arms: .*unknown strategy 'nope'"),
    ({"arms": ["random", "random"]}, "select.arms: .*distinct"),
    ({"arms": []}, "select.arms: .*at least one"),
    ({"seeds": [0, 0]}, "select.seeds"),
    ({"candidates": {"num_samples": 0}}, "select.candidates.num_samples"),
    ({"candidates": {"source": "dataset"}}, "needs select.candidates.dataset"),
    ({"candidates": {"top_p": 1.5}}, "select.candidates.top_p"),
    ({"beta": -0.1}, "select.beta"),
    ({"strategy": "x"}, "select.strategy: unknown key"),
    ({"arms": ["random"], "contrast": {"arms": ["grape"], "seeds": [5]}}, "contrast.arms: 'grape' is not in"),
    ({"contrast": {"arms": ["random"], "seeds": [1]}}, "none already in select.seeds"),
    ({"contrast": {"arms": ["random"]}}, "give both arms and seeds"),
    ({"contrast": {"arms": ["random"], "seeds": [4, 4]}}, "distinct"),
    ({"contrast": {"n": 3}}, "select.contrast.n: unknown key"),
    ({"eval": {"temperature": -1}}, "select.eval.temperature"),
    ({"eval": {"num_samples": 0}}, "select.eval.num_samples"),
])
def test_select_params_errors_name_the_key(select, message):
    with pytest.raises(RdptError, match=message):
        _params(select)


def test_contrast_seeds_and_eval_overrides():
    from rdpt.params import SamplingParams

    params = _params({"arms": ["teacher_count", "random", "grape"], "seeds": [0, 1],
                      "contrast": {"arms": ["teacher_count", "random"], "seeds": [4, 2]},
                      "eval": {"temperature": 0.6, "num_samples": 8}})
    assert arm_seeds(params.select, "random") == [0, 1, 4, 2] and arm_seeds(params.select, "grape") == [0, 1]
    base = SamplingParams(num_samples=4, temperature=1.0, top_p=0.9, max_new_tokens=77)
    got = params.select.eval.apply(base)
    assert (got.temperature, got.num_samples, got.top_p, got.max_new_tokens) == (0.6, 8, 0.9, 77)
    assert _params({}).select.eval.apply(base) is base  # all null: generate's sampling as it is
    # greedy with k > 1 is caught when params load, where generate's k is known, naming the key to set
    raw = {"models": {"teacher": {"path": "t"}, "student": {"path": "s"}}, "generate": {"num_samples": 4},
           "data": {"train": {"path": "x"}, "benchmarks": {"b": {"path": "y"}}}, "select": {"eval": {"temperature": 0}}}
    with pytest.raises(RdptError, match="select.eval: temperature 0 .* 'b' needs num_samples 1 .*would draw 4"):
        parse_params(raw, "params.yaml")
    raw["select"]["eval"]["num_samples"] = 1
    assert parse_params(raw, "params.yaml").select.eval.num_samples == 1


# ------------------------------------------------------------------------------- candidate datasets
def test_load_candidates_groups_by_id_or_question_text(tmp_path):
    rows = [{"q": "1+1?", "r": "It is \\boxed{2}.", "gold": "2", "who": "m1"},
            {"q": "2+2?", "r": "\\boxed{4}", "gold": "4", "who": "m1"},
            {"q": "1+1?", "r": "Two: \\boxed{2}.", "gold": "2", "who": "m2"}]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = CandidateDataset(path=str(path), question_field="q", response_field="r", answer_field="gold",
                            source_field="who")
    got = load_candidates(spec)
    assert [(c.question_id, c.sample_idx, c.source) for c in got] == [("0", 0, "m1"), ("1", 0, "m1"), ("0", 1, "m2")]
    rows[2]["gold"] = "3"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(RdptError, match="row 2: question '0' has two gold answers"):
        load_candidates(spec)
    rows[2]["r"] = " "
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(RdptError, match="row 2: empty or missing response 'r'"):
        load_candidates(spec)
    with pytest.raises(RdptError, match="no column 'output'"):
        load_candidates(CandidateDataset(path=str(path), question_field="q", response_field="output"))


# ----------------------------------------------------------------------------------- seed statistics
def test_mean_ci_is_the_t_interval():
    x = [0.41, 0.45, 0.43, 0.50]
    got = mean_ci(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert got["mean"] == pytest.approx(np.mean(x)) and got["ci95"] == pytest.approx((hi - lo) / 2)
    assert np.isnan(mean_ci([0.3])["ci95"])


def _write_runs(root, accs):
    """accs: {(arm, seed): {bench: n_correct out of 10}} -> eval.jsonl files."""
    for (arm, seed), per_bench in accs.items():
        d = root / arm / f"seed{seed}"
        d.mkdir(parents=True)
        # 10 questions x 1 sample: avg@1 = pass@1 = the share correct; the first response of each benchmark truncated
        rows = [{"benchmark": b, "question_id": f"q{i}", "correct": i < k, "finish_reason": "length" if i == 0 else
                 "stop"} for b, k in per_bench.items() for i in range(10)]
        (d / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_paired_delta_vs_random_and_table(tmp_path):
    accs = {("random", 0): {"x": 3, "y": 5}, ("random", 1): {"x": 5, "y": 5}, ("random", 2): {"x": 4, "y": 5},
            ("teacher_count", 0): {"x": 4, "y": 6}, ("teacher_count", 1): {"x": 6, "y": 6},
            ("teacher_count", 2): {"x": 5, "y": 6}}
    _write_runs(tmp_path, accs)
    runs = load_runs(tmp_path, ["teacher_count", "random"], [0, 1, 2], ["x", "y"])
    t = accuracy_table(runs).set_index(["arm", "benchmark"])
    # Seeds move both arms together: the paired delta is exactly +0.1 with zero spread.
    assert t.at[("teacher_count", "x"), "delta"] == pytest.approx(0.1)
    assert t.at[("teacher_count", "x"), "delta_ci95"] == pytest.approx(0.0, abs=1e-12)
    assert t.at[("teacher_count", "x"), "ci95"] > 0.05  # while the unpaired interval is wide
    assert t.at[("teacher_count", "avg"), "mean"] == pytest.approx(0.55)
    md = table1_markdown(accuracy_table(runs), ["teacher_count", "random"], ["x", "y"])
    assert "| `teacher_count` | 50.0 ± " in md and "+10.0 ± 0.0 |" in md
    with pytest.raises(RdptError, match="seed3/eval.jsonl: not found"):
        load_runs(tmp_path, ["random"], [3], ["x"])
    # contrast seeds: teacher_count and random at a fourth seed, grape at two; each arm's row counts its own seeds
    _write_runs(tmp_path, {("random", 3): {"x": 2, "y": 5}, ("teacher_count", 3): {"x": 5, "y": 6},
                           ("grape", 0): {"x": 3, "y": 3}, ("grape", 1): {"x": 7, "y": 3}})
    uneven = load_runs(tmp_path, ["teacher_count", "random", "grape"],
                       {"teacher_count": [0, 1, 2, 3], "random": [0, 1, 2, 3], "grape": [0, 1]}, ["x", "y"])
    t = accuracy_table(uneven).set_index(["arm", "benchmark"])
    assert t.at[("teacher_count", "avg"), "n_seeds"] == 4 and t.at[("grape", "avg"), "n_seeds"] == 2
    # paired on grape's seeds only: x deltas 0.0 and +0.2, y deltas -0.2 and -0.2
    assert t.at[("grape", "x"), "delta"] == pytest.approx(0.1)
    assert t.at[("grape", "avg"), "delta"] == pytest.approx(-0.05)
    # teacher_count's seed 3 pairs with random's seed 3 (x: +0.3): the spread is no longer 0
    assert t.at[("teacher_count", "x"), "delta"] == pytest.approx((0.1 * 3 + 0.3) / 4)
    md = table1_markdown(accuracy_table(uneven), ["teacher_count", "random", "grape"], ["x", "y"])
    assert "over its seeds (column `seeds`)" in md and md.splitlines()[2].endswith("| seeds |")
    assert [line.rsplit("|", 2)[1].strip() for line in md.splitlines()[4:7]] == ["4", "4", "2"]
    with pytest.raises(RdptError, match="no response for benchmark 'z'"):
        load_runs(tmp_path, ["random"], [0], ["x", "z"])


# --------------------------------------------------------------------------------- the select step
def test_select_step_writes_one_file_per_arm_and_seed(tmp_path):
    from rdpt.selection.select_data import select_data

    cands, sents = [], []
    rng = np.random.default_rng(0)
    for q in range(5):
        for k in range(1 + q % 3):  # 1, 2 or 3 candidates per question
            rid = f"candidates/q{q}/{k}"
            cands.append({"response_id": rid, "benchmark": "candidates", "question_id": f"q{q}", "sample_idx": k,
                          "question": f"Q{q}", "answer": "1", "text": "A. B. C.", "finish_reason": "stop",
                          "n_tokens": 6})
            for j in range(3):
                sents.append({"response_id": rid, "benchmark": "candidates", "sentence_idx": j, "start": 3 * j,
                              "end": 3 * j + 3, "text": "A. "})
    cands_path, sents_path, dirs = write_selection_pool(tmp_path, cands, sents, rng)
    params = _params({"arms": ["teacher_count", "random", "rsr", "teacher_count_beta0.5"], "seeds": [0, 1]})
    summary = select_data(params, cands_path, sents_path, dirs, str(tmp_path / "sel"))
    out = tmp_path / "sel"
    assert summary["n_questions"] == 5 and summary["n_candidates"] == len(cands)
    for arm in params.select.arms:
        files = [(out / arm / f"seed{seed}.jsonl").read_text() for seed in (0, 1)]
        picked = [pd.read_json(tmp_path / "sel" / arm / "seed0.jsonl", lines=True)]
        assert picked[0]["question_id"].tolist() == [f"q{q}" for q in range(5)]
        assert {"text", "question", "n_teacher", "rsr"} <= set(picked[0].columns)
        if arm != "random":  # a deterministic strategy writes the same bytes for every seed: no DVC rerun
            assert files[0] == files[1]
    assert summary["arms"]["teacher_count_beta0.5"]["beta"] == 0.5
    # Stats are at the common beta: teacher_count has the most Teacher sentences there.
    counts = {a: summary["arms"][a]["mean_teacher_count"] for a in ("teacher_count", "random", "rsr")}
    assert counts["teacher_count"] == max(counts.values())
    assert pd.read_parquet(out / "features.parquet").shape[0] == len(cands)


def test_candidates_from_a_dataset_keep_only_correct_ones(tmp_path):
    from rdpt.models import role_ref
    from rdpt.selection.candidates import candidates

    rows = [{"q": "1+1?", "r": "So \\boxed{2}.", "gold": "2"}, {"q": "1+1?", "r": "So \\boxed{3}.", "gold": "2"},
            {"q": "2+2?", "r": "It is 4, \\boxed{4}.", "gold": "4"}, {"q": "3+3?", "r": "\\boxed{5}", "gold": "6"}]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = {"path": str(path), "question_field": "q", "response_field": "r", "answer_field": "gold"}
    params = _params({"candidates": {"source": "dataset", "dataset": ds}})
    report = candidates(params, role_ref(params, "teacher", "unused"), str(tmp_path / "out.jsonl"),
                        str(tmp_path / "out.json"))
    assert (report["n_sampled"], report["n_kept"], report["n_questions"], report["n_questions_kept"]) == (4, 2, 3, 2)
    kept = pd.read_json(tmp_path / "out.jsonl", lines=True)
    assert kept["response_id"].tolist() == ["candidates/0/0", "candidates/2/0"]
    assert json.loads((tmp_path / "out.json").read_text())["candidates_per_question"] == {"1": 2}
    no_gold = _params({"candidates": {"source": "dataset", "dataset": {**ds, "answer_field": None}}})
    with pytest.raises(RdptError, match="only_correct needs select.candidates.dataset.answer_field"):
        candidates(no_gold, role_ref(no_gold, "teacher", "unused"), str(tmp_path / "x.jsonl"), str(tmp_path / "x.json"))
    assert not (tmp_path / "x.jsonl").exists()
