import numpy as np
import pandas as pd
import pytest

from rdpt import RdptError
from rdpt.provenance.rules import CLASSES, UNSCORED, classify_frame, label, label_teacher_student

# Dyadic values (exact in float64) so "exactly alpha" really is exact.
ALPHA, BETA = 0.125, 0.25
TINY = 2.0**-40


def one(p_t, p_s, p_d, alpha=ALPHA, beta=BETA):
    return label([p_t], [p_s], [p_d], alpha, beta)[0]


def test_canonical_order():
    assert CLASSES == ("Shared", "Teacher", "Student", "Boosted")


def test_each_class():
    labels = label([0.5, 0.9, 0.2, 0.5], [0.5, 0.2, 0.9, 0.5], [0.5, 0.8, 0.8, 0.95], ALPHA, BETA)
    assert list(labels) == ["Shared", "Teacher", "Student", "Boosted"]


def test_shared_at_exactly_alpha_and_not_just_above():
    assert one(0.625, 0.5, 0.5) == "Shared"  # |pT-pS| = |pT-pD| = alpha exactly
    assert one(0.625 + TINY, 0.5, 0.5) == "Boosted"  # not Teacher either: pT-pS < beta
    assert one(0.5, 0.5, 0.625) == "Shared"
    assert one(0.5, 0.5, 0.625 + TINY) == "Boosted"
    assert one(0.5, 0.625 + TINY, 0.5625) == "Boosted"  # the pT-pS condition alone breaks Shared


def test_teacher_student_need_strictly_more_than_beta():
    assert one(0.75, 0.5, 0.75) == "Boosted"  # pT-pS = beta exactly
    assert one(0.75 + TINY, 0.5, 0.75) == "Teacher"
    assert one(0.5, 0.75, 0.75) == "Boosted"
    assert one(0.5, 0.75 + TINY, 0.75) == "Student"


def test_shared_wins_over_teacher_when_checked_first():
    # alpha > beta: pT-pS > beta but everything within alpha -> Shared, since Shared is checked first
    assert one(0.75, 0.5, 0.625, alpha=0.25, beta=0.125) == "Shared"


def test_float_differences_are_taken_as_given():
    # 0.5 - 0.4 == 0.09999999999999998 in float64, so this is Shared under alpha = 0.1
    assert one(0.5, 0.4, 0.45, alpha=0.1, beta=0.1) == "Shared"
    # 0.7 - 0.6 == 0.09999999999999998 too, and 0.8 - 0.7 == 0.10000000000000009 is over beta
    assert one(0.8, 0.7, 0.1, alpha=0.1, beta=0.1) == "Teacher"


def test_vectorised_over_series():
    s = pd.Series([0.9, 0.1])
    assert list(label(s, 1 - s, s, 0.1, 0.1)) == ["Teacher", "Student"]


def test_non_finite_probability_is_an_error():
    with pytest.raises(RdptError, match="p_student"):
        label([0.5], [np.nan], [0.5], 0.1, 0.1)


def test_label_teacher_student():
    labels = label_teacher_student([0.75 + TINY, 0.75, 0.5, 0.5], [0.5, 0.5, 0.75 + TINY, 0.5], BETA)
    assert list(labels) == ["Teacher", "Common", "Student", "Common"]


def _scores(**overrides):
    base = {
        "mean_logprob_teacher": np.log([0.9, 0.5, 0.5]),
        "mean_logprob_student": np.log([0.2, 0.5, 0.5]),
        "mean_logprob_distilled": np.log([0.8, 0.5, 0.5]),
        "n_tokens_teacher": [3, 4, 0],
        "n_tokens_student": [2, 5, 1],
        "n_tokens_distilled": [3, 4, 1],
    }
    base.update(overrides)
    return pd.DataFrame(base, index=[10, 11, 12])


def test_classify_frame_adds_probabilities_and_classes():
    out = classify_frame(_scores(), 0.1, 0.1)
    assert list(out["cls"]) == ["Teacher", "Shared", UNSCORED]
    np.testing.assert_allclose(out["p_teacher"].iloc[:2], [0.9, 0.5])
    np.testing.assert_allclose(out["p_student"].iloc[:2], [0.2, 0.5])
    assert out[["p_teacher", "p_student", "p_distilled"]].iloc[2].isna().all()
    assert list(out.index) == [10, 11, 12]
    assert "cls" not in _scores().columns  # input left alone


def test_classify_frame_unscored_row_may_hold_nan():
    out = classify_frame(_scores(mean_logprob_teacher=[np.log(0.9), np.log(0.5), np.nan]), 0.1, 0.1)
    assert list(out["cls"]) == ["Teacher", "Shared", UNSCORED]


def test_classify_frame_rejects_nan_for_scored_sentence():
    with pytest.raises(RdptError, match=r"mean_logprob_student .*row 11"):
        classify_frame(_scores(mean_logprob_student=[np.log(0.2), np.nan, 0.0]), 0.1, 0.1)


def test_classify_frame_names_missing_columns():
    with pytest.raises(RdptError, match="n_tokens_distilled"):
        classify_frame(_scores().drop(columns="n_tokens_distilled"), 0.1, 0.1)
