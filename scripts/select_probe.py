"""Probe a selection-training budget before making it the default: a few arms x seeds of `select_run` under
params.yaml with some keys overridden, each into a scratch folder, then the spread of the paired Δ vs random.

The selections come from the workspace's `select_data` output (run `dvc repro select_data` first; for more
seeds, run ``stages/select_data.py`` with more ``select.seeds`` into another folder and pass ``--selections``), so
only ``select.train`` / ``generate`` keys make sense as overrides::

    python scripts/select_probe.py --set select.train.learning_rate=0.002 --out /tmp/probe/lr002
    python scripts/select_probe.py --set select.train.epochs=6 --set select.train.learning_rate=0.003 \\
        --arms random teacher_count --seeds 0 1 2 --untrained 0.08875 \\
        --out /tmp/probe/lr003 --summary reports/selection_probe/lr0.003_epochs6.json

~50 s per run on 2 cores. Prints and writes (``--summary``) each arm's avg accuracy per seed, the paired Δ of
every other arm vs ``random`` per seed, its mean, sd, 95% t half-width and the part of the sd that evaluation
sampling explains (``sampling_sd``, rdpt.selection.report.sampling_sd), and ``random`` minus the untrained
student (``--untrained`` avg accuracy, e.g. reports/selection.json's ``untrained.avg``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from rdpt.selection.report import load_runs, mean_ci, sampling_sd


def override(params: dict, dotted: str) -> None:
    key, _, raw = dotted.partition("=")
    if not raw:
        sys.exit(f"--set {dotted}: expected key=value")
    node = params
    *parents, leaf = key.split(".")
    for k in parents:
        if not isinstance(node.get(k), dict):
            sys.exit(f"--set {dotted}: {k} is not a section of params.yaml")
        node = node[k]
    if leaf not in node:
        sys.exit(f"--set {dotted}: {key} is not in params.yaml")
    node[leaf] = yaml.safe_load(raw)


def summarise(acc: dict[str, list[float]], untrained: float | None) -> dict:
    out: dict = {"accuracy_avg": acc}
    base = np.array(acc["random"])
    for arm, vals in acc.items():
        if arm == "random":
            continue
        d = np.array(vals) - base
        ci = mean_ci(d)  # Table 1's t-interval over seeds
        out.setdefault("delta_vs_random", {})[arm] = {
            "per_seed": d.round(4).tolist(), "mean": ci["mean"],
            "sd": float(d.std(ddof=1)) if len(d) > 1 else float("nan"),
            "t_half_width": ci["ci95"] if len(d) > 1 else None}
    out["random_sd"] = float(base.std(ddof=1)) if len(base) > 1 else None
    if untrained is not None:
        out["random_minus_untrained"] = float(base.mean() - untrained)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="key=value (YAML value), repeatable")
    ap.add_argument("--arms", nargs="+", default=["random", "teacher_count"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--selections", default="data/select/selections",
                    help="select_data's output folder (<arm>/seed<s>.jsonl); another one for more seeds")
    ap.add_argument("--out", required=True, help="scratch folder (params.yaml + one run folder per arm/seed)")
    ap.add_argument("--untrained", type=float, default=None, help="the untrained student's avg accuracy")
    ap.add_argument("--summary", default=None, help="also write the summary JSON here")
    args = ap.parse_args()
    if "random" not in args.arms:
        sys.exit("--arms must include random (the paired baseline)")

    params = yaml.safe_load(Path(args.params).read_text())
    for s in args.sets:
        override(params, s)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    student = params["models"]["student"]["path"]
    acc: dict[str, list[float]] = {a: [] for a in args.arms}
    for seed in args.seeds:
        for arm in args.arms:
            run = out / arm / f"seed{seed}"
            if not (run / "train_report.json").exists():  # a rerun resumes
                subprocess.run([sys.executable, "stages/select_run.py", "--params", str(out / "params.yaml"),
                                "--student", student, "--selection", f"{args.selections}/{arm}/seed{seed}.jsonl",
                                "--seed", str(seed), "--out", str(run)], check=True)
            report = json.loads((run / "train_report.json").read_text())
            acc[arm].append(float(np.mean(list(report["accuracy"].values()))))
            print(f"{arm} seed{seed}: avg {acc[arm][-1]:.4f} ({report['steps']} steps)", flush=True)
    summary = {"overrides": args.sets, "seeds": args.seeds, **summarise(acc, args.untrained)}
    samples: list = []  # how much of the Δ spread evaluation sampling explains (needs k >= 2)
    load_runs(out, args.arms, args.seeds, list(params["data"]["benchmarks"]), per_sample=samples)
    for arm, d in summary.get("delta_vs_random", {}).items():
        d["sampling_sd"] = sampling_sd(pd.concat(samples, ignore_index=True), arm)
    print(json.dumps(summary, indent=1))
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
