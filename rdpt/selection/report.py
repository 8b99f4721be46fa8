"""What the selection experiment found: accuracy per arm and benchmark over seeds, and its tables.

Each run (arm x seed) fine-tuned the original student on one selection and sampled every benchmark; a
run's accuracy on a benchmark is the mean correctness of its responses. Over seeds we report the mean and
a 95% t-interval; against ``random`` we report the **paired** difference (the same seed means the same
training order and the same evaluation sampling seed), with its own t-interval, which removes the
seed-to-seed noise both arms share::

    python -c "from rdpt.selection.report import mean_ci; print(mean_ci([0.41, 0.45, 0.43]))"

The "avg" benchmark is the per-run mean over benchmarks (the paper's Table 1 average), then over seeds. Each run
also gets the evaluation protocol of :mod:`rdpt.analysis.pass_at_k`: a run's accuracy is its avg@k (pass@1 over
the benchmark's k samples per question), beside the unbiased pass@k at that k and the truncation rate, each a mean
over seeds in Table 1's second part and in the metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from scipy import stats

from rdpt import RdptError
from rdpt.analysis.figures import save_figure
from rdpt.analysis.pass_at_k import summary as eval_summary
from rdpt.io.artifacts import atomic_dir, read_json, write_json
from rdpt.params import Params
from rdpt.selection.arms import arm_seeds, parse_arm

AVG = "avg"
BASELINE = "random"
# The paper's selection-metric ablation (arXiv 2512.20908, Table 1 note), in its order.
ABLATION = ("teacher_count", "longest", "teacher_ratio", "random", "min_teacher_count")


def mean_ci(values) -> dict[str, float]:
    """Mean and half-width of the 95% t-interval over seeds (NaN half-width with one seed)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "ci95": float("nan"), "n": n}
    half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / np.sqrt(n))
    return {"mean": mean, "ci95": half, "n": n}


def load_runs(runs_dir: str | Path, arms: list[str], seeds: list[int] | dict[str, list[int]], benchmarks: list[str],
              per_question: list | None = None, per_sample: list | None = None) -> pd.DataFrame:
    """Every run's evaluation: columns arm, seed, benchmark (incl. "avg"), accuracy (avg@k), k, pass_at_k (at
    that k), truncation_rate, n_responses. The "avg" row averages the benchmarks (k = 0 when their k differ).
    ``seeds``: one list for every arm, or arm -> its seeds (``select.contrast`` runs some arms at more seeds).
    ``per_question``, when given, receives one frame per run: arm, seed, benchmark, question_id, accuracy;
    ``per_sample`` one per run: arm, seed, benchmark, question_id, sample_idx, correct (for :func:`sampling_sd`)."""
    rows = []
    for arm in arms:
        for seed in (seeds[arm] if isinstance(seeds, dict) else seeds):
            df = _read_eval(Path(runs_dir) / arm / f"seed{seed}" / "eval.jsonl", benchmarks, "dvc repro select_run")
            if per_sample is not None and "sample_idx" in df.columns:
                per_sample.append(df[["benchmark", "question_id", "sample_idx", "correct"]]
                                  .astype({"question_id": str, "correct": float}).assign(arm=arm, seed=seed))
            if per_question is not None:
                acc = df.astype({"question_id": str}).groupby(["benchmark", "question_id"])["correct"].mean()
                per_question.append(acc.rename("accuracy").reset_index().assign(arm=arm, seed=seed))
            per_bench = []
            for bench in benchmarks:
                ev = eval_summary(df[df["benchmark"] == bench].astype({"question_id": str}))
                k = max(int(key) for key in ev["pass_at_k"])
                per_bench.append({"arm": arm, "seed": seed, "benchmark": bench, "accuracy": ev["avg_at_k"],
                                  "k": k, "pass_at_k": ev["pass_at_k"][str(k)],
                                  "truncation_rate": ev["truncation_rate"],
                                  "n_responses": int((df["benchmark"] == bench).sum())})
            ks = {r["k"] for r in per_bench}
            rows += per_bench + [{"arm": arm, "seed": seed, "benchmark": AVG,
                                  **{c: float(np.mean([r[c] for r in per_bench]))
                                     for c in ("accuracy", "pass_at_k", "truncation_rate")},
                                  "k": ks.pop() if len(ks) == 1 else 0,
                                  "n_responses": sum(r["n_responses"] for r in per_bench)}]
    return pd.DataFrame(rows)


def _read_eval(path: Path, benchmarks: list[str], rerun: str) -> pd.DataFrame:
    """One run's graded responses, checked: the columns the report reads and every benchmark present."""
    if not path.exists():
        raise RdptError(f"{path}: not found (run the selection runs: {rerun})")
    df = pd.read_json(path, lines=True, dtype=False)
    for column in ("benchmark", "question_id", "correct", "finish_reason"):
        if column not in df.columns:
            raise RdptError(f"{path}: missing column {column!r} ({rerun})")
    missing = sorted(set(benchmarks) - set(df["benchmark"]))
    if missing:
        raise RdptError(f"{path}: no response for benchmark {missing[0]!r} ({rerun})")
    return df


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per arm x benchmark: mean, ci95, n_seeds, and the paired delta vs random (delta, delta_ci95)."""
    out = []
    paired_avg: dict[str, list[float]] = {}
    has_baseline = BASELINE in set(runs["arm"])
    for (arm, bench), g in runs.groupby(["arm", "benchmark"], sort=False):
        row = {"arm": arm, "benchmark": bench, **{k: v for k, v in mean_ci(g["accuracy"]).items() if k != "n"},
               "n_seeds": len(g)}
        if "pass_at_k" in g.columns:  # mean over seeds: the protocol's other two numbers
            row |= {"k": int(g["k"].iloc[0]), "pass_at_k": float(g["pass_at_k"].mean()),
                    "truncation_rate": float(g["truncation_rate"].mean())}
        if has_baseline:
            base = runs[(runs["arm"] == BASELINE) & (runs["benchmark"] == bench)].set_index("seed")["accuracy"]
            paired = g.set_index("seed")["accuracy"] - base.reindex(g["seed"]).to_numpy()
            d = mean_ci(paired.dropna())
            row |= {"delta": d["mean"], "delta_ci95": d["ci95"]}
            if bench == AVG and arm != BASELINE:  # the power estimate's input
                paired_avg[arm] = paired.dropna().to_list()
        else:
            row |= {"delta": float("nan"), "delta_ci95": float("nan")}
        out.append(row)
    table = pd.DataFrame(out)
    table.attrs["paired_avg"] = paired_avg
    return table


def add_pooled(table: pd.DataFrame, pooled: dict[str, dict]) -> pd.DataFrame:
    """Columns pooled_lo / pooled_hi / pooled_ci95 (half-width): the two-stage bootstrap CI of the paired Δ."""
    table = table.copy()
    for col, key in (("pooled_lo", "lo"), ("pooled_hi", "hi"), ("pooled_ci95", "half_width")):
        table[col] = [pooled.get(a, {}).get(b, {}).get(key, float("nan"))
                      for a, b in zip(table["arm"], table["benchmark"])]
    return table


def pooled_delta(questions: pd.DataFrame, arm: str, n_boot: int = 2000, seed: int = 0) -> dict[str, dict]:
    """Paired Δ (arm − random) per benchmark and "avg", with a two-stage bootstrap 95% CI.

    Each resample draws seeds with replacement (training noise), then, within each drawn seed, questions with
    replacement (evaluation noise), the same question indices for both arms (paired). Unlike the t-interval over
    seeds it uses every question's outcome, so it narrows with more test questions as well as more seeds; with few
    seeds it rests on those seeds' spread (3 seeds: 10 distinct seed multisets), so read it with the t-interval.
    ``questions``: arm, seed, benchmark, question_id, accuracy (one row per run x question).
    """
    both = questions[questions["arm"].isin([arm, BASELINE])]
    wide = both.pivot_table(index=["benchmark", "seed", "question_id"], columns="arm", values="accuracy")
    if arm == BASELINE or wide.empty:
        return {}
    diff = (wide[arm] - wide[BASELINE]).dropna()
    rng = np.random.default_rng(seed)
    seeds = sorted(diff.index.get_level_values("seed").unique())
    benches = list(dict.fromkeys(diff.index.get_level_values("benchmark")))
    cells = {(b, s): diff.loc[(b, s)].to_numpy() for b in benches for s in seeds}
    point = {b: float(np.mean([cells[(b, s)].mean() for s in seeds])) for b in benches}
    draws = np.empty((n_boot, len(benches)))
    for i in range(n_boot):
        picked = rng.choice(seeds, size=len(seeds), replace=True)
        for j, b in enumerate(benches):
            draws[i, j] = np.mean([rng.choice(cells[(b, s)], size=len(cells[(b, s)])).mean() for s in picked])
    out = {}
    for j, b in enumerate([*benches, AVG]):
        values = draws[:, j] if b != AVG else draws.mean(axis=1)
        est = point[b] if b != AVG else float(np.mean(list(point.values())))
        lo, hi = np.percentile(values, [2.5, 97.5])
        out[b] = {"delta": est, "lo": float(lo), "hi": float(hi), "half_width": float(hi - lo) / 2,
                  "se": float(values.std(ddof=1))}
    return out


def sampling_sd(samples: pd.DataFrame, arm: str) -> float:
    """The part of one seed's paired Δ avg (arm − random) that evaluation sampling alone explains, as an sd.

    Given the two trained models, each benchmark's Δ is a mean over questions of a mean over k samples, so its
    sampling variance is ``sum_q (s2_arm + s2_random - 2 cov) / k_q / Q^2`` with the within-question (co)variances
    of the k outcomes; ``cov`` pairs sample j of both arms, which share the run seed's random numbers. The avg over
    B benchmarks divides the sum by B^2; the result is averaged over the seeds both arms ran. Needs k >= 2 (NaN
    otherwise). What is left of the per-seed spread is training noise: more samples or questions do not shrink it.
    ``samples``: arm, seed, benchmark, question_id, sample_idx, correct (one row per response)."""
    both = samples[samples["arm"].isin([arm, BASELINE])]
    wide = both.pivot_table(index=["seed", "benchmark", "question_id", "sample_idx"], columns="arm",
                            values="correct").dropna()
    if arm == BASELINE or wide.empty:
        return float("nan")
    a, b = wide[arm], wide[BASELINE]
    keys = ["seed", "benchmark", "question_id"]
    g = pd.DataFrame({"a": a, "b": b, "ab": a * b}).groupby(level=keys)
    k = g.size()
    if k.min() < 2:
        return float("nan")
    var_a, var_b = g["a"].var(ddof=1), g["b"].var(ddof=1)
    cov = (g["ab"].sum() - k * g["a"].mean() * g["b"].mean()) / (k - 1)
    per_q = (var_a + var_b - 2 * cov) / k  # the variance of this question's Δ of means
    per_bench = per_q.groupby(level=["seed", "benchmark"]).agg(lambda v: v.sum() / len(v) ** 2)
    per_seed = per_bench.groupby(level="seed").agg(lambda v: v.sum() / len(v) ** 2)
    return float(np.sqrt(max(per_seed.mean(), 0.0)))


def power(table: pd.DataFrame, pooled: dict[str, dict], target: float = 0.02, sampling: dict | None = None) -> dict:
    """How precise the paired Δ avg vs random is, and what it would take to reach ``target`` (half-width).

    ``sd_seed``: the spread over seeds of one arm's per-seed paired Δ avg, pooled over arms (it holds training and
    evaluation noise). From it: the t-interval half-width at this many seeds, the seeds a t-interval needs for
    ``target``, and the smallest true Δ detected with 80% power (two-sided 5% t-test over seeds). ``pooled_*``: the
    same from the two-stage bootstrap's standard error (``1.96 se`` and ``2.8 se``). ``sampling`` (arm -> its
    :func:`sampling_sd`) splits ``sd_seed`` into ``sampling_sd`` (pooled over arms) and ``training_sd``.
    """
    per_seed = table.attrs.get("paired_avg", {})
    dfs = [len(v) - 1 for v in per_seed.values() if len(v) > 1]
    n = max((len(v) for v in per_seed.values()), default=0)
    if not dfs or n < 2:
        return {}
    # pooled variance, each arm weighted by its degrees of freedom (contrast arms have more seeds)
    sd = float(np.sqrt(sum(np.var(v, ddof=1) * (len(v) - 1) for v in per_seed.values() if len(v) > 1) / sum(dfs)))
    need = next((k for k in range(2, 1000) if stats.t.ppf(0.975, k - 1) * sd / np.sqrt(k) <= target), None)
    mde = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / np.sqrt(n)
    ses = [p[AVG]["se"] for p in pooled.values() if AVG in p]
    se = float(np.mean(ses)) if ses else float("nan")
    out = {"n_seeds": n, "sd_seed": sd, "t_half_width": float(stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)),
           "seeds_for_target": need, "mde_80": float(mde), "target_half_width": target,
           "pooled_se": se, "pooled_half_width": 1.96 * se, "pooled_mde_80": 2.8 * se}
    parts = [v for v in (sampling or {}).values() if np.isfinite(v)]
    if parts:
        samp = float(np.sqrt(np.mean(np.square(parts))))
        out |= {"sampling_sd": samp, "training_sd": float(np.sqrt(max(sd**2 - samp**2, 0.0)))}
    return out


def metrics(table: pd.DataFrame, summary: dict, candidates: dict, extra: dict | None = None) -> dict:
    """Stable keys for `dvc exp show` / `dvc metrics diff`: accuracy.<benchmark>.<arm>.{mean,ci95,delta,...};
    ``extra`` (power, untrained) is merged at the top level."""
    acc: dict = {}
    for r in table.itertuples():
        acc.setdefault(r.benchmark, {})[r.arm] = {
            "mean": round(r.mean, 4), "ci95": _r(r.ci95), "delta_vs_random": _r(r.delta),
            "delta_ci95": _r(r.delta_ci95), "n_seeds": int(r.n_seeds)} | ({
                "delta_pooled_ci95": _r(r.pooled_ci95), "delta_pooled_lo": _r(r.pooled_lo),
                "delta_pooled_hi": _r(r.pooled_hi)} if "pooled_ci95" in table.columns else {}) | ({
                "k": int(r.k), "pass_at_k": _r(r.pass_at_k), "truncation_rate": _r(r.truncation_rate)}
                if "pass_at_k" in table.columns else {})
    selection = {arm: {k: _r(v) if isinstance(v, float) else v for k, v in s.items() if k != "doc"}
                 for arm, s in summary["arms"].items()}
    return {"accuracy": acc, "selection": selection,
            "candidates": {**candidates, "n_candidates_scored": summary["n_candidates"],
                           "n_dropped_no_sentence": summary["n_dropped_no_sentence"], "beta": summary["beta"],
                           **({"pool": summary["pool"]} if "pool" in summary else {})},
            **_rounded(extra or {})}


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return _r(value) if isinstance(value, float) else value


def _r(value, digits: int = 4):
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def _cell(mean: float, ci: float, scale: float = 100.0) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean * scale:.1f}" if not np.isfinite(ci) else f"{mean * scale:.1f} ± {ci * scale:.1f}"


def _delta(delta: float, ci: float) -> str:
    if not np.isfinite(delta):
        return "–"
    text = f"{delta * 100:+.1f}"
    return text if not np.isfinite(ci) else f"{text} ± {ci * 100:.1f}"


def table1_markdown(table: pd.DataFrame, arms: list[str], benchmarks: list[str],
                    untrained: dict[str, float] | None = None, power_info: dict | None = None) -> str:
    """The paper's Table 1 shape: strategy x benchmark accuracy (%), average, paired delta vs random (t-interval
    over seeds, and the seeds x questions bootstrap interval), the untrained student as a reference row."""
    t = table.set_index(["arm", "benchmark"])
    counts = {int(t.at[(arm, AVG), "n_seeds"]) for arm in arms}
    uneven = len(counts) > 1
    pooled = "pooled_ci95" in t.columns
    head = (["strategy", *benchmarks, "avg", "Δ avg vs random (t, seeds)"]
            + (["Δ avg 95% CI (bootstrap)"] if pooled else []) + (["seeds"] if uneven else []))
    over = "its seeds (column `seeds`)" if uneven else f"{counts.pop()} seeds"
    lines = [f"Accuracy (%) of the student fine-tuned on each selection: mean ± 95% t-interval over {over}; "
             "Δ = paired difference to `random` (same seed), with its t-interval over seeds and a two-stage "
             "(seeds, then questions) bootstrap interval.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for arm in arms:
        cells = [_cell(t.at[(arm, b), "mean"], t.at[(arm, b), "ci95"]) for b in [*benchmarks, AVG]]
        cells.append(_delta(t.at[(arm, AVG), "delta"], t.at[(arm, AVG), "delta_ci95"]))
        if pooled:
            lo, hi = t.at[(arm, AVG), "pooled_lo"], t.at[(arm, AVG), "pooled_hi"]
            cells.append("–" if not np.isfinite(lo) else f"[{lo * 100:+.1f}, {hi * 100:+.1f}]")
        if uneven:
            cells.append(str(int(t.at[(arm, AVG), "n_seeds"])))
        lines.append(f"| `{arm}` | " + " | ".join(cells) + " |")
    if untrained:
        cells = [f"{untrained[b] * 100:.1f}" for b in [*benchmarks, AVG]] + ["–"] * (len(head) - len(benchmarks) - 2)
        lines.append("| untrained student | " + " | ".join(cells) + " |")
        if BASELINE in arms:
            gain = t.at[(BASELINE, AVG), "mean"] - untrained[AVG]
            lines += ["", f"`random` beats the untrained student by {gain * 100:+.1f} points avg (the untrained row is "
                      "the original student under the same evaluation: benchmarks, sampling and grading)."]
    if power_info:
        p = power_info
        need = p["seeds_for_target"]
        lines += ["", f"Precision of Δ avg: per-seed paired Δ spread sd = {p['sd_seed'] * 100:.2f} points (pooled "
                  f"over arms); t-interval half-width at {p['n_seeds']} seeds {p['t_half_width'] * 100:.2f}, "
                  f"bootstrap half-width {p['pooled_half_width'] * 100:.2f}. A t-interval of ±"
                  f"{p['target_half_width'] * 100:.0f} needs {need if need else '> 1000'} seeds; smallest Δ detected "
                  f"with 80% power: {p['mde_80'] * 100:.1f} points (t over seeds), {p['pooled_mde_80'] * 100:.1f} "
                  "(bootstrap SE)."]
        if "sampling_sd" in p:
            lines[-1] += (f" Of that spread, evaluation sampling explains sd {p['sampling_sd'] * 100:.2f} (the k "
                          f"samples' within-question variance) and training sd {p['training_sd'] * 100:.2f}: more "
                          "samples per question shrink only the first.")
    if "pass_at_k" in t.columns:
        lines += ["", _protocol_markdown(t, arms, benchmarks)]
    return "\n".join(lines) + "\n"


def _protocol_markdown(t: pd.DataFrame, arms: list[str], benchmarks: list[str]) -> str:
    """Table 1's second part: pass@k at each benchmark's k and the truncation rate (%), means over seeds."""
    heads = [f"{b} pass@{int(t.at[(arms[0], b), 'k'])}" for b in benchmarks] + [f"{b} truncated" for b in benchmarks]
    lines = ["The accuracy above is avg@k (pass@1 over each benchmark's k samples per question). Unbiased pass@k "
             "(Chen et al. 2021) at that k and the share of responses cut at max_new_tokens (%), means over seeds:",
             "", "| strategy | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for arm in arms:
        cells = [f"{t.at[(arm, b), 'pass_at_k'] * 100:.1f}" for b in benchmarks]
        cells += [f"{t.at[(arm, b), 'truncation_rate'] * 100:.1f}" for b in benchmarks]
        lines.append(f"| `{arm}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_markdown(table: pd.DataFrame, summary: dict, arms: list[str]) -> str:
    """Selection-metric ablation: average accuracy with what each selection looks like (at the common beta)."""
    t = table.set_index(["arm", "benchmark"])
    lines = [f"Selection-metric ablation: average accuracy (%) and the selected responses' statistics "
             f"(Teacher sentences at beta = {summary['beta']}).", "",
             "| selection | avg acc. | Δ vs random | mean tokens | mean Teacher count | mean Teacher ratio |",
             "|---|---:|---:|---:|---:|---:|"]
    for arm in arms:
        s = summary["arms"][arm]
        lines.append(f"| `{arm}` | {_cell(t.at[(arm, AVG), 'mean'], t.at[(arm, AVG), 'ci95'])} | "
                     f"{_delta(t.at[(arm, AVG), 'delta'], t.at[(arm, AVG), 'delta_ci95'])} | {s['mean_tokens']:.1f} | "
                     f"{s['mean_teacher_count']:.2f} | {s['mean_teacher_ratio']:.3f} |")
    return "\n".join(lines) + "\n"


def beta_markdown(table: pd.DataFrame, summary: dict, arms: list[str]) -> str:
    """teacher_count at each beta the arms name (the common beta included): accuracy and selection size."""
    t = table.set_index(["arm", "benchmark"])
    lines = ["`teacher_count` at several beta (Teacher sentence: pT − pS > beta): average accuracy (%).", "",
             "| beta | arm | avg acc. | Δ vs random | mean Teacher count (at the arm's beta) |",
             "|---:|---|---:|---:|---:|"]
    for arm in sorted(arms, key=lambda a: summary["arms"][a]["beta"]):
        lines.append(f"| {summary['arms'][arm]['beta']:g} | `{arm}` | "
                     f"{_cell(t.at[(arm, AVG), 'mean'], t.at[(arm, AVG), 'ci95'])} | "
                     f"{_delta(t.at[(arm, AVG), 'delta'], t.at[(arm, AVG), 'delta_ci95'])} | "
                     f"{summary['arms'][arm].get('mean_teacher_count_own_beta', float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


def write_tables(table: pd.DataFrame, summary: dict, select_params, out_dir: Path,
                 untrained: dict[str, float] | None = None, power_info: dict | None = None) -> None:
    """table1.md (strategies without a beta override), ablation.md, beta.md, and accuracy.csv."""
    arms = list(select_params.arms)
    benchmarks = [b for b in table["benchmark"].unique() if b != AVG]
    plain = [a for a in arms if parse_arm(a)[1] is None]
    (out_dir / "table1.md").write_text(table1_markdown(table, plain, benchmarks, untrained, power_info))
    (out_dir / "ablation.md").write_text(ablation_markdown(table, summary, [a for a in ABLATION if a in plain]))
    betas = [a for a in arms if parse_arm(a)[0] == "teacher_count"]
    (out_dir / "beta.md").write_text(beta_markdown(table, summary, betas))
    table.to_csv(out_dir / "accuracy.csv", index=False, float_format="%.6g")


def plot_accuracy(table: pd.DataFrame, path: str | Path) -> None:
    """Accuracy per arm (bars: mean over seeds; error bars: 95% CI), one panel per benchmark + average."""
    benches = [b for b in table["benchmark"].unique() if b != AVG] + [AVG]
    arms = list(dict.fromkeys(table["arm"]))
    palette = sns.color_palette("colorblind", len(arms))
    with sns.axes_style("ticks"):
        fig = Figure(figsize=(3.2 * len(benches), 3.8))
        axes = fig.subplots(1, len(benches), sharey=False, squeeze=False)[0]
    for ax, bench in zip(axes, benches):
        t = table[table["benchmark"] == bench].set_index("arm").reindex(arms)
        x = np.arange(len(arms))
        err = np.nan_to_num(t["ci95"].to_numpy(float) * 100)
        ax.bar(x, t["mean"].to_numpy(float) * 100, yerr=err, color=palette, capsize=3, width=0.7)
        if BASELINE in arms:
            ax.axhline(float(t.at[BASELINE, "mean"]) * 100, color="#555555", linewidth=0.8, linestyle="--")
        ax.set_xticks(x, arms, rotation=60, ha="right", fontsize=8)
        ax.set_title(bench)
        ax.set_ylabel("accuracy (%)" if bench == benches[0] else "")
        sns.despine(ax=ax)
    fig.tight_layout()
    save_figure(fig, path)


def untrained_accuracy(eval_path: str | Path, benchmarks: list[str]) -> dict[str, float]:
    """The original student's avg@k per benchmark (and "avg") from its own evaluation run (``select_run`` without
    a selection: the same benchmarks, ``select.eval`` sampling and grading as every arm)."""
    df = _read_eval(Path(eval_path), benchmarks, "dvc repro select_untrained")
    acc = {b: eval_summary(df[df["benchmark"] == b].astype({"question_id": str}))["avg_at_k"] for b in benchmarks}
    return acc | {AVG: float(np.mean(list(acc.values())))}


def select_report(params: Params, selections_dir: str, runs_dir: str, candidates_report: str,
                  reports_dir: str, metrics_out: str, untrained_path: str | None = None) -> dict:
    """The select_report stage: accuracy per arm x benchmark (mean and 95% CI over seeds, paired delta vs random),
    Table 1, the metric ablation and the beta sweep::

        python stages/select_report.py --selections data/select/selections --runs data/select/runs \
            --candidates-report data/select/candidates.json --out reports/selection --metrics reports/selection.json \
            --untrained data/select/untrained/eval.jsonl
    """
    summary = read_json(Path(selections_dir) / "summary.json")
    benchmarks = list(params.data.benchmarks)
    frames: list[pd.DataFrame] = []
    samples: list[pd.DataFrame] = []
    arms = params.select.arms
    runs = load_runs(runs_dir, arms, {a: arm_seeds(params.select, a) for a in arms}, benchmarks, per_question=frames,
                     per_sample=samples)
    table = accuracy_table(runs)
    questions = pd.concat(frames, ignore_index=True)
    pooled = {arm: pooled_delta(questions, arm) for arm in params.select.arms if BASELINE in params.select.arms}
    table = add_pooled(table, pooled)
    sampling = ({a: sampling_sd(pd.concat(samples, ignore_index=True), a) for a in arms if a != BASELINE}
                if samples and BASELINE in arms else {})
    power_info = power(table, pooled, sampling=sampling)
    untrained = untrained_accuracy(untrained_path, benchmarks) if untrained_path else None
    extra = {"power": power_info} | ({"untrained": untrained} if untrained else {})
    if untrained and BASELINE in params.select.arms:
        extra["random_minus_untrained"] = float(table.set_index(["arm", "benchmark"]).at[(BASELINE, AVG), "mean"]
                                                - untrained[AVG])
    out = metrics(table, summary, read_json(candidates_report), extra)
    with atomic_dir(reports_dir) as tmp:
        write_tables(table, summary, params.select, tmp, untrained, power_info)
        plot_accuracy(table, tmp / "accuracy.png")
    write_json(metrics_out, out)
    return out
