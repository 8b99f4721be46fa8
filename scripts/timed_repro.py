"""Run `dvc repro` stage by stage and record each stage's wall time (DVC itself records none).

    python scripts/timed_repro.py correlate viewer --out reports/real-cpu/timing.json

The stages are the targets and their ancestors in DVC's graph, dependencies first; each runs as
`dvc repro --single-item <stage>`, so a failure stops at that stage with DVC's message, and the JSON
written so far names what ran. The machine (CPU model, cores, load average at start and end) is
recorded beside the times: a busy machine says so.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import click


def ordered_stages(targets: tuple[str, ...]) -> list[str]:
    """The targets and every stage they depend on, dependencies first (`dvc repro --dry` stops at a missing dep)."""
    import networkx as nx
    from dvc.repo import Repo

    repo = Repo()
    wanted = {s.addressing for t in (targets or (None,)) for s in repo.stage.collect(t, with_deps=True)}
    # DVC's graph points from a stage to the stages it depends on: reversed topological order = dependencies first
    return [s.addressing for s in reversed(list(nx.topological_sort(repo.index.graph))) if s.addressing in wanted]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write(out: Path, record: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, out)


@click.command()
@click.argument("targets", nargs=-1)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSON: seconds per stage, total, machine.")
def main(targets: tuple[str, ...], out: str) -> None:
    stages = ordered_stages(targets)
    record = {"targets": list(targets), "cpu": cpu_model(), "cores": os.cpu_count(),
              "load_avg_start": list(os.getloadavg()), "stages_s": {}, "total_s": 0.0}
    for name in stages:
        click.echo(f"[timed_repro] {name} ...", err=True)
        start = time.perf_counter()
        proc = subprocess.run(["dvc", "repro", "--single-item", name], check=False)
        record["stages_s"][name] = round(time.perf_counter() - start, 1)
        record["total_s"] = round(sum(record["stages_s"].values()), 1)
        write(Path(out), record)
        if proc.returncode != 0:
            sys.exit(f"stage {name} failed ({proc.returncode}); times so far in {out}")
    record["load_avg_end"] = list(os.getloadavg())
    write(Path(out), record)
    click.echo(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
