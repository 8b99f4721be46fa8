"""The selection experiment's design knobs (issue 15): a mixed-temperature candidate pool, the runs' own training
budget, the within-question spread of Teacher content, and the paired Δ's bootstrap interval and power estimate."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rdpt import RdptError
from rdpt.generation.responses import _one_pool
from rdpt.params import parse_params
from rdpt.selection.report import accuracy_table, add_pooled, load_runs, pooled_delta, power, table1_markdown
from rdpt.selection.select_data import pool_stats
from rdpt.training.launch import train_section


def _params(select: dict):
    return parse_params({"models": {"teacher": {"path": "t"}, "student": {"path": "s"}},
                         "data": {"train": {"path": "x"}, "benchmarks": {"b": {"path": "y"}}},
                         "select": select}, "params.yaml")


def test_mixed_temperature_pool_splits_the_samples():
    p = _params({"candidates": {"num_samples": 4, "temperatures": [0.7, 1.3]}})
    pools = p.select.candidates.at_temperatures()
    assert [(t, s.temperature, s.num_samples, s.temperatures) for t, s in pools] == [(0.7, 0.7, 2, None),
                                                                                    (1.3, 1.3, 2, None)]
    single = _params({}).select.candidates.at_temperatures()
    assert len(single) == 1 and single[0][1].num_samples == 4


@pytest.mark.parametrize("temps, message", [
    ([0.7, 1.0, 1.3], "multiple of the number of temperatures"),
    ([0.7, 0.7], "distinct and > 0"),
    ([0.0, 1.0], "distinct and > 0"),
])
def test_bad_temperatures_name_the_key(temps, message):
    with pytest.raises(RdptError, match="select.candidates.*" + message):
        _params({"candidates": {"num_samples": 4, "temperatures": temps}})


def test_pools_are_renumbered_as_candidates_of_one_question():
    rows = [{"benchmark": f"candidates@T{t:g}", "question_id": q, "sample_idx": k,
             "response_id": f"candidates@T{t:g}/{q}/{k}"} for t in (0.7, 1.3) for q in ("a", "b") for k in (0, 1)]
    out = _one_pool(rows, "candidates", {"candidates@T0.7": 0.7, "candidates@T1.3": 1.3}, 2)
    assert [r["response_id"] for r in out] == [f"candidates/{q}/{k}" for q in ("a", "b") for k in range(4)]
    assert [r["temperature"] for r in out[:4]] == [0.7, 0.7, 1.3, 1.3]
    assert {r["benchmark"] for r in out} == {"candidates"}


def test_selection_runs_train_on_their_own_budget():
    p = _params({"train": {"epochs": 6, "learning_rate": 0.005}})
    assert train_section(p, "select.train").epochs == 6 and train_section(p, "distill").epochs == 1
    with pytest.raises(RdptError, match="select.train.epochs"):
        _params({"train": {"epochs": 0}})


def test_pool_stats_by_hand():
    feats = pd.DataFrame({"question_id": ["a", "a", "a", "b", "b", "c"], "response_id": list("123456"),
                          "n_teacher": [2, 5, 3, 4, 4, 9], "teacher_ratio": [0.5, 1.0, 0.6, 0.8, 0.8, 1.0]})
    cands = pd.DataFrame({"response_id": list("123456"), "temperature": [0.7, 1.3, 0.7, 0.7, 1.3, 0.7]})
    s = pool_stats(feats, cands)
    assert s["n_questions_multi"] == 2  # c has one candidate
    assert s["teacher_count_range"] == pytest.approx((3 + 0) / 2)
    assert s["share_questions_differ"] == pytest.approx(0.5)
    assert s["teacher_count_sd"] == pytest.approx(np.std([2, 5, 3], ddof=1) / 2)
    assert s["by_temperature"]["1.3"] == {"n": 2, "teacher_count": 4.5, "teacher_ratio": 0.9}


def _write_runs(root, shift: dict, n_q=60, seeds=(0, 1, 2, 3), seed=0):
    """Runs whose per-question correctness is random but shared across arms, plus an arm shift in probability."""
    rng = np.random.default_rng(seed)
    for s in seeds:
        base = rng.random((2, n_q))  # the question's difficulty under this seed's evaluation sampling
        for arm, d in shift.items():
            path = root / arm / f"seed{s}"
            path.mkdir(parents=True)
            rows = [{"benchmark": b, "question_id": f"q{i}", "correct": bool(base[j, i] < 0.4 + d),
                     "finish_reason": "stop"} for j, b in enumerate(("x", "y")) for i in range(n_q)]
            (path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_pooled_bootstrap_interval_covers_the_true_shift_and_power_follows(tmp_path):
    _write_runs(tmp_path, {"random": 0.0, "teacher_count": 0.1, "grape": 0.0})
    frames = []
    runs = load_runs(tmp_path, ["teacher_count", "random", "grape"], [0, 1, 2, 3], ["x", "y"], per_question=frames)
    q = pd.concat(frames)
    table = accuracy_table(runs)
    pooled = {a: pooled_delta(q, a, n_boot=500) for a in ("teacher_count", "grape")}
    tc, gr = pooled["teacher_count"]["avg"], pooled["grape"]["avg"]
    # common random numbers: each Δ is exactly the share of questions the shift flips
    assert tc["lo"] <= 0.1 <= tc["hi"] and tc["lo"] > 0
    assert gr["delta"] == 0 and gr["lo"] == gr["hi"] == 0
    table = add_pooled(table, pooled)
    assert table.attrs["paired_avg"]["teacher_count"]  # the per-seed Δ survive the copy
    info = power(table, pooled)
    assert info["n_seeds"] == 4 and info["sd_seed"] > 0 and info["mde_80"] > info["t_half_width"]
    # enough seeds for the target: a t-interval at that many seeds is within it, one fewer is not
    from scipy import stats
    k = info["seeds_for_target"]
    assert stats.t.ppf(0.975, k - 1) * info["sd_seed"] / np.sqrt(k) <= 0.02
    assert stats.t.ppf(0.975, k - 2) * info["sd_seed"] / np.sqrt(k - 1) > 0.02
    md = table1_markdown(table, ["teacher_count", "random", "grape"], ["x", "y"],
                         untrained={"x": 0.1, "y": 0.2, "avg": 0.15}, power_info=info)
    assert "| untrained student | 10.0 | 20.0 | 15.0 |" in md
    assert "`random` beats the untrained student by" in md and "80% power" in md
    assert f"[{tc['lo'] * 100:+.1f}, {tc['hi'] * 100:+.1f}]" in md


def test_power_pools_the_spread_by_degrees_of_freedom():
    table = pd.DataFrame({"arm": ["teacher_count"], "benchmark": ["avg"]})
    tc, gr = [0.05, 0.07, 0.09, 0.11, 0.13, 0.15], [0.0, 0.04]  # contrast arm at 6 seeds, a baseline at 2
    table.attrs["paired_avg"] = {"teacher_count": tc, "grape": gr}
    info = power(table, {})
    pooled = (np.var(tc, ddof=1) * 5 + np.var(gr, ddof=1) * 1) / 6
    assert info["sd_seed"] == pytest.approx(np.sqrt(pooled)) and info["n_seeds"] == 6


def test_untrained_row_reads_the_untrained_run(tmp_path):
    from rdpt import RdptError
    from rdpt.selection.report import untrained_accuracy

    rows = [{"benchmark": b, "question_id": f"q{i}", "sample_idx": k, "correct": (i + k) % 4 == 0,
             "finish_reason": "stop"} for b in ("x", "y") for i in range(8) for k in range(2)]
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = untrained_accuracy(path, ["x", "y"])
    assert got == {"x": 0.25, "y": 0.25, "avg": 0.25}
    with pytest.raises(RdptError, match="no response for benchmark 'z'.*select_untrained"):
        untrained_accuracy(path, ["x", "z"])


def test_sampling_sd_matches_the_analytic_sampling_noise_of_coupled_runs():
    """Two fixed 'models' (per-question success probabilities), sampled with shared uniforms per (seed, question,
    sample) as a run seed couples them: the estimate matches the exact sampling sd of the paired Δ avg."""
    from rdpt.selection.report import sampling_sd

    rng = np.random.default_rng(3)
    n_q, k, seeds = 100, 8, range(12)
    p = {"random": rng.uniform(0.1, 0.9, (2, n_q))}
    p["teacher_count"] = np.clip(p["random"] + rng.normal(0.1, 0.2, (2, n_q)), 0.02, 0.98)
    rows = []
    for s in seeds:
        u = rng.random((2, n_q, k))
        for arm, pa in p.items():
            for j, b in enumerate(("x", "y")):
                for i in range(n_q):
                    rows += [{"arm": arm, "seed": s, "benchmark": b, "question_id": f"q{i}", "sample_idx": m,
                              "correct": float(u[j, i, m] < pa[j, i])} for m in range(k)]
    pa, pr = p["teacher_count"], p["random"]
    var_q = (pa * (1 - pa) + pr * (1 - pr) - 2 * (np.minimum(pa, pr) - pa * pr)) / k
    exact = np.sqrt(var_q.sum(axis=1).sum() / n_q**2 / 4)  # each benchmark /Q^2, the avg of 2 /4
    got = sampling_sd(pd.DataFrame(rows), "teacher_count")
    assert got == pytest.approx(exact, rel=0.08)
    # the coupling matters: independent sampling would be noisier than the estimate says
    independent = np.sqrt(((pa * (1 - pa) + pr * (1 - pr)) / k).sum() / n_q**2 / 4)
    assert got < 0.9 * independent
    one = pd.DataFrame(rows).query("sample_idx == 0")
    assert np.isnan(sampling_sd(one, "teacher_count"))  # k = 1: no within-question variance to read
