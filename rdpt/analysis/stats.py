"""Quantified correlation of provenance with correctness, with uncertainty at the level of questions.

The curves and shares of :mod:`rdpt.analysis.shares` show *that* correct and incorrect responses differ; this module
puts numbers with confidence intervals on it. Per benchmark, on one row per traced response that has a scored
sentence (its class shares, its log length in tokens, whether it is correct, its question):

* **point-biserial r** of correctness with each class share and with log length (Pearson's r with the 0/1
  outcome, as ``scipy.stats.pointbiserialr`` computes it);
* **logistic regression** ``correct ~ class shares + log length`` on standardised predictors, unpenalised
  (scikit-learn). The four shares sum to 1, so one is left out: the **reference** (``correlate.reference``,
  default **Teacher**, the class a distilled model writes most, so the other shares stay far from collinear
  whatever alpha is; a rare reference such as Shared under a small alpha leaves the other three summing to almost
  exactly 1 and the odds ratios unidentifiable). A share's odds ratio per SD reads "moving one SD of a
  response's sentences from the reference class to this class multiplies the odds of a correct answer by OR,
  at equal length";
* **95% percentile bootstrap CIs** for both, resampling *questions* with replacement (a resampled question brings
  all its responses): the K responses to one question share its difficulty and are not independent, so
  resampling responses would give too-narrow intervals;
* a **permutation p-value** for the area between the correct and incorrect position curves of each class
  (:func:`rdpt.analysis.shares.area_between`), permuting the correctness labels *within question* (see
  :func:`area_permutation_test`).

Degenerate cases (every response correct or wrong, a constant predictor, perfect separation) give NaN with a
reason, never an exception::

    python -c "import numpy as np; from rdpt.analysis.stats import point_biserial; \\
      y = np.array([1, 1, 0, 0, 1, 0], bool); print(point_biserial(y, np.array([.9, .8, .2, .3, .7, .1])))"
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.linalg import LinAlgWarning
from scipy.stats import pearsonr
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from rdpt import RdptError
from rdpt.analysis.shares import join_responses, json_number, response_shares
from rdpt.provenance.rules import CLASSES, UNSCORED

REFERENCE = "Teacher"  # default class share left out of the logistic regression (the four shares sum to 1)
LENGTH = "length"  # log of the response's token count
TERMS = (*CLASSES, LENGTH)  # what the point-biserial r is computed for
UNIT_COLUMNS = ("response_id", "benchmark", "question_id", "correct", "n_tokens")
# |log odds ratio per SD| beyond this means the likelihood has no finite maximum (separation): an odds ratio of
# e^10 = 22,026 per SD is not an estimate but the optimiser walking off to infinity.
SEPARATION_LOG_OR = 10.0
CI_LEVEL = 0.95


# ----------------------------------------------------------------------------------------- response units
def response_units(sentences: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """One row per response with a scored sentence: the units every statistic here resamples or permutes.

    ``responses`` needs response_id, benchmark, correct, n_sentences (as in :mod:`rdpt.analysis.shares`) plus
    question_id and n_tokens. Columns out: response_id, benchmark, question_id, correct, n_tokens, length
    (= log n_tokens), n_scored and one share column per class; sorted by benchmark, question, response.
    """
    missing = [c for c in UNIT_COLUMNS if c not in responses.columns]
    if missing:
        raise RdptError(f"responses table lacks column(s): {', '.join(missing)}")
    shares = response_shares(sentences, responses)
    joined = join_responses(sentences, responses)
    n_scored = joined[joined["cls"] != UNSCORED].groupby("response_id").size().rename("n_scored")
    extra = responses[["response_id", "question_id", "n_tokens"]]
    units = shares.merge(extra, on="response_id", how="left").merge(n_scored, on="response_id", how="left")
    units["correct"] = units["correct"].astype(bool)
    # Log: length acts multiplicatively (a response twice as long, not 50 tokens longer) and is right-skewed.
    units[LENGTH] = np.log(np.maximum(units["n_tokens"].to_numpy(dtype=float), 1.0))
    columns = ["response_id", "benchmark", "question_id", "correct", "n_tokens", LENGTH, "n_scored", *CLASSES]
    units = units[columns].astype({"question_id": str})
    return units.sort_values(["benchmark", "question_id", "response_id"]).reset_index(drop=True)


def _outcome_reason(y: np.ndarray) -> str | None:
    if len(y) == 0:
        return "no response"
    if y.all():
        return "all responses correct"
    if not y.any():
        return "all responses incorrect"
    return None


# -------------------------------------------------------------------------------------------- estimators
def point_biserial(correct: np.ndarray, x: np.ndarray) -> tuple[float, str | None]:
    """(r, None), or (NaN, reason) when correctness or ``x`` is constant (r is undefined there)."""
    r, reasons = point_biserial_columns(correct, np.asarray(x, dtype=float)[:, None])
    return float(r[0]), reasons[0]


def point_biserial_columns(correct: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
    """Point-biserial r of ``correct`` with each column of ``x`` [n, m], NaN + reason where undefined.

    The point-biserial r is Pearson's r with a 0/1 variable (``scipy.stats.pointbiserialr`` calls
    ``pearsonr``); ``pearsonr`` along an axis does all columns of a bootstrap resample in one call.
    """
    correct = np.asarray(correct, dtype=bool)
    outcome = _outcome_reason(correct)
    # `or` short-circuits: ptp is never taken of an empty column (no response is an outcome reason)
    reasons = [outcome or ("constant predictor" if np.ptp(col) == 0 else None) for col in x.T]
    r = np.full(x.shape[1], np.nan)
    ok = [i for i, why in enumerate(reasons) if why is None]
    if ok:
        y = np.broadcast_to(correct[:, None].astype(float), (len(x), len(ok)))
        r[ok] = pearsonr(y, x[:, ok], axis=0).statistic
    return r, reasons


@dataclass(frozen=True)
class Design:
    """Which predictors enter the logistic regression of one benchmark, and their standardisation."""

    used: tuple[str, ...]
    dropped: dict[str, str]  # predictor -> why it is left out
    center: np.ndarray
    scale: np.ndarray  # full-sample SDs: bootstrap coefficients stay "per SD of this benchmark's responses"

    def z(self, units: pd.DataFrame) -> np.ndarray:
        return (units[list(self.used)].to_numpy(dtype=float) - self.center) / self.scale


def predictors(reference: str = REFERENCE) -> tuple[str, ...]:
    """Logistic regression predictors, in order: every class share but the reference, then log length."""
    if reference not in CLASSES:
        raise RdptError(f"correlate.reference: {reference!r} is not a class ({', '.join(CLASSES)})")
    return tuple(c for c in CLASSES if c != reference) + (LENGTH,)


def logistic_design(units: pd.DataFrame, reference: str = REFERENCE) -> Design:
    """Drop predictors the data cannot identify: constant ones, then collinear class shares.

    Without the reference the other three shares are linearly independent unless the reference share is
    itself constant (e.g. 0 in every response): then they sum to a constant and the last of them is dropped.
    """
    used, dropped = [], {}
    for name in predictors(reference):
        if np.ptp(units[name].to_numpy(dtype=float)) > 0:
            used.append(name)
        else:
            dropped[name] = "constant predictor"
    x = units[used].to_numpy(dtype=float)
    center = x.mean(axis=0)
    scale = x.std(axis=0, ddof=1) if len(x) > 1 else np.ones(len(used))  # ptp > 0 implies len(x) > 1
    while used:
        z = (units[used].to_numpy(dtype=float) - center) / scale
        if np.linalg.matrix_rank(np.column_stack([np.ones(len(z)), z])) == len(used) + 1:
            break
        shares = [u for u in used if u in CLASSES]
        if not shares:
            break
        victim = shares[-1]
        dropped[victim] = f"collinear with the other shares ({reference} share is constant)"
        keep = [i for i, u in enumerate(used) if u != victim]
        used, center, scale = [used[i] for i in keep], center[keep], scale[keep]
    return Design(tuple(used), dropped, np.asarray(center, float), np.asarray(scale, float))


def fit_logistic(y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """Unpenalised logistic regression coefficients (log odds ratio per unit of ``z``), or (None, reason)."""
    y = np.asarray(y, dtype=bool)
    reason = _outcome_reason(y)
    if reason:
        return None, reason
    if z.shape[1] == 0:
        return np.empty(0), None
    if np.any(np.ptp(z, axis=0) == 0):
        return None, "constant predictor"
    with warnings.catch_warnings():
        # Both are how an unpenalised fit says the optimum is at infinity or not unique.
        warnings.simplefilter("error", ConvergenceWarning)
        warnings.simplefilter("error", LinAlgWarning)
        try:
            # Newton steps with a Cholesky solve: exact and fast for a handful of predictors (C=inf: no penalty).
            model = LogisticRegression(C=np.inf, solver="newton-cholesky", max_iter=100).fit(z, y)
        except (ConvergenceWarning, LinAlgWarning):
            return None, "no unique finite maximum likelihood (separation or collinearity)"
    coef = model.coef_[0]
    if not np.all(np.isfinite(coef)) or np.any(np.abs(coef) > SEPARATION_LOG_OR):
        return None, "no unique finite maximum likelihood (separation or collinearity)"
    return coef.copy(), None


# ------------------------------------------------------------------------------------------- bootstrap
def question_bootstrap(question_ids, n_resamples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of ``n_resamples`` cluster-bootstrap samples: questions drawn with replacement, each with all
    its rows (a question drawn twice appears twice). Deterministic for a seeded ``rng``."""
    codes, uniques = pd.factorize(np.asarray(question_ids))
    rows_of = [np.flatnonzero(codes == q) for q in range(len(uniques))]
    n_q = len(uniques)
    return [np.concatenate([rows_of[q] for q in rng.integers(0, n_q, n_q)]) for _ in range(n_resamples)] if n_q else []


def percentile_ci(samples: np.ndarray, n_min: int) -> tuple[float, float]:
    """Percentile interval of the finite samples, or NaNs when fewer than ``n_min`` are finite."""
    finite = samples[np.isfinite(samples)]
    if len(finite) < max(n_min, 1):
        return math.nan, math.nan
    lo, hi = np.quantile(finite, [(1 - CI_LEVEL) / 2, (1 + CI_LEVEL) / 2])
    return float(lo), float(hi)


def correlation_table(units: pd.DataFrame, n_bootstrap: int, seed: int, reference: str = REFERENCE) -> pd.DataFrame:
    """Point-biserial r and logistic odds ratios per SD, with question-bootstrap 95% CIs, per benchmark.

    Columns: benchmark, statistic ("point_biserial" | "odds_ratio"), term, estimate, ci_low, ci_high,
    n_valid (bootstrap resamples where the statistic was defined), n_responses, n_questions, reason (why the
    estimate is NaN, else None). The reference class has an odds_ratio row with NaN and reason "reference".
    A CI needs at least half the resamples to be valid (otherwise it would describe only the resamples that
    happen to avoid the degenerate case); fewer than 2 questions give no CI.
    """
    rows = []
    for bench in sorted(units["benchmark"].unique()):
        u = units[units["benchmark"] == bench].reset_index(drop=True)
        y = u["correct"].to_numpy(dtype=bool)
        n_q = u["question_id"].nunique()
        # One generator per benchmark, so adding a benchmark does not change another's intervals.
        rng = np.random.default_rng([seed, stable_hash(bench)])
        samples = question_bootstrap(u["question_id"], n_bootstrap if n_q >= 2 else 0, rng)
        base = {"benchmark": bench, "n_responses": len(u), "n_questions": n_q}

        x = u[list(TERMS)].to_numpy(dtype=float)
        r, reasons = point_biserial_columns(y, x)
        boot = np.array([point_biserial_columns(y[idx], x[idx])[0] for idx in samples]).reshape(-1, len(TERMS))
        for j, term in enumerate(TERMS):
            valid = int(np.isfinite(boot[:, j]).sum()) if reasons[j] is None else 0
            lo, hi = percentile_ci(boot[:, j], (len(samples) + 1) // 2) if valid else (math.nan, math.nan)
            rows.append({**base, "statistic": "point_biserial", "term": term, "estimate": r[j], "ci_low": lo,
                         "ci_high": hi, "n_valid": valid, "reason": reasons[j]})

        design = logistic_design(u, reference)
        z = design.z(u)
        coef, reason = fit_logistic(y, z)
        boot = np.full((len(samples), len(design.used)), np.nan)
        if coef is not None:
            for i, idx in enumerate(samples):
                c, _ = fit_logistic(y[idx], z[idx])
                if c is not None:
                    boot[i] = c
        n_valid = int(np.isfinite(boot).all(axis=1).sum()) if len(design.used) else 0
        for term in predictors(reference):
            if term in design.used and coef is not None:
                j = design.used.index(term)
                lo, hi = percentile_ci(boot[:, j], (len(samples) + 1) // 2) if samples else (math.nan, math.nan)
                est, why = float(np.exp(coef[j])), None
                lo, hi = math.exp(lo) if np.isfinite(lo) else math.nan, math.exp(hi) if np.isfinite(hi) else math.nan
            else:
                est, lo, hi, why = math.nan, math.nan, math.nan, design.dropped.get(term, reason)
            rows.append({**base, "statistic": "odds_ratio", "term": term, "estimate": est, "ci_low": lo,
                         "ci_high": hi, "n_valid": n_valid if why is None else 0, "reason": why})
        rows.append({**base, "statistic": "odds_ratio", "term": reference, "estimate": math.nan, "ci_low": math.nan,
                     "ci_high": math.nan, "n_valid": 0, "reason": "reference"})
    columns = ["benchmark", "statistic", "term", "estimate", "ci_low", "ci_high", "n_valid", "n_responses",
               "n_questions", "reason"]
    return pd.DataFrame(rows, columns=columns)


def stable_hash(text: str) -> int:
    # Python's hash() of a str changes between processes; the seed must not.
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


# ----------------------------------------------------------------------------------------- permutations
def _position_tensor(sentences: pd.DataFrame, units: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(onehot [n_units, K, n_classes], scored [n_units, K]) of the units' scored sentences, K = longest."""
    joined = sentences[sentences["cls"] != UNSCORED]
    row = pd.Series(np.arange(len(units)), index=units["response_id"].to_numpy())
    joined = joined[joined["response_id"].isin(row.index)]
    k_max = int(joined["sentence_idx"].max()) + 1 if len(joined) else 0
    onehot = np.zeros((len(units), k_max, len(CLASSES)))
    i = row.loc[joined["response_id"].to_numpy()].to_numpy()
    k = joined["sentence_idx"].to_numpy(dtype=int)
    c = pd.Categorical(joined["cls"], categories=list(CLASSES)).codes
    onehot[i, k, c] = 1.0
    return onehot, onehot.sum(axis=2)


def _areas(labels: np.ndarray, onehot: np.ndarray, scored: np.ndarray, min_responses: int):
    """Signed and absolute areas [P, n_classes] for each row of ``labels`` [P, n_units] (True = correct).

    The same computation as position_curves + area_between, as matrix products so that thousands of
    relabellings cost one pass: per index k, counts of each class among correct responses, frequencies,
    and the indices where both groups have ``min_responses``.
    """
    n, k_max, n_cls = onehot.shape
    y = labels.astype(float)
    right = (y @ onehot.reshape(n, -1)).reshape(len(y), k_max, n_cls)
    wrong = onehot.sum(axis=0)[None] - right
    n_right = y @ scored
    n_wrong = scored.sum(axis=0)[None] - n_right
    usable = (n_right >= min_responses) & (n_wrong >= min_responses)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = right / n_right[..., None] - wrong / n_wrong[..., None]
    diff = np.where(usable[..., None], diff, 0.0)
    return diff.sum(axis=1), np.abs(diff).sum(axis=1), usable.sum(axis=1)


def within_group_permutations(groups, labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, len(labels)] relabellings that shuffle ``labels`` only among rows of the same group."""
    codes = pd.factorize(np.asarray(groups))[0].astype(float)
    base = np.argsort(codes, kind="stable")  # rows grouped, in their original order within a group
    keys = codes[None, :] + rng.random((n, len(labels)))  # integer part: group; fraction: random order
    order = np.argsort(keys, axis=1, kind="stable")  # rows grouped, in a random order within a group
    out = np.empty((n, len(labels)), dtype=bool)
    out[:, base] = labels[order]
    return out


def area_permutation_test(sentences: pd.DataFrame, units: pd.DataFrame, min_responses: int, n_permutations: int,
                          seed: int, scheme: str = "within_question") -> pd.DataFrame:
    """Permutation p-values for the area between the correct and incorrect position curves.

    The null: given the question, whether a response is correct is unrelated to its sequence of classes.
    Correctness labels are therefore permuted **within question** (each question keeps its number of correct
    responses, so question difficulty — which drives both correctness and, e.g., response length and style —
    cannot create an area on its own). Only questions with both correct and incorrect responses move; a
    benchmark where no question has both (e.g. one sample per question) falls back to permuting over all its
    responses, which tests the weaker null "correctness is unrelated to provenance", and says so in
    ``scheme``. ``scheme="responses"`` asks for that from the start.

    p-values count the observed labelling as one of the permutations, ``(1 + #{T* >= T}) / (1 + P)``, with
    T = |signed area| (``p_signed``, two-sided) or T = sum of |differences| (``p_abs``); they are never 0.
    Columns: benchmark, cls, signed, abs, n_indices, p_signed, p_abs, scheme, n_permutations, reason.
    """
    if scheme not in ("within_question", "responses"):
        raise RdptError(f"correlate.permutation: unknown scheme {scheme!r}")
    rows = []
    for bench in sorted(units["benchmark"].unique()):
        u = units[units["benchmark"] == bench].reset_index(drop=True)
        y = u["correct"].to_numpy(dtype=bool)
        onehot, scored = _position_tensor(sentences[sentences["benchmark"] == bench], u)
        signed, absolute, n_idx = (a[0] for a in _areas(y[None], onehot, scored, min_responses))
        mixed = u.groupby("question_id")["correct"].agg(lambda s: 0 < s.sum() < len(s))
        used = scheme if scheme == "responses" or mixed.any() else "responses"
        reason = _outcome_reason(y) or (None if n_idx > 0 else "no sentence index with enough responses")
        p_signed = np.full(len(CLASSES), np.nan)
        p_abs = np.full(len(CLASSES), np.nan)
        if reason is None and n_permutations > 0:
            rng = np.random.default_rng([seed, stable_hash(bench)])
            groups = u["question_id"].to_numpy() if used == "within_question" else np.zeros(len(u))
            hits_signed, hits_abs = np.zeros(len(CLASSES)), np.zeros(len(CLASSES))
            # Blocks bound memory to ~[block, K, classes] whatever the number of permutations.
            block = max(1, min(n_permutations, 2_000_000 // max(onehot[0].size, 1)))
            tol = 1e-9  # the observed value computed twice must count as a tie, not depend on rounding
            for start in range(0, n_permutations, block):
                perm = within_group_permutations(groups, y, min(block, n_permutations - start), rng)
                s, a, _ = _areas(perm, onehot, scored, min_responses)
                hits_signed += (np.abs(s) >= np.abs(signed) - tol).sum(axis=0)
                hits_abs += (a >= absolute - tol).sum(axis=0)
            p_signed = (1 + hits_signed) / (1 + n_permutations)
            p_abs = (1 + hits_abs) / (1 + n_permutations)
        for j, cls in enumerate(CLASSES):
            ok = reason is None
            rows.append({"benchmark": bench, "cls": cls, "signed": signed[j] if ok else math.nan,
                         "abs": absolute[j] if ok else math.nan, "n_indices": int(n_idx),
                         "p_signed": p_signed[j], "p_abs": p_abs[j], "scheme": used,
                         "n_permutations": n_permutations if ok else 0, "reason": reason})
    columns = ["benchmark", "cls", "signed", "abs", "n_indices", "p_signed", "p_abs", "scheme", "n_permutations",
               "reason"]
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------------------------------------ outputs
def correlation_metrics(table: pd.DataFrame, perm: pd.DataFrame, n_bootstrap: int) -> dict:
    """JSON-ready block for reports/metrics.json with the same keys on every run (NaN -> null)::

        {benchmark: {n_responses, n_questions, n_bootstrap,
                     point_biserial: {term: {r, ci_low, ci_high, n_valid, reason}},
                     logistic: {reference, odds_ratio_per_sd: {term: {or, ci_low, ci_high, n_valid, reason}}},
                     area_permutation: {scheme, n_permutations, reason, cls: {signed, p_signed, abs, p_abs}}}}
    """
    out: dict = {}
    for bench in sorted(set(table["benchmark"]) | set(perm["benchmark"])):
        t = table[table["benchmark"] == bench]
        pb = t[t["statistic"] == "point_biserial"].set_index("term")
        lo = t[t["statistic"] == "odds_ratio"].set_index("term")
        pe = perm[perm["benchmark"] == bench].set_index("cls")

        def entry(row, key):
            return {key: json_number(row["estimate"]), "ci_low": json_number(row["ci_low"]),
                    "ci_high": json_number(row["ci_high"]),
                    "n_valid": int(row["n_valid"]), "reason": _reason(row["reason"])}

        first = t.iloc[0] if len(t) else None
        out[bench] = {
            "n_responses": int(first["n_responses"]) if first is not None else 0,
            "n_questions": int(first["n_questions"]) if first is not None else 0,
            "n_bootstrap": int(n_bootstrap),
            "point_biserial": {term: entry(pb.loc[term], "r") for term in TERMS if term in pb.index},
            "logistic": {
                "reference": _reference(lo),
                "odds_ratio_per_sd": {term: entry(lo.loc[term], "or") for term in TERMS if term in lo.index},
            },
            "area_permutation": {
                "scheme": pe["scheme"].iloc[0] if len(pe) else None,
                "n_permutations": int(pe["n_permutations"].iloc[0]) if len(pe) else 0,
                "reason": _reason(pe["reason"].iloc[0]) if len(pe) else "no response",
                **{c: {"signed": json_number(pe.loc[c, "signed"]), "p_signed": json_number(pe.loc[c, "p_signed"]),
                       "abs": json_number(pe.loc[c, "abs"]), "p_abs": json_number(pe.loc[c, "p_abs"])}
                   for c in CLASSES if c in pe.index},
            },
        }
    return out


def _reference(table: pd.DataFrame) -> str | None:
    """The reference class of a correlation_table (or its odds-ratio rows indexed by term)."""
    t = table.reset_index()
    hit = t.loc[t["reason"] == "reference", "term"]
    return str(hit.iloc[0]) if len(hit) else None


def _reason(value) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _interval(row) -> str:
    if pd.isna(row["estimate"]):
        why = _reason(row["reason"])
        return "–" if why in (None, "reference") else f"– ({why})"
    ci = "" if pd.isna(row["ci_low"]) else f" [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
    return f"{_fmt(row['estimate'])}{ci}"


def _p(p: float) -> str:
    return "–" if pd.isna(p) else f"{p:.3f}"


def correlation_markdown(table: pd.DataFrame, perm: pd.DataFrame, n_bootstrap: int) -> str:
    """reports/tables/correlation.md: one row per benchmark x term."""
    header = ["benchmark", "term", "responses", "questions", "point-biserial r [95% CI]",
              "odds ratio per SD [95% CI]", "signed area", "perm. p (signed)", "perm. p (|area|)"]
    lines = [
        f"Point-biserial r of correctness with each class share (and log length); odds ratios per SD from the "
        f"logistic regression correct ~ class shares + log length (reference share: {_reference(table)}). "
        f"95% CIs: percentile bootstrap over questions ({n_bootstrap} resamples). Signed area between the correct "
        f"and incorrect position curves, with permutation p-values.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|",
    ]
    for bench in sorted(table["benchmark"].unique()):
        t = table[table["benchmark"] == bench]
        pb = t[t["statistic"] == "point_biserial"].set_index("term")
        lo = t[t["statistic"] == "odds_ratio"].set_index("term")
        pe = perm[perm["benchmark"] == bench].set_index("cls")
        for term in TERMS:
            odds = "reference" if lo.loc[term, "reason"] == "reference" else _interval(lo.loc[term])
            area = (_fmt(pe.loc[term, "signed"]), _p(pe.loc[term, "p_signed"]), _p(pe.loc[term, "p_abs"])) \
                if term in pe.index else ("–", "–", "–")
            lines.append("| " + " | ".join([bench, term, str(pb.loc[term, "n_responses"]),
                                            str(pb.loc[term, "n_questions"]), _interval(pb.loc[term]), odds,
                                            *area]) + " |")
    schemes = {b: s for b, s in zip(perm["benchmark"], perm["scheme"])}
    if schemes:
        lines += ["", "Permutations: " + ", ".join(f"{b}: {s.replace('_', ' ')}" for b, s in sorted(schemes.items()))
                  + "."]
    return "\n".join(lines) + "\n"
