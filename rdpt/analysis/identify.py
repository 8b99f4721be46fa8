"""Teacher identification: which of several candidate teachers explains the distilled model's sentences?

The paper (arXiv 2512.20908, appendix A.4.3) told the real teacher from another by comparing Teacher shares
alone. Here each candidate C takes the teacher's place in the classification, everything else unchanged (the
same traced responses, sentences, student S and distilled model D; classify's alpha and beta), and the
candidates are compared with a test:

* **per response**, the share of its scored sentences that are Teacher under C (Shared first, then
  pC − pS > beta: classify's rule with C as the teacher); a candidate's **Teacher share** is the mean over
  responses, with a 95% percentile bootstrap CI over **questions** (a resampled question brings all its
  responses, as in :mod:`rdpt.analysis.stats`: responses to one question are not independent);
* for **every pair** (A, B), the paired difference of those means, share_A − share_B over the same responses,
  with a question-bootstrap CI (the same resamples for both) and a two-sided **sign-flip permutation p-value**:
  under the null "A and B explain the sentences equally", the labels A and B are exchangeable within each
  question, so the per-question sums of the response differences flip sign at random;
  p = (1 + #{|T*| >= |T|}) / (1 + n_permutations), never 0;
* the **best** candidate has the highest Teacher share; its **lead** is the pair (best, runner-up). It is
  **identified** when the lead's CI lies above 0 and p < 0.05 (each where computed).

Also kept, for comparison, the paper's threshold-only view (Teacher sentences pooled over responses, no test)
and two threshold-free descriptions: the mean of pC − pS and of log pC − log pS over scored sentences::

    python -c "import numpy as np; from rdpt.analysis.identify import compare; \\
      s = np.array([[.9, .2], [.8, .3], [.7, .1], [.9, .4]]); \\
      print(compare(s, ['q1', 'q1', 'q2', 'q3'], ['teacher', 'other'], 200, 1000, 0)['lead'])"

Each candidate's scores come from stage ``identify_score@<name>`` (:mod:`rdpt.analysis.identify_score`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from rdpt import RdptError
from rdpt.analysis.stats import percentile_ci, question_bootstrap, stable_hash
from rdpt.io.artifacts import atomic_dir, check_same_keys, read_json, read_table, write_json
from rdpt.params import Params
from rdpt.provenance.rules import label

log = logging.getLogger(__name__)

KEYS = ["response_id", "sentence_idx"]
ALPHA_LEVEL = 0.05  # a lead is "identified" when p < this and the 95% CI excludes 0
_TIE = 1e-9  # the observed statistic recomputed under the identity flip must count as a tie, not a rounding miss


# ------------------------------------------------------------------------------------------- statistics
def sign_flip_p(question_sums: np.ndarray, n_total: int, n_permutations: int, rng: np.random.Generator,
                block: int = 2000) -> float:
    """Two-sided p of T = sum(question_sums) / n_total under random sign flips of the per-question sums."""
    if n_permutations <= 0 or len(question_sums) == 0:
        return math.nan
    observed = abs(question_sums.sum() / n_total)
    hits = 0
    for start in range(0, n_permutations, block):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(block, n_permutations - start), len(question_sums)))
        hits += int((np.abs(signs @ question_sums / n_total) >= observed - _TIE).sum())
    return (1 + hits) / (1 + n_permutations)


def compare(shares: np.ndarray, question_ids, names: list[str], n_bootstrap: int, n_permutations: int,
            seed: int | list[int]) -> dict:
    """Compare candidates on per-response Teacher shares ``shares`` [n_responses, n_candidates].

    Returns ``{n_responses, n_questions, candidates: {name: {teacher_share, ci_low, ci_high}},
    pairs: {"A-vs-B": {a, b, diff, ci_low, ci_high, p}}, best, runner_up, lead: {diff, ci_low, ci_high, p},
    identified}`` (NaN where a statistic is undefined: no CI with fewer than 2 questions or no resample).
    """
    shares = np.asarray(shares, dtype=float)
    if shares.ndim != 2 or shares.shape[1] != len(names) or len(names) < 2:
        raise RdptError(f"identify: need a [responses, candidates] share matrix for >= 2 candidates, got "
                        f"{shares.shape} for {len(names)} names")
    codes, uniques = pd.factorize(np.asarray(question_ids))
    n, n_q = len(shares), len(uniques)
    rng = np.random.default_rng(seed)
    samples = question_bootstrap(question_ids, n_bootstrap if n_q >= 2 else 0, rng)
    boot = np.array([shares[idx].mean(axis=0) for idx in samples]).reshape(-1, len(names))
    n_min = (len(samples) + 1) // 2
    mean = shares.mean(axis=0) if n else np.full(len(names), math.nan)
    out: dict = {"n_responses": int(n), "n_questions": int(n_q), "candidates": {}, "pairs": {}}
    for j, name in enumerate(names):
        lo, hi = percentile_ci(boot[:, j], n_min)
        out["candidates"][name] = {"teacher_share": float(mean[j]), "ci_low": lo, "ci_high": hi}
    # per-question sums: the units that flip together
    by_question = np.zeros((n_q, len(names)))
    np.add.at(by_question, codes, shares)

    def pair(a: int, b: int) -> dict:
        lo, hi = percentile_ci(boot[:, a] - boot[:, b], n_min)
        p = sign_flip_p(by_question[:, a] - by_question[:, b], n, n_permutations, rng)
        return {"a": names[a], "b": names[b], "diff": float(mean[a] - mean[b]), "ci_low": lo, "ci_high": hi, "p": p}

    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            out["pairs"][f"{names[a]}-vs-{names[b]}"] = pair(a, b)
    # ties go to the candidate named first in params
    order = sorted(range(len(names)), key=lambda j: (-mean[j] if np.isfinite(mean[j]) else math.inf, j))
    best, runner = order[0], order[1]
    lead = out["pairs"][f"{names[min(best, runner)]}-vs-{names[max(best, runner)]}"]
    if best > runner:  # the pair was computed as runner - best: turn it around (same test, same p)
        lead = {"diff": -lead["diff"], "ci_low": -lead["ci_high"], "ci_high": -lead["ci_low"], "p": lead["p"]}
    out["best"], out["runner_up"] = names[best], names[runner]
    out["lead"] = {k: lead[k] for k in ("diff", "ci_low", "ci_high", "p")}
    out["identified"] = _identified(out["lead"])
    return out


def _identified(lead: dict) -> bool | None:
    """CI above 0 and p < 0.05, each where computed; None when neither was."""
    tests = []
    if np.isfinite(lead["ci_low"]):
        tests.append(lead["ci_low"] > 0)
    if np.isfinite(lead["p"]):
        tests.append(lead["p"] < ALPHA_LEVEL)
    return bool(all(tests)) if tests else None


def _aligned(sents: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The scores table at ``path``, one row per sentence of ``sents``, in its order."""
    scores = read_table(path, "scores")
    check_same_keys(sents, "the sentences table", scores, path, KEYS)
    return sents[KEYS].merge(scores, on=KEYS, how="left", validate="one_to_one")


def sentence_frame(sentences: pd.DataFrame, question_of: dict, student: Path, distilled: Path,
                   candidates: dict[str, Path], alpha: float, beta: float) -> pd.DataFrame:
    """One row per sentence scored under S, D and every candidate, with per candidate ``teacher:<name>``
    (classify's rule with that candidate as the teacher), ``pdiff:<name>`` = pC − pS and ``lpdiff:<name>`` =
    log pC − log pS; plus response_id, benchmark, question_id."""
    sents = sentences.sort_values(KEYS).reset_index(drop=True)
    tables = {"student": _aligned(sents, student / "scores.parquet"),
              "distilled": _aligned(sents, distilled / "scores.parquet")}
    tables.update({f"candidate:{n}": _aligned(sents, d / "scores.parquet") for n, d in candidates.items()})
    # a sentence counts only where every model gave it a token, so all candidates share one denominator
    scored = np.logical_and.reduce([t["n_tokens"].to_numpy() > 0 for t in tables.values()])
    lp = {k: t["mean_logprob"].to_numpy(dtype=np.float64)[scored] for k, t in tables.items()}
    for key, values in lp.items():
        if not np.all(np.isfinite(values)):
            raise RdptError(f"identify: {key} has a non-finite log-prob for a scored sentence (rerun its score "
                            "stage in float32)")
    missing = sorted(set(sents["response_id"]) - set(question_of))
    if missing:
        raise RdptError(f"identify: response {missing[0]!r} is not in the traced generations (stale file? dvc repro)")
    out = sents.loc[scored, ["response_id", "benchmark"]].reset_index(drop=True)
    out["question_id"] = out["response_id"].map(question_of).astype(str)
    p_s, p_d = np.exp(lp["student"]), np.exp(lp["distilled"])
    for name in candidates:
        p_c = np.exp(lp[f"candidate:{name}"])
        out[f"teacher:{name}"] = label(p_c, p_s, p_d, alpha, beta) == "Teacher"
        out[f"pdiff:{name}"] = p_c - p_s
        out[f"lpdiff:{name}"] = lp[f"candidate:{name}"] - lp["student"]
    return out


def identify_table(frame: pd.DataFrame, names: list[str], n_bootstrap: int, n_permutations: int,
                   seed: int) -> dict:
    """Per benchmark: :func:`compare` on per-response Teacher shares, plus the pooled (threshold-only)
    share, mean pC − pS and mean log pC − log pS of each candidate over the benchmark's scored sentences."""
    out = {}
    for bench in sorted(frame["benchmark"].unique()):
        f = frame[frame["benchmark"] == bench]
        teacher_cols = [f"teacher:{n}" for n in names]
        per_response = f.groupby("response_id", sort=True).agg(
            question_id=("question_id", "first"), **{c: (c, "mean") for c in teacher_cols})
        # one generator per benchmark: adding a benchmark leaves the others' intervals and p-values as they were
        result = compare(per_response[teacher_cols].to_numpy(), per_response["question_id"].to_numpy(), names,
                         n_bootstrap, n_permutations, [seed, stable_hash(bench)])
        for name in names:
            result["candidates"][name].update({
                "teacher_share_pooled": float(f[f"teacher:{name}"].mean()),
                "n_teacher": int(f[f"teacher:{name}"].sum()),
                "mean_p_diff": float(f[f"pdiff:{name}"].mean()),
                "mean_logprob_diff": float(f[f"lpdiff:{name}"].mean()),
            })
        pooled = {n: result["candidates"][n]["teacher_share_pooled"] for n in names}
        result["threshold_best"] = max(names, key=lambda n: (pooled[n], -names.index(n)))
        result["n_sentences"] = len(f)
        out[bench] = result
    return out


# ---------------------------------------------------------------------------------------------- reports
def _fmt(x, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _signed(x, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:+.{digits}f}"


def _p(p: float, n_permutations: int) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    floor = 1 / (1 + n_permutations)
    return f"≤ {floor:.2g} (minimum)" if p <= floor + 1e-15 else f"{p:.3g}"


def _interval(value, lo, hi, signed: bool = False) -> str:
    fmt = _signed if signed else _fmt
    ci = "" if lo is None or not math.isfinite(lo) else f" [{fmt(lo)}, {fmt(hi)}]"
    return f"{fmt(value)}{ci}"


def markdown(table: dict, names: list[str], alpha: float, beta: float, n_bootstrap: int, n_permutations: int) -> str:
    """reports/identify/identify.md: per-candidate shares, the lead of the best one, every pair."""
    intro = ("Teacher identification: which candidate teacher explains the distilled model's sentences. Each "
             f"candidate takes the teacher's place in classify's rule (alpha = {alpha:g}, beta = {beta:g}): a sentence "
             "is Teacher when pC − pS > beta (and it is not Shared). Teacher share = mean over responses of each "
             f"response's share of Teacher sentences, 95% CI from a bootstrap over questions ({n_bootstrap} "
             "resamples). Pooled share = Teacher sentences / scored sentences (the paper's threshold-only view).")
    header = ("| benchmark | candidate | responses | Teacher share [95% CI] | pooled share | mean pC − pS | "
              "mean log pC − log pS |")
    lines = [intro, "", header, "|---|---|---:|---:|---:|---:|---:|"]
    for bench, r in table.items():
        for name in names:
            c = r["candidates"][name]
            mark = " **(best)**" if name == r["best"] else ""
            lines.append(f"| {bench} | `{name}`{mark} | {r['n_responses']} | "
                         f"{_interval(c['teacher_share'], c['ci_low'], c['ci_high'])} | "
                         f"{_fmt(c['teacher_share_pooled'])} | {_signed(c['mean_p_diff'])} | "
                         f"{_signed(c['mean_logprob_diff'])} |")
    lead_note = ("Lead of the best candidate over the runner-up: paired difference of Teacher shares over the same "
                 "responses, 95% question-bootstrap CI, two-sided sign-flip permutation p over questions "
                 f"({n_permutations} flips). Identified = CI above 0 and p < {ALPHA_LEVEL:g}.")
    lines += [
        "",
        lead_note,
        "",
        "| benchmark | questions | best | runner-up | lead [95% CI] | p | identified | threshold-only best |",
        "|---|---:|---|---|---:|---:|---|---|",
    ]
    for bench, r in table.items():
        ld = r["lead"]
        ident = {True: "yes", False: "no", None: "–"}[r["identified"]]
        lines.append(f"| {bench} | {r['n_questions']} | `{r['best']}` | `{r['runner_up']}` | "
                     f"{_interval(ld['diff'], ld['ci_low'], ld['ci_high'], signed=True)} | "
                     f"{_p(ld['p'], n_permutations)} | {ident} | `{r['threshold_best']}` |")
    if len(names) > 2:
        lines += ["", "Every pair (A − B):", "", "| benchmark | pair | diff [95% CI] | p |", "|---|---|---:|---:|"]
        for bench, r in table.items():
            for pr in r["pairs"].values():
                lines.append(f"| {bench} | `{pr['a']}` − `{pr['b']}` | "
                             f"{_interval(pr['diff'], pr['ci_low'], pr['ci_high'], signed=True)} | "
                             f"{_p(pr['p'], n_permutations)} |")
    return "\n".join(lines) + "\n"


def plot(table: dict, names: list[str], path: str | Path, n_permutations: int) -> None:
    """Teacher share per candidate (bar: mean over responses, whiskers: 95% CI; diamond: pooled share), one
    panel per benchmark, the lead and its p in the title."""
    import seaborn as sns
    from matplotlib.figure import Figure

    from rdpt.analysis.figures import save_figure

    palette = sns.color_palette("colorblind", len(names))
    benches = list(table)
    with sns.axes_style("ticks"):
        fig = Figure(figsize=(max(3.4, 1.1 * len(names) + 1.6) * len(benches), 3.8))
        axes = fig.subplots(1, len(benches), sharey=True, squeeze=False)[0]
    x = np.arange(len(names))
    for ax, bench in zip(axes, benches):
        r = table[bench]
        c = [r["candidates"][n] for n in names]
        mean = np.array([v["teacher_share"] for v in c], dtype=float)
        lo = np.array([v["ci_low"] for v in c], dtype=float)
        hi = np.array([v["ci_high"] for v in c], dtype=float)
        err = np.nan_to_num(np.vstack([mean - lo, hi - mean]))
        ax.bar(x, mean, yerr=err, color=palette, capsize=4, width=0.65)
        ax.scatter(x, [v["teacher_share_pooled"] for v in c], marker="D", s=22, color="#1b1b1b", zorder=3,
                   label="pooled share")
        ax.set_xticks(x, names, rotation=20 if len(names) > 3 else 0)
        ax.set_ylim(0, 1)
        ld = r["lead"]
        p = "p = –" if not np.isfinite(ld["p"]) else (
            f"p ≤ {ld['p']:.2g}" if ld["p"] <= 1 / (1 + n_permutations) + 1e-15 else f"p = {ld['p']:.2g}")
        ax.set_title(f"{bench}: {r['best']} leads by {_signed(ld['diff'], 2)}\n"
                     f"95% CI [{_signed(ld['ci_low'], 2)}, {_signed(ld['ci_high'], 2)}], {p}", fontsize=9)
        ax.set_ylabel("Teacher share of sentences" if ax is axes[0] else "")
        sns.despine(ax=ax)
    axes[0].legend(loc="upper right", fontsize=8, frameon=False)
    fig.tight_layout()
    save_figure(fig, path)


def metrics(table: dict, params: Params, alpha: float, beta: float) -> dict:
    """reports/identify.json: ``identify.<benchmark>.{best, runner_up, identified, threshold_best, n_*,
    lead.{diff, ci_low, ci_high, p}, candidates.<name>.{teacher_share, ci_low, ci_high, teacher_share_pooled,
    n_teacher, mean_p_diff, mean_logprob_diff}, pairs.<A>-vs-<B>.{diff, ci_low, ci_high, p}}``."""
    cfg = params.identify
    ordered = {}
    for bench, r in table.items():
        ordered[bench] = {
            "best": r["best"], "runner_up": r["runner_up"], "identified": r["identified"],
            "threshold_best": r["threshold_best"], "n_responses": r["n_responses"],
            "n_questions": r["n_questions"], "n_sentences": r["n_sentences"], "lead": r["lead"],
            "candidates": r["candidates"],
            "pairs": {k: {f: v[f] for f in ("diff", "ci_low", "ci_high", "p")} for k, v in r["pairs"].items()},
        }
    return {
        "identify": ordered,
        "thresholds": {"alpha": alpha, "beta": beta},
        "settings": {"n_bootstrap": cfg.n_bootstrap, "n_permutations": cfg.n_permutations, "seed": cfg.seed},
        "candidates": {n: s.model_dump() for n, s in cfg.candidates.items()},
    }


# ------------------------------------------------------------------------------------------------- step
def identify(params: Params, sentences_path: str, generations_path: str, student_dir: str, distilled_dir: str,
             candidates_dir: str, calibration_path: str, out_dir: str, metrics_out: str) -> dict:
    """The ``identify`` stage: reads ``<candidates_dir>/<name>/scores.parquet`` for every candidate in params,
    writes ``<out_dir>/{identify.md,teacher_share.png}`` and the metrics file."""
    cfg = params.identify
    names = list(cfg.candidates)
    calibration = read_json(calibration_path)
    try:
        alpha, beta = float(calibration["alpha_used"]), float(calibration["beta_used"])
    except (KeyError, TypeError, ValueError):
        raise RdptError(f"{calibration_path}: no alpha_used / beta_used (rerun classify: dvc repro)") from None
    sents = read_table(sentences_path, "sentences")
    gens = read_table(generations_path, "generations")
    question_of = dict(zip(gens["response_id"].astype(str), gens["question_id"].astype(str)))
    dirs = {n: Path(candidates_dir) / n for n in names}
    for name, folder in dirs.items():
        if not (folder / "scores.parquet").is_file():
            raise RdptError(f"{folder / 'scores.parquet'}: not found (score candidate {name!r}: "
                            f"dvc repro identify_score@{name})")
    frame = sentence_frame(sents, question_of, Path(student_dir), Path(distilled_dir), dirs, alpha, beta)
    if frame.empty:
        raise RdptError(f"{sentences_path}: no sentence is scored under every model (nothing to compare)")
    table = identify_table(frame, names, cfg.n_bootstrap, cfg.n_permutations, cfg.seed)
    with atomic_dir(out_dir) as tmp:
        (tmp / "identify.md").write_text(markdown(table, names, alpha, beta, cfg.n_bootstrap, cfg.n_permutations))
        plot(table, names, tmp / "teacher_share.png", cfg.n_permutations)
    payload = metrics(table, params, alpha, beta)
    write_json(metrics_out, payload)
    for bench, r in table.items():
        log.info("identify %s: best %s, lead %+.3f [%.3f, %.3f], p = %.3g", bench, r["best"], r["lead"]["diff"],
                 r["lead"]["ci_low"], r["lead"]["ci_high"], r["lead"]["p"])
    return payload
