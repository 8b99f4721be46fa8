"""How much the score variants move the toy world's classes and selections (docs/scoring.md, "Score variants").

Reads what ``dvc repro`` left under ``data/`` and recomputes, for every aggregate of
:data:`rdpt.provenance.rules.AGGREGATES`, the class shares per benchmark (at the thresholds the classify stage
used, from ``data/calibration.json``, else params) and, on the selection candidates, which candidate every
beta-dependent arm picks (at ``select.beta`` or the arm's own beta) against the pick under ``mean``::

    python benchmarks/score_variants.py            # a table on stdout
    python benchmarks/score_variants.py --json     # one JSON object

Nothing is scored: the variants are computed from the per-sentence columns the score stage wrote in its one
pass. Exits 2 when a ``scores.parquet`` lacks them (scores from before the variants: rerun ``dvc repro``), and 1
when an artifact is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rdpt import RdptError  # noqa: E402
from rdpt.io.artifacts import OPTIONAL_COLUMNS, SCHEMAS, read_table  # noqa: E402
from rdpt.params import load_params  # noqa: E402
from rdpt.provenance import ROLES  # noqa: E402
from rdpt.provenance.rules import AGGREGATES, CLASSES, UNSCORED, classify_frame  # noqa: E402
from rdpt.selection.arms import parse_arm  # noqa: E402
from rdpt.selection.strategies import STRATEGIES, candidate_features, select  # noqa: E402

STAT_COLUMNS = ("n_tokens", "sum_logprob", "mean_logprob", "sum_rank", *OPTIONAL_COLUMNS["scores"])


class MissingColumns(Exception):
    pass


def _scores(path: Path, role: str) -> pd.DataFrame:
    table = read_table(path, "scores")
    lacking = [c for c in OPTIONAL_COLUMNS["scores"] if c not in table.columns]
    if lacking:
        raise MissingColumns(f"{path} lacks {', '.join(lacking)}: scored before the score variants existed "
                             "(rerun the score stages: dvc repro)")
    return table[[*SCHEMAS["scores"], *OPTIONAL_COLUMNS["scores"]]].rename(
        columns={c: f"{c}_{role}" for c in STAT_COLUMNS})


def _join(sentences: pd.DataFrame, score_dir: Path, roles) -> pd.DataFrame:
    for role in roles:
        sentences = sentences.merge(_scores(score_dir / role / "scores.parquet", role),
                                    on=["response_id", "sentence_idx"], how="left", validate="one_to_one")
        if sentences[f"n_tokens_{role}"].isna().any():
            raise RdptError(f"{score_dir / role}: a sentence has no score (stale artifacts? dvc repro)")
    return sentences


def class_shares(data: Path, params) -> dict:
    """Per aggregate and benchmark: n scored, class shares, and how many sentences change class vs mean."""
    df = _join(read_table(data / "sentences.parquet", "sentences"), data / "scores", ROLES)
    alpha, beta = params.classify.alpha, params.classify.beta
    calibration = data / "calibration.json"
    if calibration.exists():  # the thresholds the classify stage used (alpha/beta may be 'auto')
        used = json.loads(calibration.read_text())
        alpha, beta = used["alpha_used"], used["beta_used"]
    if alpha == "auto" or beta == "auto":
        raise RdptError(f"{calibration}: not found, and classify.alpha/beta are 'auto' (run dvc repro)")
    labels = {agg: classify_frame(df, float(alpha), float(beta), agg)["cls"].to_numpy() for agg in AGGREGATES}
    out: dict = {"alpha": float(alpha), "beta": float(beta), "benchmarks": {}}
    for bench in sorted(df["benchmark"].unique()):
        rows = (df["benchmark"] == bench).to_numpy()
        per = {}
        for agg, cls in labels.items():
            scored = cls[rows][cls[rows] != UNSCORED]
            per[agg] = {"n_scored": int(len(scored)),
                        **{c: float((scored == c).mean()) if len(scored) else float("nan") for c in CLASSES},
                        "n_changed_vs_mean": int((cls[rows] != labels["mean"][rows]).sum())}
        out["benchmarks"][bench] = per
    return out


def selections(data: Path, params) -> dict:
    """Per aggregate and beta-dependent arm: questions whose pick differs from the pick under mean (seed 0)."""
    sel = data / "select"
    cands = read_table(sel / "candidates.jsonl", "generations")
    sents = _join(read_table(sel / "sentences.parquet", "sentences")[["response_id", "sentence_idx"]],
                  sel / "scores", ("teacher", "student"))
    cands = cands[cands["response_id"].isin(set(sents["response_id"]))]
    seed = params.select.seeds[0]
    out: dict = {"n_questions": int(cands["question_id"].nunique()), "seed": seed, "arms": {}}
    chosen_files = sel / "selections"
    for arm in params.select.arms:
        strategy, arm_beta = parse_arm(arm)
        if not STRATEGIES[strategy].uses_beta:
            continue  # random, grape, longest, rsr: no sentence label, no change
        beta = params.select.beta if arm_beta is None else arm_beta
        picks = {agg: select(candidate_features(sents, cands, beta, agg), strategy, seed).set_index("question_id")
                 ["response_id"] for agg in AGGREGATES}
        per = {agg: int((p != picks["mean"].loc[p.index]).sum()) for agg, p in picks.items()}
        entry: dict = {"beta": beta, "n_changed_vs_mean": per}
        stored = chosen_files / arm / f"seed{seed}.jsonl"
        if stored.exists():  # the stage's own pick, as a check that `mean` here is what the pipeline chose
            ids = [json.loads(line)["response_id"] for line in stored.read_text().splitlines() if line.strip()]
            entry["mean_matches_stored_selection"] = sorted(ids) == sorted(picks["mean"].tolist())
        out["arms"][arm] = entry
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data"))
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    data = Path(args.data)
    try:
        params = load_params(args.params)
        result = {"aggregates": list(AGGREGATES), "classes": class_shares(data, params)}
        result["selection"] = selections(data, params) if (data / "select" / "scores").exists() else None
    except MissingColumns as err:
        print(f"score_variants: {err}", file=sys.stderr)
        return 2
    except RdptError as err:
        print(f"score_variants: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    c = result["classes"]
    print(f"class shares (alpha {c['alpha']:g}, beta {c['beta']:g}); changed = sentences whose class differs from mean")
    for bench, per in c["benchmarks"].items():
        print(f"\n  {bench}")
        print(f"    {'aggregate':<11} {'scored':>6} " + " ".join(f"{k:>8}" for k in CLASSES) + f" {'changed':>8}")
        for agg, row in per.items():
            print(f"    {agg:<11} {row['n_scored']:>6} " + " ".join(f"{row[k]:>8.3f}" for k in CLASSES)
                  + f" {row['n_changed_vs_mean']:>8}")
    s = result["selection"]
    if s is None:
        print("\nselection: no data/select/scores (the select stages have not run)")
    else:
        print(f"\nselection: questions whose pick differs from mean's ({s['n_questions']} questions, seed {s['seed']})")
        for arm, entry in s["arms"].items():
            moved = ", ".join(f"{a} {n}" for a, n in entry["n_changed_vs_mean"].items() if a != "mean")
            check = entry.get("mean_matches_stored_selection")
            print(f"  {arm:<22} beta {entry['beta']:g}: {moved}"
                  + ("" if check is None else f"   (mean = stored selection: {check})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
