"""Relate sentence provenance to correctness: class shares, position-wise curves, areas and tests.

Inputs are two tables (one row per sentence, one per response)::

    sentences: response_id, benchmark, sentence_idx (0-based), cls (a class or "Unscored")
    responses: response_id, benchmark, correct (bool), n_sentences

Unscored sentences are counted (``n_unscored``) but enter no share, frequency or test. Example::

    python -c "import pandas as pd; from rdpt.analysis.shares import class_shares; \\
      r = pd.DataFrame({'response_id': [0, 1], 'benchmark': 'b', 'correct': [True, False], 'n_sentences': 2}); \\
      s = pd.DataFrame({'response_id': [0, 0, 1, 1], 'benchmark': 'b', 'sentence_idx': [0, 1, 0, 1], \\
                        'cls': ['Teacher', 'Shared', 'Boosted', 'Teacher']}); print(class_shares(s, r))"
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from rdpt import RdptError
from rdpt.provenance.rules import CLASSES, UNSCORED

SUBSETS = ("all", "correct", "incorrect")
SENTENCE_COLUMNS = ("response_id", "benchmark", "sentence_idx", "cls")
RESPONSE_COLUMNS = ("response_id", "benchmark", "correct", "n_sentences")


def _require(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RdptError(f"{what} table lacks column(s): {', '.join(missing)}")


def _checked_responses(responses: pd.DataFrame) -> pd.DataFrame:
    _require(responses, RESPONSE_COLUMNS, "responses")
    if responses["response_id"].duplicated().any():
        dup = responses.loc[responses["response_id"].duplicated(), "response_id"].iloc[0]
        raise RdptError(f"responses: response_id {dup!r} appears more than once")
    if not responses["correct"].isin([True, False]).all():
        raise RdptError("responses: column 'correct' must hold only True/False")
    out = responses.copy()
    out["correct"] = out["correct"].astype(bool)
    return out


def join_responses(sentences: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """Sentences with their response's ``correct`` flag; every sentence must belong to a known response."""
    _require(sentences, SENTENCE_COLUMNS, "sentences")
    responses = _checked_responses(responses)
    unknown = set(sentences["cls"]) - set(CLASSES) - {UNSCORED}
    if unknown:
        raise RdptError(f"sentences: unknown class(es) {sorted(unknown)}")
    if sentences.duplicated(["response_id", "sentence_idx"]).any():
        raise RdptError("sentences: a (response_id, sentence_idx) pair appears more than once")
    joined = sentences[list(SENTENCE_COLUMNS)].merge(
        responses[["response_id", "benchmark", "correct"]],
        on="response_id",
        how="left",
        suffixes=("", "_response"),
        indicator=True,
    )
    orphans = joined["_merge"] != "both"
    if orphans.any():
        raise RdptError(f"sentences: response_id {joined.loc[orphans, 'response_id'].iloc[0]!r} is not in responses")
    if (joined["benchmark"] != joined["benchmark_response"]).any():
        raise RdptError("sentences and responses disagree on the benchmark of a response")
    return joined.drop(columns=["_merge", "benchmark_response"])


def _subset(df: pd.DataFrame, subset: str) -> pd.DataFrame:
    return df if subset == "all" else df[df["correct"] == (subset == "correct")]


def class_shares(sentences: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """Share of each class among the scored sentences of each benchmark x subset (all/correct/incorrect).

    Shares are pooled over sentences (a long response weighs more), as in "Teacher + Boosted exceed 0.7 of
    sentences". Columns: benchmark, subset, n_responses, n_sentences (scored), n_unscored, one column per
    class, teacher_plus_boosted. A subset without scored sentences has NaN shares.
    """
    joined, responses = join_responses(sentences, responses), _checked_responses(responses)
    rows = []
    for bench in sorted(responses["benchmark"].unique()):
        for subset in SUBSETS:
            resp = _subset(responses[responses["benchmark"] == bench], subset)
            sent = _subset(joined[joined["benchmark"] == bench], subset)
            scored = sent[sent["cls"] != UNSCORED]
            counts = scored["cls"].value_counts()
            n = len(scored)
            share = {c: counts.get(c, 0) / n if n else math.nan for c in CLASSES}
            rows.append(
                {
                    "benchmark": bench,
                    "subset": subset,
                    "n_responses": len(resp),
                    "n_sentences": n,
                    "n_unscored": len(sent) - n,
                    **share,
                    "teacher_plus_boosted": share["Teacher"] + share["Boosted"],
                }
            )
    return pd.DataFrame(rows)


def position_curves(sentences: pd.DataFrame, responses: pd.DataFrame, min_responses: int) -> pd.DataFrame:
    """How often the k-th sentence is of class c, in correct vs incorrect responses.

    frequency(benchmark, correct, k, c) = #responses whose k-th sentence is c / n_responses, where
    n_responses counts the responses of that group whose k-th sentence exists and is scored (so the four
    frequencies at a k sum to 1). Only indices k where both groups reach ``min_responses`` are kept: late
    indices rest on few long responses. Columns: benchmark, correct, sentence_idx, cls, frequency,
    n_responses; sorted by benchmark, class (canonical order), correct (True first), sentence_idx.
    """
    joined = join_responses(sentences, responses)
    scored = joined[joined["cls"] != UNSCORED]
    keys = ["benchmark", "correct", "sentence_idx"]
    columns = ["benchmark", "correct", "sentence_idx", "cls", "frequency", "n_responses"]
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(columns, [str, bool, int, str, float, int])})
    if scored.empty:
        return empty
    counts = scored.groupby(keys + ["cls"]).size().unstack("cls").reindex(columns=list(CLASSES)).fillna(0)
    n = counts.sum(axis=1)  # one scored sentence per (response, k): the row sum is the response count
    freq = counts.div(n, axis=0)
    by_group = n.unstack("correct").reindex(columns=[True, False]).fillna(0)
    usable = by_group[(by_group[True] >= min_responses) & (by_group[False] >= min_responses)].index
    if len(usable) == 0:
        return empty
    long = freq.stack().rename("frequency").reset_index()
    long = long.merge(n.rename("n_responses").astype(int).reset_index(), on=keys)
    long = long[long.set_index(["benchmark", "sentence_idx"]).index.isin(usable)]
    order = pd.Categorical(long["cls"], categories=list(CLASSES), ordered=True)
    long = long.assign(_cls=order, _wrong=~long["correct"]).sort_values(["benchmark", "_cls", "_wrong", "sentence_idx"])
    return long[columns].reset_index(drop=True)


def early_minus_late(curves: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Per benchmark and class: frequency at the first sentence minus at the last usable index, all responses.

    The paper reads its position curves as "Teacher sentences come early"; this is that claim as one number
    (positive: early). The two groups' frequencies at an index are pooled by their response counts; the last
    usable index is the last one :func:`position_curves` kept (both groups reach ``min_responses``).
    """
    out: dict[str, dict[str, float | None]] = {}
    for bench, c in curves.groupby("benchmark", sort=True):
        pooled = (c.assign(w=c["frequency"] * c["n_responses"]).groupby(["cls", "sentence_idx"])[["w", "n_responses"]]
                  .sum())
        freq = (pooled["w"] / pooled["n_responses"]).unstack("sentence_idx")
        first, last = freq.columns.min(), freq.columns.max()
        out[str(bench)] = {cls: (json_number(freq.at[cls, first] - freq.at[cls, last]) if cls in freq.index and
                                 first != last else None) for cls in CLASSES}
    return out


def index_counts(sentences: pd.DataFrame, responses: pd.DataFrame, min_responses: int) -> pd.DataFrame:
    """How many correct and incorrect responses reach sentence index k: where position curves stop.

    n_responses(benchmark, correct, k) = #responses of that group whose k-th sentence exists and is scored
    (the denominator of :func:`position_curves`, here for every k, not only the kept ones); ``usable`` marks
    the indices where both groups reach ``min_responses`` — exactly the indices position curves, their areas
    and the permutation test use. Every k from 0 to the benchmark's last scored index appears for both
    groups (0 where a group has none), so a plot shows where a group runs out. Columns: benchmark,
    correct, sentence_idx, n_responses, usable; sorted by benchmark, correct (True first), sentence_idx.
    """
    joined = join_responses(sentences, responses)
    scored = joined[joined["cls"] != UNSCORED]
    columns = ["benchmark", "correct", "sentence_idx", "n_responses", "usable"]
    frames = []
    for bench, b in scored.groupby("benchmark", sort=True):
        ks = np.arange(int(b["sentence_idx"].max()) + 1)
        # one scored sentence per (response, k), so counting rows counts responses
        n = b.groupby(["correct", "sentence_idx"]).size().unstack("correct").reindex(index=ks, columns=[True, False])
        n = n.fillna(0).astype(int)
        usable = (n[True] >= min_responses) & (n[False] >= min_responses)
        for correct in (True, False):
            frames.append(pd.DataFrame({"benchmark": bench, "correct": correct, "sentence_idx": ks,
                                        "n_responses": n[correct].to_numpy(), "usable": usable.to_numpy()}))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(columns, [str, bool, int, int, bool])})
    return pd.concat(frames, ignore_index=True)[columns]


def area_between(curves: pd.DataFrame) -> pd.DataFrame:
    """Area between the correct and incorrect curves of each benchmark x class (DASD-style).

    With d_k = frequency(correct, k) - frequency(incorrect, k) over the n usable indices k (unit spacing):
    ``signed = sum_k d_k`` (> 0: the class is more frequent in correct responses) and
    ``abs = sum_k |d_k|`` (how far apart the curves are, whichever side). Columns: benchmark, cls, signed,
    abs, n_indices. Both grow with n_indices; divide by it for a per-position difference.
    """
    if curves.empty:
        return pd.DataFrame(
            {
                "benchmark": pd.Series(dtype=str),
                "cls": pd.Series(dtype=str),
                "signed": pd.Series(dtype=float),
                "abs": pd.Series(dtype=float),
                "n_indices": pd.Series(dtype=int),
            }
        )
    wide = curves.pivot_table(index=["benchmark", "cls", "sentence_idx"], columns="correct", values="frequency")
    diff = wide[True] - wide[False]
    area = diff.groupby(level=["benchmark", "cls"]).agg(signed="sum", abs=lambda d: d.abs().sum(), n_indices="size")
    area = area.reset_index()
    area["_cls"] = pd.Categorical(area["cls"], categories=list(CLASSES), ordered=True)
    return area.sort_values(["benchmark", "_cls"]).drop(columns="_cls").reset_index(drop=True)


def response_shares(sentences: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """Per-response class shares (scored sentences only): response_id, benchmark, correct, one column per class.

    Responses without a scored sentence are left out (they have no share).
    """
    joined = join_responses(sentences, responses)
    scored = joined[joined["cls"] != UNSCORED]
    if scored.empty:
        return pd.DataFrame(columns=["response_id", "benchmark", "correct", *CLASSES])
    counts = (
        scored.groupby(["response_id", "benchmark", "correct"])["cls"]
        .value_counts()
        .unstack("cls")
        .reindex(columns=list(CLASSES))
        .fillna(0)
    )
    return counts.div(counts.sum(axis=1), axis=0).reset_index().rename_axis(columns=None)


def share_tests(sentences: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """Is a class's per-response share different in correct and incorrect responses? (Mann-Whitney U)

    The curves show where; this gives one number per class. Two-sided test on per-response shares
    (responses are the independent units, sentences are not). Columns: benchmark, cls, n_correct,
    n_incorrect, mean_share_correct, mean_share_incorrect, diff (correct - incorrect), u_statistic,
    p_value; NaN where a group is empty.
    """
    shares = response_shares(sentences, responses)
    rows = []
    for bench in sorted(shares["benchmark"].unique()):
        b = shares[shares["benchmark"] == bench]
        right, wrong = b[b["correct"]], b[~b["correct"]]
        for cls in CLASSES:
            x, y = right[cls].to_numpy(), wrong[cls].to_numpy()
            u = p = math.nan
            if len(x) and len(y):
                if np.ptp(np.concatenate([x, y])) > 0:
                    u, p = mannwhitneyu(x, y, alternative="two-sided")
                else:
                    u, p = len(x) * len(y) / 2, 1.0  # all shares equal: no difference to detect
            mx = x.mean() if len(x) else math.nan
            my = y.mean() if len(y) else math.nan
            rows.append(
                {
                    "benchmark": bench,
                    "cls": cls,
                    "n_correct": len(x),
                    "n_incorrect": len(y),
                    "mean_share_correct": mx,
                    "mean_share_incorrect": my,
                    "diff": mx - my,
                    "u_statistic": float(u),
                    "p_value": float(p),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "benchmark",
            "cls",
            "n_correct",
            "n_incorrect",
            "mean_share_correct",
            "mean_share_incorrect",
            "diff",
            "u_statistic",
            "p_value",
        ],
    )


def json_number(x) -> float | int | None:
    """JSON-ready number: ints stay ints, floats rounded to 4 decimals, NaN -> None."""
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return int(x)
    x = float(x)
    return None if math.isnan(x) else round(x, 4)


def metrics(sentences: pd.DataFrame, responses: pd.DataFrame, shares: pd.DataFrame, area: pd.DataFrame) -> dict:
    """Nested, JSON-ready summary with the same keys on every run (missing values are null).

    ``{benchmark: {n_responses, n_correct, n_incorrect, accuracy, n_sentences, n_unscored,
    share: {all|correct|incorrect: {class: share}}, teacher_plus_boosted,
    area: {class: {signed, abs, n_indices}}, share_test: {class: {mean_correct, mean_incorrect, p_value}}}}``
    from :func:`class_shares` and :func:`area_between` (passed in: the caller also tables and plots them)
    and :func:`share_tests` (computed here). Floats are rounded to 4 decimals.
    """
    tests = share_tests(sentences, responses)
    out: dict = {}
    for bench in sorted(shares["benchmark"].unique()):
        sh = shares[shares["benchmark"] == bench].set_index("subset")
        n_resp = int(sh.loc["all", "n_responses"])
        entry = {
            "n_responses": n_resp,
            "n_correct": int(sh.loc["correct", "n_responses"]),
            "n_incorrect": int(sh.loc["incorrect", "n_responses"]),
            "accuracy": json_number(sh.loc["correct", "n_responses"] / n_resp if n_resp else math.nan),
            "n_sentences": int(sh.loc["all", "n_sentences"]),
            "n_unscored": int(sh.loc["all", "n_unscored"]),
            "share": {s: {c: json_number(sh.loc[s, c]) for c in CLASSES} for s in SUBSETS},
            "teacher_plus_boosted": json_number(sh.loc["all", "teacher_plus_boosted"]),
            "area": {},
            "share_test": {},
        }
        ar = area[area["benchmark"] == bench].set_index("cls")
        te = tests[tests["benchmark"] == bench].set_index("cls")
        for c in CLASSES:
            entry["area"][c] = (
                {
                    "signed": json_number(ar.loc[c, "signed"]),
                    "abs": json_number(ar.loc[c, "abs"]),
                    "n_indices": int(ar.loc[c, "n_indices"]),
                }
                if c in ar.index
                else {"signed": None, "abs": None, "n_indices": 0}
            )
            entry["share_test"][c] = (
                {
                    k: json_number(te.loc[c, col])
                    for k, col in (
                        ("mean_correct", "mean_share_correct"),
                        ("mean_incorrect", "mean_share_incorrect"),
                        ("p_value", "p_value"),
                    )
                }
                if c in te.index
                else {"mean_correct": None, "mean_incorrect": None, "p_value": None}
            )
        out[bench] = entry
    return out


def shares_table_markdown(shares: pd.DataFrame) -> str:
    """The :func:`class_shares` table as GitHub markdown (shares to 3 decimals, "–" where undefined)."""
    header = ["benchmark", "subset", "responses", "sentences", *CLASSES, "Teacher+Boosted"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for row in shares.itertuples(index=False):
        r = row._asdict()
        cells = [str(r["benchmark"]), str(r["subset"]), str(r["n_responses"]), str(r["n_sentences"])]
        cells += ["–" if pd.isna(r[c]) else f"{r[c]:.3f}" for c in (*CLASSES, "teacher_plus_boosted")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
