"""Rerun the toy world's provenance pipeline for several ``toy.seed`` values; summarise the headline numbers.

Each seed runs in a scratch copy of the repository (code, dvc.yaml, params.yaml with ``toy.seed`` and
``toy_alt.seed`` set), ``dvc repro correlate``, and its ``reports/metrics.json`` is kept under
``<out>/seed<k>/``. The workspace's own ``reports/metrics.json`` stands for the seed params.yaml names
(no rerun). Then ``<out>/summary.json`` and ``summary.md`` hold mean, sd and range over seeds
(:mod:`rdpt.analysis.seeds`)::

    python scripts/seed_sweep.py --seeds 1 2 --out reports/seeds       # ~7 min per seed on 2 cores
    python scripts/seed_sweep.py --seeds 1 2 --out reports/seeds --compare "AVX2 run=reports/seeds/avx2/metrics.json"

Timings are printed per seed (wall clock of the whole ``dvc repro``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rdpt.analysis.seeds import compare, compare_markdown, summarize, summary_markdown  # noqa: E402


def run_seed(seed: int, target: str) -> tuple[dict, float]:
    with tempfile.TemporaryDirectory(prefix=f"rdpt-seed{seed}-") as tmp:
        repo = Path(tmp)
        for name in ("dvc.yaml", ".dvcignore"):
            shutil.copy(ROOT / name, repo / name)
        for folder in ("stages", "rdpt"):
            shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["toy"]["seed"] = seed
        params["toy_alt"]["seed"] = seed
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = {**os.environ, "PYTHONPATH": str(repo),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=repo, check=True, env=env)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "dvc", "repro", target], cwd=repo, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode:
            sys.exit(f"seed {seed}: dvc repro failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return json.loads((repo / "reports" / "metrics.json").read_text()), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="toy.seed values to run")
    parser.add_argument("--out", default="reports/seeds", help="folder for per-seed metrics and the summary")
    parser.add_argument("--target", default="correlate", help="dvc repro target (default: the provenance part)")
    parser.add_argument("--compare", metavar="LABEL=METRICS_JSON", default=None,
                        help="another run's metrics.json (e.g. from another CPU): is it inside the seeds' spread?")
    args = parser.parse_args()
    out = ROOT / args.out
    base = yaml.safe_load((ROOT / "params.yaml").read_text())["toy"]["seed"]
    runs = {base: json.loads((ROOT / "reports" / "metrics.json").read_text())}
    for seed in args.seeds:
        folder = out / f"seed{seed}"
        if (folder / "metrics.json").is_file():  # kept from an earlier sweep: rerun by deleting the folder
            runs[seed] = json.loads((folder / "metrics.json").read_text())
            continue
        metrics, wall = run_seed(seed, args.target)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"seed {seed}: dvc repro {args.target} took {wall / 60:.1f} min", flush=True)
        runs[seed] = metrics
    summary = summarize(runs)
    (out / "summary.json").write_text(json.dumps({"seeds": sorted(runs), "metrics": summary}, indent=1) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary, sorted(runs)))
    print(f"wrote {out / 'summary.json'} and summary.md over seeds {sorted(runs)}")
    if args.compare:
        label, _, path = args.compare.partition("=")
        comparison = compare(summary, json.loads(Path(path).read_text()))
        (out / "compare.json").write_text(json.dumps({"label": label, "keys": comparison}, indent=1) + "\n")
        (out / "compare.md").write_text(compare_markdown(comparison, label))
        print(f"wrote {out / 'compare.md'}")


if __name__ == "__main__":
    main()
