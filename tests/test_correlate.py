import json
import math

import numpy as np
import pandas as pd
import pytest

from rdpt import RdptError
from rdpt.analysis.shares import (
    area_between,
    class_shares,
    index_counts,
    metrics,
    position_curves,
    response_shares,
    share_tests,
    shares_table_markdown,
)
from rdpt.provenance.rules import CLASSES


def _responses():
    # two benchmarks; "b" has a response without sentences (blank output)
    return pd.DataFrame(
        {
            "response_id": ["a0", "a1", "a2", "a3", "b0", "b1", "b2"],
            "benchmark": ["aime"] * 4 + ["gpqa"] * 3,
            "correct": [True, True, False, False, True, False, False],
            "n_sentences": [3, 2, 2, 1, 1, 1, 0],
        }
    )


def _sentences():
    rows = [
        ("a0", 0, "Teacher"),
        ("a0", 1, "Shared"),
        ("a0", 2, "Boosted"),
        ("a1", 0, "Teacher"),
        ("a1", 1, "Unscored"),
        ("a2", 0, "Boosted"),
        ("a2", 1, "Teacher"),
        ("a3", 0, "Student"),
        ("b0", 0, "Teacher"),
        ("b1", 0, "Boosted"),
    ]
    df = pd.DataFrame(rows, columns=["response_id", "sentence_idx", "cls"])
    df["benchmark"] = df["response_id"].str[0].map({"a": "aime", "b": "gpqa"})
    return df


def test_class_shares_exact():
    shares = class_shares(_sentences(), _responses()).set_index(["benchmark", "subset"])
    aime_all = shares.loc[("aime", "all")]
    assert (aime_all["n_responses"], aime_all["n_sentences"], aime_all["n_unscored"]) == (4, 7, 1)
    assert [aime_all[c] for c in CLASSES] == pytest.approx([1 / 7, 3 / 7, 1 / 7, 2 / 7])
    assert aime_all["teacher_plus_boosted"] == pytest.approx(5 / 7)
    correct = shares.loc[("aime", "correct")]
    assert (correct["n_sentences"], correct["n_unscored"]) == (4, 1)
    assert [correct[c] for c in CLASSES] == pytest.approx([0.25, 0.5, 0.0, 0.25])
    incorrect = shares.loc[("aime", "incorrect")]
    assert [incorrect[c] for c in CLASSES] == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3])
    gpqa = shares.loc[("gpqa", "incorrect")]
    assert (gpqa["n_responses"], gpqa["n_sentences"], gpqa["Boosted"]) == (2, 1, 1.0)
    assert list(shares.index.get_level_values("subset")[:3]) == ["all", "correct", "incorrect"]


def test_class_shares_empty_subset_is_nan():
    responses = _responses()
    responses["correct"] = True
    shares = class_shares(_sentences(), responses).set_index(["benchmark", "subset"])
    row = shares.loc[("aime", "incorrect")]
    assert row["n_responses"] == 0 and row["n_sentences"] == 0
    assert math.isnan(row["Teacher"]) and math.isnan(row["teacher_plus_boosted"])


def test_position_curves_exact():
    curves = position_curves(_sentences(), _responses(), min_responses=1)
    aime = curves[curves["benchmark"] == "aime"].set_index(["correct", "sentence_idx", "cls"])
    # k=0: correct a0 Teacher, a1 Teacher; incorrect a2 Boosted, a3 Student
    assert aime.loc[(True, 0, "Teacher"), "frequency"] == 1.0
    assert aime.loc[(False, 0, "Student"), "frequency"] == 0.5
    assert aime.loc[(False, 0, "Boosted"), "frequency"] == 0.5
    assert aime.loc[(False, 0, "Teacher"), "frequency"] == 0.0
    # k=1: a1's sentence is Unscored, so only a0 counts among correct responses
    assert aime.loc[(True, 1, "Shared"), ["frequency", "n_responses"]].tolist() == [1.0, 1]
    assert aime.loc[(False, 1, "Teacher"), ["frequency", "n_responses"]].tolist() == [1.0, 1]
    # k=2 exists only in a correct response: dropped
    assert set(aime.index.get_level_values("sentence_idx")) == {0, 1}
    # frequencies at a (group, k) sum to one
    assert aime.groupby(level=["correct", "sentence_idx"])["frequency"].sum().tolist() == [1.0] * 4
    assert len(curves) == 2 * 4 * 2 + 1 * 4 * 2  # aime: 2 indices; gpqa: 1 index; 4 classes, 2 groups
    assert list(curves.columns) == ["benchmark", "correct", "sentence_idx", "cls", "frequency", "n_responses"]


def test_position_curves_min_responses():
    curves = position_curves(_sentences(), _responses(), min_responses=2)
    assert set(zip(curves["benchmark"], curves["sentence_idx"])) == {("aime", 0)}
    assert position_curves(_sentences(), _responses(), min_responses=3).empty


def test_area_between_exact():
    area = area_between(position_curves(_sentences(), _responses(), 1))
    aime = area[area["benchmark"] == "aime"].set_index("cls")
    assert list(aime.index) == list(CLASSES)
    # Shared: k0 0-0, k1 1-0; Teacher: k0 1-0, k1 0-1; Student: k0 0-0.5; Boosted: k0 0-0.5
    assert aime["signed"].tolist() == [1.0, 0.0, -0.5, -0.5]
    assert aime["abs"].tolist() == [1.0, 2.0, 0.5, 0.5]
    assert aime["n_indices"].tolist() == [2, 2, 2, 2]
    gpqa = area[area["benchmark"] == "gpqa"].set_index("cls")
    assert gpqa.loc["Teacher", "signed"] == 1.0 and gpqa.loc["Boosted", "signed"] == -1.0


def test_area_between_without_usable_index():
    assert area_between(position_curves(_sentences(), _responses(), 10)).empty


def test_index_counts_exact():
    counts = index_counts(_sentences(), _responses(), min_responses=1)
    assert list(counts.columns) == ["benchmark", "correct", "sentence_idx", "n_responses", "usable"]
    aime = counts[counts["benchmark"] == "aime"].set_index(["correct", "sentence_idx"])
    # k=0: a0, a1 | a2, a3; k=1: a0 (a1's sentence is Unscored) | a2; k=2: a0 | none (0, not missing)
    assert aime.loc[True, "n_responses"].tolist() == [2, 1, 1]
    assert aime.loc[False, "n_responses"].tolist() == [2, 1, 0]
    assert aime.loc[True, "usable"].tolist() == [True, True, False]
    gpqa = counts[counts["benchmark"] == "gpqa"]
    assert gpqa[["correct", "sentence_idx", "n_responses"]].values.tolist() == [[True, 0, 1], [False, 0, 1]]
    assert index_counts(_sentences(), _responses(), 2)["usable"].tolist() == [True, False, False] * 2 + [False] * 2


def test_index_counts_match_hand_count_and_curves():
    # 40 responses of random length with random Unscored holes, two benchmarks
    rng = np.random.default_rng(3)
    responses, rows = [], []
    for i in range(40):
        bench, correct, n = ("x", "y")[i % 2], bool(rng.random() < 0.5), int(rng.integers(0, 12))
        responses.append((i, bench, correct, n))
        rows += [(i, bench, k, "Unscored" if rng.random() < 0.15 else str(rng.choice(CLASSES))) for k in range(n)]
    responses = pd.DataFrame(responses, columns=["response_id", "benchmark", "correct", "n_sentences"])
    sentences = pd.DataFrame(rows, columns=["response_id", "benchmark", "sentence_idx", "cls"])
    counts = index_counts(sentences, responses, min_responses=4)
    scored = {(r, k) for r, _, k, c in rows if c != "Unscored"}
    for row in counts.itertuples():
        group = responses[(responses["benchmark"] == row.benchmark) & (responses["correct"] == row.correct)]
        assert row.n_responses == sum((r, row.sentence_idx) in scored for r in group["response_id"])
    for bench in ("x", "y"):  # every k up to the last scored one, for both groups
        last = max(k for r, b, k, c in rows if b == bench and c != "Unscored")
        assert counts[counts["benchmark"] == bench]["sentence_idx"].tolist() == [*range(last + 1)] * 2
    # usable indices are exactly the ones the position curves keep, with the same denominators
    curves = position_curves(sentences, responses, 4)
    used = counts[counts["usable"]]
    assert set(zip(used["benchmark"], used["sentence_idx"])) == set(zip(curves["benchmark"], curves["sentence_idx"]))
    merged = curves.merge(used, on=["benchmark", "correct", "sentence_idx"], suffixes=("", "_counts"))
    assert len(merged) == len(curves) and (merged["n_responses"] == merged["n_responses_counts"]).all()


def test_index_counts_without_scored_sentence():
    counts = index_counts(_sentences().assign(cls="Unscored"), _responses(), 1)
    assert counts.empty and list(counts.columns) == ["benchmark", "correct", "sentence_idx", "n_responses", "usable"]


def test_response_shares():
    shares = response_shares(_sentences(), _responses()).set_index("response_id")
    assert shares.loc["a0", list(CLASSES)].tolist() == pytest.approx([1 / 3, 1 / 3, 0, 1 / 3])
    assert shares.loc["a1", "Teacher"] == 1.0  # its Unscored sentence is not in the denominator
    assert "b2" not in shares.index  # no sentence, no share


def test_share_tests_mann_whitney():
    responses = pd.DataFrame(
        {"response_id": range(6), "benchmark": "x", "correct": [True] * 3 + [False] * 3, "n_sentences": 10}
    )
    # Teacher sentences: 5, 6, 7 of 10 in correct responses, 1, 2, 3 in incorrect ones; the rest Shared
    rows = [(r, k, "Teacher" if k < n else "Shared") for r, n in enumerate([5, 6, 7, 1, 2, 3]) for k in range(10)]
    sentences = pd.DataFrame(rows, columns=["response_id", "sentence_idx", "cls"]).assign(benchmark="x")
    tests = share_tests(sentences, responses).set_index("cls")
    teacher = tests.loc["Teacher"]
    assert (teacher["n_correct"], teacher["n_incorrect"]) == (3, 3)
    assert teacher["mean_share_correct"] == pytest.approx(0.6)
    assert teacher["diff"] == pytest.approx(0.4)
    assert teacher["u_statistic"] == 9.0
    assert teacher["p_value"] == pytest.approx(0.1)  # exact: 2 of the 20 splits are this extreme
    assert tests.loc["Student", "p_value"] == 1.0  # all zero: nothing to detect


def test_metrics_keys_and_rounding():
    sentences, responses = _sentences(), _responses()
    out = metrics(
        sentences,
        responses,
        class_shares(sentences, responses),
        area_between(position_curves(sentences, responses, 2)),
    )
    json.dumps(out, allow_nan=False)  # JSON-ready: no NaN
    assert list(out) == ["aime", "gpqa"]
    aime = out["aime"]
    assert set(aime) == {
        "n_responses",
        "n_correct",
        "n_incorrect",
        "accuracy",
        "n_sentences",
        "n_unscored",
        "share",
        "teacher_plus_boosted",
        "area",
        "share_test",
    }
    assert (aime["n_responses"], aime["n_sentences"], aime["accuracy"]) == (4, 7, 0.5)
    assert aime["share"]["all"] == {"Shared": 0.1429, "Teacher": 0.4286, "Student": 0.1429, "Boosted": 0.2857}
    assert aime["teacher_plus_boosted"] == 0.7143
    assert aime["area"]["Teacher"] == {"signed": 1.0, "abs": 1.0, "n_indices": 1}
    # gpqa has no index with 2 responses per group: same keys, null values
    assert out["gpqa"]["area"]["Teacher"] == {"signed": None, "abs": None, "n_indices": 0}
    assert out["gpqa"]["share"]["correct"]["Teacher"] == 1.0
    # share tests: aime Student shares are 0, 0 (correct) vs 0, 1 (incorrect)
    assert aime["share_test"]["Student"]["mean_incorrect"] == 0.5
    assert aime["share_test"]["Student"]["mean_correct"] == 0.0
    assert set(aime["share_test"]["Teacher"]) == {"mean_correct", "mean_incorrect", "p_value"}


def test_shares_table_markdown():
    table = shares_table_markdown(class_shares(_sentences(), _responses()))
    lines = table.splitlines()
    assert (
        lines[0]
        == "| benchmark | subset | responses | sentences | Shared | Teacher | Student | Boosted | Teacher+Boosted |"
    )
    assert lines[2] == "| aime | all | 4 | 7 | 0.143 | 0.429 | 0.143 | 0.286 | 0.714 |"
    assert len(lines) == 2 + 6


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda s, r: (s.assign(response_id=s["response_id"].replace("a3", "zz")), r),
            "response_id 'zz' is not in responses",
        ),
        (lambda s, r: (s.assign(cls="Other"), r), r"unknown class\(es\) \['Other'\]"),
        (lambda s, r: (s.drop(columns="cls"), r), "sentences table lacks column"),
        (lambda s, r: (s, r.assign(correct=1.5)), "only True/False"),
        (lambda s, r: (s.assign(benchmark="gpqa"), r), "disagree on the benchmark"),
        (lambda s, r: (pd.concat([s, s.iloc[:1]]), r), "appears more than once"),
    ],
)
def test_bad_inputs_are_user_errors(mutate, message):
    sentences, responses = mutate(_sentences(), _responses())
    with pytest.raises(RdptError, match=message):
        class_shares(sentences, responses)


# Figures of rdpt.analysis.figures (they draw what this module computes).
def _png_bytes(draw, path):
    draw(path)
    first = path.read_bytes()
    path.unlink()
    draw(path)
    return first, path.read_bytes()


def test_action_split_figure_is_reproducible(tmp_path):
    from rdpt.analysis.figures import plot_action_split

    one = pd.DataFrame(
        {
            "sentence_idx": [0, 1, 2, 3],
            "cls": ["Teacher", "Shared", "Unscored", "Boosted"],
            "p_teacher": [0.9, 0.5, float("nan"), 0.3],
            "p_student": [0.2, 0.5, float("nan"), 0.3],
            "p_distilled": [0.8, 0.5, float("nan"), 0.7],
        }
    )
    first, second = _png_bytes(lambda p: plot_action_split(one, p, "example"), tmp_path / "sub" / "split.png")
    assert first.startswith(b"\x89PNG") and len(first) > 5000
    assert first == second
    assert b"matplotlib" not in first  # no Software tag naming the version


def test_position_curves_figure_is_reproducible(tmp_path):
    from rdpt.analysis.figures import plot_position_curves

    curves = position_curves(_sentences(), _responses(), 1)
    area = area_between(curves)
    first, second = _png_bytes(lambda p: plot_position_curves(curves, area, p, "aime"), tmp_path / "curves.png")
    assert first.startswith(b"\x89PNG") and len(first) > 5000
    assert first == second


def test_index_counts_figure_draws_the_counts(tmp_path, monkeypatch):
    from rdpt.analysis import figures as report

    counts = index_counts(_sentences(), _responses(), 1)
    first, second = _png_bytes(lambda p: report.plot_index_counts(counts, 1, p), tmp_path / "counts.png")
    assert first.startswith(b"\x89PNG") and len(first) > 5000
    assert first == second and b"matplotlib" not in first

    drawn = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path: drawn.append(fig))
    report.plot_index_counts(counts, 1, tmp_path / "unused.png", ["aime", "gpqa", "empty"])
    aime, gpqa, empty = drawn[0].axes[:3]
    correct, incorrect, threshold = aime.get_lines()
    assert correct.get_xdata().tolist() == [0, 1, 2] and correct.get_ydata().tolist() == [2, 1, 1]
    assert incorrect.get_ydata().tolist() == [2, 1, 0]
    assert list(threshold.get_ydata()) == [1, 1]  # the min_responses line
    # k=2 (no incorrect response) is shaded: one span from 1.5 to 2.5
    (span,) = aime.patches
    assert span.get_x() == pytest.approx(1.5) and span.get_width() == pytest.approx(1.0)
    assert aime.get_title().endswith("curves use k = 0–1 (2 indices)")
    assert gpqa.get_lines()[0].get_ydata().tolist() == [1] and not gpqa.patches
    assert empty.get_title() == "empty\nno scored sentence"
    with pytest.raises(RdptError, match="no benchmark"):
        report.plot_index_counts(counts.iloc[:0], 1, tmp_path / "none.png")


def test_pick_example():
    from rdpt.analysis.figures import pick_example

    # a0 (3 classes) beats a1 (1 class); a2 has more classes but is incorrect
    assert pick_example(_sentences(), _responses()) == "a0"
    responses = _responses()
    responses["correct"] = False
    assert pick_example(_sentences(), responses) == "a0"  # no correct response: incorrect ones are used
    # ties on classes: length closest to the median, then smallest id
    sentences = pd.DataFrame(
        {
            "response_id": ["x", "y", "y", "z", "z", "z"],
            "benchmark": "aime",
            "sentence_idx": [0, 0, 1, 0, 1, 2],
            "cls": ["Teacher"] * 6,
        }
    )
    responses = pd.DataFrame({"response_id": ["x", "y", "z"], "correct": True})
    assert pick_example(sentences, responses) == "y"
    with pytest.raises(RdptError, match="no response has a scored sentence"):
        pick_example(sentences.assign(cls="Unscored"), responses)
