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
from rdpt.selection.arms import parse_arm

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


def load_runs(runs_dir: str | Path, arms: list[str], seeds: list[int], benchmarks: list[str]) -> pd.DataFrame:
    """Every run's evaluation: columns arm, seed, benchmark (incl. "avg"), accuracy (avg@k), k, pass_at_k (at
    that k), truncation_rate, n_responses. The "avg" row averages the benchmarks (k = 0 when their k differ)."""
    rows = []
    for arm in arms:
        for seed in seeds:
            path = Path(runs_dir) / arm / f"seed{seed}" / "eval.jsonl"
            if not path.exists():
                raise RdptError(f"{path}: not found (run the selection runs: dvc repro select_run)")
            df = pd.read_json(path, lines=True, dtype=False)
            for column in ("benchmark", "question_id", "correct", "finish_reason"):
                if column not in df.columns:
                    raise RdptError(f"{path}: missing column {column!r} (rerun select_run)")
            missing = sorted(set(benchmarks) - set(df["benchmark"]))
            if missing:
                raise RdptError(f"{path}: no response for benchmark {missing[0]!r} (rerun select_run)")
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


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per arm x benchmark: mean, ci95, n_seeds, and the paired delta vs random (delta, delta_ci95)."""
    out = []
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
        else:
            row |= {"delta": float("nan"), "delta_ci95": float("nan")}
        out.append(row)
    return pd.DataFrame(out)


def metrics(table: pd.DataFrame, summary: dict, candidates: dict) -> dict:
    """Stable keys for `dvc exp show` / `dvc metrics diff`: accuracy.<benchmark>.<arm>.{mean,ci95,delta,...}."""
    acc: dict = {}
    for r in table.itertuples():
        acc.setdefault(r.benchmark, {})[r.arm] = {
            "mean": round(r.mean, 4), "ci95": _r(r.ci95), "delta_vs_random": _r(r.delta),
            "delta_ci95": _r(r.delta_ci95), "n_seeds": int(r.n_seeds)} | ({
                "k": int(r.k), "pass_at_k": _r(r.pass_at_k), "truncation_rate": _r(r.truncation_rate)}
                if "pass_at_k" in table.columns else {})
    selection = {arm: {k: _r(v) if isinstance(v, float) else v for k, v in s.items() if k != "doc"}
                 for arm, s in summary["arms"].items()}
    return {"accuracy": acc, "selection": selection,
            "candidates": {**candidates, "n_candidates_scored": summary["n_candidates"],
                           "n_dropped_no_sentence": summary["n_dropped_no_sentence"], "beta": summary["beta"]}}


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


def table1_markdown(table: pd.DataFrame, arms: list[str], benchmarks: list[str]) -> str:
    """The paper's Table 1 shape: strategy x benchmark accuracy (%), average, paired delta vs random."""
    t = table.set_index(["arm", "benchmark"])
    n = int(t["n_seeds"].max())
    head = ["strategy", *benchmarks, "avg", "Δ avg vs random"]
    lines = [f"Accuracy (%) of the student fine-tuned on each selection: mean ± 95% CI over {n} seeds; "
             "Δ = paired difference to `random` (same seed).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for arm in arms:
        cells = [_cell(t.at[(arm, b), "mean"], t.at[(arm, b), "ci95"]) for b in [*benchmarks, AVG]]
        delta = _delta(t.at[(arm, AVG), "delta"], t.at[(arm, AVG), "delta_ci95"])
        lines.append(f"| `{arm}` | " + " | ".join(cells) + f" | {delta} |")
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


def write_tables(table: pd.DataFrame, summary: dict, select_params, out_dir: Path) -> None:
    """table1.md (strategies without a beta override), ablation.md, beta.md, and accuracy.csv."""
    arms = list(select_params.arms)
    benchmarks = [b for b in table["benchmark"].unique() if b != AVG]
    plain = [a for a in arms if parse_arm(a)[1] is None]
    (out_dir / "table1.md").write_text(table1_markdown(table, plain, benchmarks))
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


def select_report(params: Params, selections_dir: str, runs_dir: str, candidates_report: str,
                  reports_dir: str, metrics_out: str) -> dict:
    """The select_report stage: accuracy per arm x benchmark (mean and 95% CI over seeds, paired delta vs random),
    Table 1, the metric ablation and the beta sweep::

        python stages/select_report.py --selections data/select/selections --runs data/select/runs \
            --candidates-report data/select/candidates.json --out reports/selection --metrics reports/selection.json
    """
    summary = read_json(Path(selections_dir) / "summary.json")
    runs = load_runs(runs_dir, params.select.arms, params.select.seeds, list(params.data.benchmarks))
    table = accuracy_table(runs)
    out = metrics(table, summary, read_json(candidates_report))
    with atomic_dir(reports_dir) as tmp:
        write_tables(table, summary, params.select, tmp)
        plot_accuracy(table, tmp / "accuracy.png")
    write_json(metrics_out, out)
    return out
