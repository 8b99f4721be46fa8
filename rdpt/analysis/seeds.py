"""Headline numbers over several toy-world seeds: mean, spread and range of each, from one metrics.json per seed.

A toy model trained from scratch follows a trajectory that the CPU's kernels decide (docs/reproducibility.md),
so one run's numbers are one draw. ``scripts/seed_sweep.py`` reruns the provenance pipeline for each
``toy.seed`` and this module summarises the runs; the README quotes the summary, and tests check the
conclusions (signs over seeds), never one machine's bytes::

    python -c "from rdpt.analysis.seeds import headline; import json; \\
        print(headline(json.load(open('reports/metrics.json')))['accuracy/toy_easy/distilled'])"
"""

from __future__ import annotations

import math

import numpy as np

from rdpt.provenance.rules import CLASSES


def headline(metrics: dict) -> dict[str, float | None]:
    """The flat headline of one run's reports/metrics.json: ``kind/benchmark/name`` -> value."""
    out: dict[str, float | None] = {}
    for bench, by_model in metrics["accuracy"].items():
        for model, value in by_model.items():
            out[f"accuracy/{bench}/{model}"] = value
    for bench, prov in metrics["provenance"].items():
        for cls in CLASSES:
            out[f"share/{bench}/{cls}"] = prov["share"]["all"].get(cls)
            out[f"area/{bench}/{cls}"] = prov["area"].get(cls, {}).get("signed")
            out[f"early_minus_late/{bench}/{cls}"] = (prov.get("early_minus_late") or {}).get(cls)
    for bench, corr in metrics.get("correlation", {}).items():
        for cls in CLASSES:
            entry = corr["point_biserial"].get(cls, {})
            out[f"r/{bench}/{cls}"] = entry.get("r")
            out[f"r_ci_low/{bench}/{cls}"] = entry.get("ci_low")
            out[f"r_ci_high/{bench}/{cls}"] = entry.get("ci_high")
    return out


def summarize(runs: dict[int, dict]) -> dict[str, dict]:
    """Per headline key: mean, sd (ddof 1), min, max over seeds and the per-seed values (``runs``: seed -> metrics)."""
    flat = {seed: headline(m) for seed, m in sorted(runs.items())}
    keys = sorted({k for h in flat.values() for k in h})
    out = {}
    for key in keys:
        values = {seed: h.get(key) for seed, h in flat.items()}
        xs = np.array([v for v in values.values() if v is not None and not math.isnan(v)], dtype=float)
        out[key] = {"mean": float(xs.mean()) if len(xs) else None,
                    "sd": float(xs.std(ddof=1)) if len(xs) > 1 else None,
                    "min": float(xs.min()) if len(xs) else None, "max": float(xs.max()) if len(xs) else None,
                    "n": int(len(xs)), "per_seed": values}
    return out


def summary_markdown(summary: dict[str, dict], seeds: list[int]) -> str:
    """A table of the headline keys: mean ± sd [min, max] over the seeds."""
    def cell(x):
        return "—" if x is None else f"{x:.3f}"

    lines = [f"Seeds: {', '.join(map(str, seeds))} (toy.seed; everything else at its defaults).", "",
             "| metric | mean ± sd | min | max |", "|---|---:|---:|---:|"]
    for key, s in summary.items():
        if key.startswith(("r_ci_low/", "r_ci_high/")):
            continue
        sd = "" if s["sd"] is None else f" ± {s['sd']:.3f}"
        lines.append(f"| `{key}` | {cell(s['mean'])}{sd} | {cell(s['min'])} | {cell(s['max'])} |")
    return "\n".join(lines) + "\n"


def compare(summary: dict[str, dict], other: dict, k: float = 2.0) -> dict[str, dict]:
    """Does another run (``other``: its metrics.json, e.g. from another CPU) land inside the seeds' spread?

    Per headline key: its value, the band ``mean ± k·sd`` over the seeds, and ``inside``: whether the value is in the
    band widened to the seeds' own [min, max] (with 3 seeds the sd is rough, so the observed range also counts)."""
    values = headline(other)
    out = {}
    for key, s in summary.items():
        v = values.get(key)
        if v is None or s["mean"] is None or s["sd"] is None or (isinstance(v, float) and math.isnan(v)):
            continue
        lo = min(s["mean"] - k * s["sd"], s["min"])
        hi = max(s["mean"] + k * s["sd"], s["max"])
        out[key] = {"value": float(v), "lo": lo, "hi": hi, "inside": bool(lo <= v <= hi)}
    return out


def compare_markdown(comparison: dict[str, dict], label: str, k: float = 2.0) -> str:
    """The comparison as a table, with the count of keys inside the band first."""
    keys = [key for key in comparison if not key.startswith(("r_ci_low/", "r_ci_high/"))]
    inside = sum(comparison[key]["inside"] for key in keys)
    lines = [f"{label}: {inside} of {len(keys)} headline numbers inside the seeds' band (mean ± {k:g} sd, widened to "
             "the seeds' range).", "", "| metric | value | band | inside |", "|---|---:|---:|---|"]
    for key in keys:
        c = comparison[key]
        inside = "yes" if c["inside"] else "NO"
        lines.append(f"| `{key}` | {c['value']:.3f} | [{c['lo']:.3f}, {c['hi']:.3f}] | {inside} |")
    return "\n".join(lines) + "\n"
