"""The correlate stage: provenance vs correctness — accuracy, class shares, position-wise curves and their areas
(:mod:`rdpt.analysis.shares`), the quantified correlation (:mod:`rdpt.analysis.stats`), figures and tables
(:mod:`rdpt.analysis.figures`), the classification thresholds used, and the evaluation protocol of every model
(avg@k, pass@k, truncation rate: :mod:`rdpt.analysis.pass_at_k`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rdpt import RdptError
from rdpt.analysis import figures as report
from rdpt.analysis import shares as stats
from rdpt.analysis import stats as quant
from rdpt.analysis.pass_at_k import evaluation
from rdpt.analysis.shares import json_number
from rdpt.io.artifacts import read_json, read_table, write_json
from rdpt.params import Params
from rdpt.provenance import ROLES
from rdpt.provenance.rules import CLASSES


def correlate(params: Params, classified_path: str, graded_path: str, cost_dirs: dict[str, str],
              reports_dir: str, calibration_path: str | None = None) -> dict:
    """Accuracy, class shares, position-wise curves and their areas, figures and the shares table.

    Also the quantified correlation and, with ``calibration_path`` (from classify), the thresholds used and
    the beta sweep: see :func:`_quantified`::

        python stages/correlate.py --classified data/classified.parquet --graded data/graded.parquet \\
            --scores data/scores --calibration data/calibration.json --reports reports
    """
    sents = read_table(classified_path, "classified")
    graded = read_table(graded_path, "graded")
    traced = graded[graded["model"] == "distilled"]
    if traced.empty:
        raise RdptError(f"{graded_path}: no graded response of the distilled model (rerun evaluate: dvc repro)")
    unknown = ~sents["response_id"].isin(traced["response_id"]).to_numpy()
    if unknown.any():
        i = int(unknown.argmax())
        raise RdptError(f"{classified_path}: row {i}: response_id {sents['response_id'].iloc[i]!r} is not a "
                        f"distilled response in {graded_path} (stale file? dvc repro)")
    # A trace cut at max_new_tokens never reaches its answer: kept, it would count as "incorrect" only
    # because it is long. Excluded by default, and always counted.
    truncated = traced["finish_reason"] == "length"
    n_truncated = traced[truncated].groupby("benchmark").size()
    if params.correlate.exclude_truncated:
        traced = traced[~truncated]
        sents = sents[sents["response_id"].isin(traced["response_id"])]
    n_sent = sents.groupby("response_id").size()
    responses = traced[["response_id", "benchmark", "correct"]].assign(
        n_sentences=lambda d: d["response_id"].map(n_sent).fillna(0).astype(int))

    reports = Path(reports_dir)
    shares = stats.class_shares(sents, responses)
    curves = stats.position_curves(sents, responses, params.correlate.min_responses)
    area = stats.area_between(curves)
    metrics = stats.metrics(sents, responses, shares, area)
    early = stats.early_minus_late(curves)
    for bench, entry in metrics.items():
        entry["early_minus_late"] = early.get(bench, dict.fromkeys(CLASSES))
        entry["n_truncated"] = int(n_truncated.get(bench, 0))
        entry["n_excluded_truncated"] = entry["n_truncated"] if params.correlate.exclude_truncated else 0
    accuracy = (graded.groupby(["benchmark", "model"])["correct"].mean().round(4)
                .unstack("model").reindex(columns=list(ROLES)))
    payload = {"accuracy": {b: {m: json_number(v) for m, v in row.items()} for b, row in accuracy.iterrows()},
               "provenance": metrics,
               # the evaluation protocol: avg@k (= pass@1), unbiased pass@k, truncation rate per benchmark and model
               "evaluation": {b: {m: by_model[m] for m in ROLES if m in by_model}
                              for b, by_model in evaluation(graded).items()},
               "truncated": {m: int(n) for m, n in graded.assign(t=graded["finish_reason"] == "length")
                             .groupby("model")["t"].sum().items()},
               # responses whose sampled bytes were not valid UTF-8 (decoded with U+FFFD); each model's own
               # responses are scored on their sampled ids, so p_D is still the probability of its sample
               "replacement_char": {m: int(n) for m, n in graded.groupby("model")["replacement_char"].sum().items()}}
    payload.update(_quantified(params, sents, responses, traced, reports, calibration_path))
    write_json(reports / "metrics.json", payload)
    cost = {role: read_json(Path(d) / "cost.json") for role, d in cost_dirs.items()}
    write_json(reports / "cost.json", cost)

    (reports / "tables").mkdir(parents=True, exist_ok=True)
    (reports / "tables" / "class_shares.md").write_text(stats.shares_table_markdown(shares))
    curves_out = reports / "plots" / "position_curves.csv"
    curves_out.parent.mkdir(parents=True, exist_ok=True)
    curves.to_csv(curves_out, index=False, float_format="%.6g")

    figures = reports / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    example = params.correlate.example or report.pick_example(sents, responses)
    one = sents[sents["response_id"] == example]
    if one.empty:
        raise RdptError(f"correlate.example: response {example!r} has no classified sentence "
                        "(or it is truncated and correlate.exclude_truncated is on)")
    report.plot_action_split(one, figures / "action_split.png", title=f"Action split: {example}")
    for bench in sorted(responses["benchmark"].unique()):
        report.plot_position_curves(curves, area, figures / f"position_curves_{bench}.png", bench)
    # where the curves above stop: responses reaching each index vs correlate.min_responses
    report.plot_index_counts(stats.index_counts(sents, responses, params.correlate.min_responses),
                             params.correlate.min_responses, figures / "index_counts.png",
                             sorted(responses["benchmark"].unique()))
    return payload


def _quantified(params: Params, sents: pd.DataFrame, responses: pd.DataFrame, traced: pd.DataFrame, reports: Path,
                calibration_path: str | None) -> dict:
    """Metrics blocks ``correlation`` (:mod:`rdpt.analysis.stats`) and ``classify`` (thresholds used,
    :mod:`rdpt.provenance.calibrate`); writes tables/correlation.md and, given a calibration,
    plots/beta_sensitivity.csv and its figure."""
    cfg = params.correlate
    units = quant.response_units(sents, responses.merge(traced[["response_id", "question_id", "n_tokens"]],
                                                        on="response_id", how="left"))
    table = quant.correlation_table(units, cfg.n_bootstrap, cfg.seed, cfg.reference)
    perm = quant.area_permutation_test(sents, units, cfg.min_responses, cfg.n_permutations, cfg.seed,
                                       cfg.permutation)
    (reports / "tables").mkdir(parents=True, exist_ok=True)
    (reports / "tables" / "correlation.md").write_text(quant.correlation_markdown(table, perm, cfg.n_bootstrap))
    out = {"correlation": quant.correlation_metrics(table, perm, cfg.n_bootstrap)}
    if calibration_path is not None:
        calibration = read_json(calibration_path)
        sweep = pd.DataFrame(calibration.pop("beta_sweep"))
        out["classify"] = calibration
        csv = reports / "plots" / "beta_sensitivity.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        sweep.to_csv(csv, index=False, float_format="%.6g")
        report.plot_beta_sensitivity(sweep, calibration["alpha_used"], calibration["beta_used"],
                                     reports / "figures" / "beta_sensitivity.png")
    return out
