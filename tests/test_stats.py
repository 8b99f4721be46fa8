"""rdpt.analysis.stats on synthetic responses with a known effect (and with none)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kstest, pointbiserialr

from rdpt import RdptError
from rdpt.analysis.shares import area_between, position_curves
from rdpt.analysis.stats import (
    TERMS,
    area_permutation_test,
    correlation_markdown,
    correlation_metrics,
    correlation_table,
    fit_logistic,
    logistic_design,
    point_biserial,
    question_bootstrap,
    response_units,
    within_group_permutations,
)
from rdpt.provenance.rules import CLASSES


def _world(n_questions=80, k=4, effect=1.5, n_sentences=8, question_sd=0.0, seed=0, bench="b"):
    """Responses whose Teacher share drives correctness (log-odds slope ``effect`` per unit share).

    Each sentence is Teacher with probability t (the response's propensity), else Student / Boosted / Shared.
    Returns (sentences, responses) as rdpt.analysis.shares / rdpt.analysis.stats take them.
    """
    rng = np.random.default_rng(seed)
    sent_rows, resp_rows = [], []
    for q in range(n_questions):
        u = rng.normal(0, question_sd)
        for j in range(k):
            rid = f"{bench}/q{q:03d}/{j}"
            t = rng.uniform(0.2, 0.9)
            cls = rng.choice(CLASSES, size=n_sentences, p=[(1 - t) / 4, t, (1 - t) / 2, (1 - t) / 4])
            share_t = float(np.mean(cls == "Teacher"))
            correct = rng.random() < 1 / (1 + math.exp(-(effect * (share_t - 0.55) * 4 + u)))
            sent_rows += [(rid, bench, i, c) for i, c in enumerate(cls)]
            resp_rows.append((rid, bench, f"q{q:03d}", bool(correct), n_sentences, int(rng.integers(40, 120))))
    sentences = pd.DataFrame(sent_rows, columns=["response_id", "benchmark", "sentence_idx", "cls"])
    responses = pd.DataFrame(resp_rows, columns=["response_id", "benchmark", "question_id", "correct", "n_sentences",
                                                 "n_tokens"])
    return sentences, responses


@pytest.fixture(scope="module")
def world():
    return _world()


def test_response_units(world):
    sentences, responses = world
    units = response_units(sentences, responses)
    assert len(units) == len(responses)
    assert np.allclose(units[list(CLASSES)].sum(axis=1), 1.0)
    assert np.allclose(units["length"], np.log(units["n_tokens"]))
    first = units.iloc[0]
    expect = (sentences[sentences["response_id"] == first["response_id"]]["cls"] == "Teacher").mean()
    assert first["Teacher"] == pytest.approx(expect)
    with pytest.raises(RdptError, match="question_id"):
        response_units(sentences, responses.drop(columns="question_id"))


def test_point_biserial_matches_scipy(world):
    units = response_units(*world)
    y = units["correct"].to_numpy()
    for term in TERMS:
        r, reason = point_biserial(y, units[term].to_numpy())
        assert reason is None
        assert r == pytest.approx(pointbiserialr(y, units[term]).statistic, abs=1e-12)


def test_point_biserial_degenerate_cases():
    assert point_biserial(np.ones(5, bool), np.arange(5.0))[1] == "all responses correct"
    assert point_biserial(np.zeros(5, bool), np.arange(5.0))[1] == "all responses incorrect"
    r, reason = point_biserial(np.array([1, 0, 1, 0], bool), np.full(4, 0.3))
    assert math.isnan(r) and reason == "constant predictor"


def test_correlation_table_finds_a_real_effect_and_its_ci_covers_it(world):
    units = response_units(*world)
    table = correlation_table(units, n_bootstrap=300, seed=0).set_index(["statistic", "term"])
    pb = table.loc[("point_biserial", "Teacher")]
    assert pb["estimate"] == pytest.approx(pointbiserialr(units["correct"], units["Teacher"]).statistic)
    assert 0 < pb["ci_low"] < pb["estimate"] < pb["ci_high"]  # a real, positive association
    assert pb["n_valid"] == 300 and pb["n_responses"] == 320 and pb["n_questions"] == 80
    # Teacher is the reference: the others' odds ratios are "instead of a Teacher sentence" -> below 1
    assert table.loc[("odds_ratio", "Teacher"), "reason"] == "reference"
    assert table.loc[("odds_ratio", "Student"), "ci_high"] < 1
    # length plays no part in the simulation: its CI covers 1
    length = table.loc[("odds_ratio", "length")]
    assert length["ci_low"] < 1 < length["ci_high"]


def test_odds_ratio_ci_covers_the_true_value():
    # correct ~ logistic(beta * z(x)) with x a single Student share against Teacher: the truth is OR = e^beta
    rng = np.random.default_rng(3)
    n_q, k, beta = 150, 4, -0.8
    rows = []
    for q in range(n_q):
        for j in range(k):
            s = rng.uniform(0, 0.6)
            rows.append({"response_id": f"r{q}-{j}", "benchmark": "b", "question_id": f"q{q}", "n_tokens": 100,
                         "length": math.log(100), "Shared": 0.0, "Teacher": 1 - s, "Student": s, "Boosted": 0.0})
    units = pd.DataFrame(rows)
    z = (units["Student"] - units["Student"].mean()) / units["Student"].std()
    units["correct"] = rng.random(len(units)) < 1 / (1 + np.exp(-beta * z))
    table = correlation_table(units, n_bootstrap=400, seed=1).set_index(["statistic", "term"])
    student = table.loc[("odds_ratio", "Student")]
    assert student["ci_low"] < math.exp(beta) < student["ci_high"]
    assert student["ci_high"] < 1
    # constant shares and length are left out with a reason, not a crash
    assert table.loc[("odds_ratio", "Shared"), "reason"] == "constant predictor"
    assert table.loc[("odds_ratio", "length"), "reason"] == "constant predictor"
    assert table.loc[("point_biserial", "Boosted"), "reason"] == "constant predictor"


def test_question_bootstrap_is_wider_than_a_response_bootstrap_when_questions_cluster():
    # Question difficulty drives correctness and the question's shares alike: responses of a question are
    # near-copies, so resampling responses as if independent understates the uncertainty.
    rng = np.random.default_rng(5)
    rows = []
    for q in range(40):
        t = rng.uniform(0.3, 0.9)
        correct = rng.random() < t
        for j in range(8):
            tj = float(np.clip(t + rng.normal(0, 0.02), 0, 1))
            rows.append({"response_id": f"r{q}-{j}", "benchmark": "b", "question_id": f"q{q}", "n_tokens": 50 + j,
                         "length": math.log(50 + j), "Shared": 0.0, "Teacher": tj, "Student": 1 - tj,
                         "Boosted": 0.0, "correct": correct if rng.random() < 0.9 else not correct})
    units = pd.DataFrame(rows)
    clustered = correlation_table(units, 300, 0).set_index(["statistic", "term"]).loc[("point_biserial", "Teacher")]
    naive = correlation_table(units.assign(question_id=units["response_id"]), 300, 0)
    naive = naive.set_index(["statistic", "term"]).loc[("point_biserial", "Teacher")]
    assert clustered["estimate"] == pytest.approx(naive["estimate"])
    assert (clustered["ci_high"] - clustered["ci_low"]) > 1.8 * (naive["ci_high"] - naive["ci_low"])


def test_question_bootstrap_keeps_questions_whole():
    rng = np.random.default_rng(0)
    qids = np.array(["a", "a", "b", "c", "c", "c"])
    for idx in question_bootstrap(qids, 20, rng):
        drawn = pd.Series(qids[idx]).value_counts()
        sizes = {"a": 2, "b": 1, "c": 3}
        assert all(n % sizes[q] == 0 for q, n in drawn.items())  # whole questions only
        assert len(idx) == sum(drawn)
    a = question_bootstrap(qids, 5, np.random.default_rng(1))
    b = question_bootstrap(qids, 5, np.random.default_rng(1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_degenerate_benchmarks_give_nan_and_reasons(world):
    sentences, responses = world
    units = response_units(sentences, responses)
    table = correlation_table(units.assign(correct=True), 50, 0)
    assert table["estimate"].isna().all()
    assert set(table["reason"]) == {"all responses correct", "reference"}
    one_question = correlation_table(units.assign(question_id="q"), 50, 0).set_index(["statistic", "term"])
    row = one_question.loc[("point_biserial", "Teacher")]
    assert not math.isnan(row["estimate"]) and math.isnan(row["ci_low"])  # no CI from one question
    metrics = correlation_metrics(table, area_permutation_test(sentences, units.assign(correct=True), 1, 20, 0), 50)
    json.dumps(metrics, allow_nan=False)
    assert metrics["b"]["point_biserial"]["Teacher"] == {"r": None, "ci_low": None, "ci_high": None, "n_valid": 0,
                                                         "reason": "all responses correct"}
    assert metrics["b"]["area_permutation"]["reason"] == "all responses correct"


def test_collinear_shares_drop_a_predictor_when_the_reference_is_constant(world):
    units = response_units(*world)
    # Shared is 0 everywhere: with Shared as the reference, Teacher + Student + Boosted = 1 exactly
    moved = units.assign(Boosted=units["Boosted"] + units["Shared"], Shared=0.0)
    design = logistic_design(moved, "Shared")
    assert design.used == ("Teacher", "Student", "length")
    assert "collinear" in design.dropped["Boosted"]
    table = correlation_table(moved, 30, 0, reference="Shared").set_index(["statistic", "term"])
    assert table.loc[("odds_ratio", "Teacher"), "estimate"] > 1
    assert "collinear" in table.loc[("odds_ratio", "Boosted"), "reason"]
    with pytest.raises(RdptError, match="correlate.reference"):
        correlation_table(units, 10, 0, reference="Nope")


def test_separation_is_a_reason_not_a_crash():
    z = np.arange(10.0)[:, None]
    coef, reason = fit_logistic(z[:, 0] > 4.5, z)
    assert coef is None and "separation" in reason
    coef, reason = fit_logistic(np.array([0, 1, 0, 1, 1, 0, 1, 0, 0, 1], bool), z)
    assert reason is None and coef.shape == (1,)


# --------------------------------------------------------------------------------------- permutations
def test_observed_areas_match_area_between(world):
    sentences, responses = world
    units = response_units(sentences, responses)
    perm = area_permutation_test(sentences, units, 5, 0, 0).set_index("cls")
    expect = area_between(position_curves(sentences, responses, 5)).set_index("cls")
    for cls in CLASSES:
        assert perm.loc[cls, "signed"] == pytest.approx(expect.loc[cls, "signed"], abs=1e-12)
        assert perm.loc[cls, "abs"] == pytest.approx(expect.loc[cls, "abs"], abs=1e-12)
        assert perm.loc[cls, "n_indices"] == expect.loc[cls, "n_indices"]
    assert perm["p_signed"].isna().all()  # no permutation asked for


def test_permutation_p_small_for_a_real_effect(world):
    sentences, responses = world
    perm = area_permutation_test(sentences, response_units(sentences, responses), 5, 500, 0).set_index("cls")
    assert perm.loc["Teacher", "signed"] > 0
    assert perm.loc["Teacher", "p_signed"] <= 0.01 and perm.loc["Teacher", "p_abs"] <= 0.01
    assert perm.loc["Teacher", "scheme"] == "within_question"
    assert perm.loc["Teacher", "p_signed"] >= 1 / 501  # never 0


def test_permutation_p_uniform_under_the_null():
    pvalues = []
    for seed in range(60):
        sentences, responses = _world(n_questions=12, k=4, effect=0.0, n_sentences=5, seed=100 + seed)
        units = response_units(sentences, responses)
        perm = area_permutation_test(sentences, units, 2, 99, seed).set_index("cls")
        pvalues.append(perm.loc["Teacher", "p_signed"])
    pvalues = np.array(pvalues)
    assert kstest(pvalues, "uniform").pvalue > 0.01
    assert 0.0 <= np.mean(pvalues < 0.1) <= 0.25


def test_within_question_permutation_ignores_question_difficulty():
    # Easy questions: every response right and Teacher-heavy; hard ones: every response wrong and Student-heavy;
    # within the mixed questions provenance is unrelated to correctness. Permuting over all responses sees a
    # strong effect; permuting within question (the null we mean) sees none.
    rng = np.random.default_rng(9)
    sent_rows, resp_rows = [], []
    for q in range(60):
        kind = ("easy", "hard", "mixed")[q % 3]
        for j in range(4):
            rid = f"b/q{q}/{j}"
            p_teacher = {"easy": 0.9, "hard": 0.2, "mixed": 0.55}[kind]
            cls = rng.choice(["Teacher", "Student"], size=6, p=[p_teacher, 1 - p_teacher])
            correct = {"easy": True, "hard": False, "mixed": bool(rng.random() < 0.5)}[kind]
            sent_rows += [(rid, "b", i, c) for i, c in enumerate(cls)]
            resp_rows.append((rid, "b", f"q{q}", correct, 6, 60))
    sentences = pd.DataFrame(sent_rows, columns=["response_id", "benchmark", "sentence_idx", "cls"])
    responses = pd.DataFrame(resp_rows, columns=["response_id", "benchmark", "question_id", "correct", "n_sentences",
                                                 "n_tokens"])
    units = response_units(sentences, responses)
    within = area_permutation_test(sentences, units, 5, 400, 0).set_index("cls")
    over = area_permutation_test(sentences, units, 5, 400, 0, scheme="responses").set_index("cls")
    assert within.loc["Teacher", "signed"] == over.loc["Teacher", "signed"] > 1
    assert over.loc["Teacher", "p_signed"] < 0.01
    assert within.loc["Teacher", "p_signed"] > 0.05


def test_within_group_permutations_keep_each_group_total():
    groups = np.array(["a", "a", "a", "b", "b", "c"])
    labels = np.array([True, False, False, True, True, False])
    perms = within_group_permutations(groups, labels, 200, np.random.default_rng(0))
    for g in "abc":
        assert (perms[:, groups == g].sum(axis=1) == labels[groups == g].sum()).all()
    assert len({tuple(p) for p in perms}) == 3  # only group a can move: its 3 arrangements all appear


def test_single_response_questions_fall_back_to_permuting_responses(world):
    sentences, responses = world
    units = response_units(sentences, responses).assign(question_id=lambda d: d["response_id"])
    perm = area_permutation_test(sentences, units, 5, 50, 0)
    assert set(perm["scheme"]) == {"responses"}
    assert (perm["p_signed"] > 0).all()


def test_permutation_is_seeded(world):
    sentences, responses = world
    units = response_units(sentences, responses)
    a = area_permutation_test(sentences, units, 5, 100, 7)
    b = area_permutation_test(sentences, units, 5, 100, 7)
    pd.testing.assert_frame_equal(a, b)


# -------------------------------------------------------------------------------------------- outputs
def test_metrics_and_markdown_have_stable_keys(world):
    sentences, responses = world
    units = response_units(sentences, responses)
    table = correlation_table(units, 40, 0)
    perm = area_permutation_test(sentences, units, 5, 40, 0)
    metrics = correlation_metrics(table, perm, 40)
    json.dumps(metrics, allow_nan=False)
    entry = metrics["b"]
    assert set(entry) == {"n_responses", "n_questions", "n_bootstrap", "point_biserial", "logistic",
                          "area_permutation"}
    assert set(entry["point_biserial"]) == set(TERMS)
    assert set(entry["logistic"]["odds_ratio_per_sd"]) == set(TERMS)
    assert entry["logistic"]["reference"] == "Teacher"
    assert entry["logistic"]["odds_ratio_per_sd"]["Teacher"]["reason"] == "reference"
    assert set(entry["area_permutation"]) == {"scheme", "n_permutations", "reason", *CLASSES}
    md = correlation_markdown(table, perm, 40).splitlines()
    rows = [line for line in md if line.startswith("| b |")]
    assert len(rows) == len(TERMS)
    assert any("| Teacher |" in r and "reference" in r for r in rows)
