"""Run `dvc repro` stage by stage and record each stage's wall time (DVC itself records none).

    python scripts/timed_repro.py correlate viewer --out reports/real-cpu/timing.json

The stages come from `dvc repro --dry` (DVC's own order); each runs as `dvc repro --single-item <stage>`,
so a failure stops at that stage with DVC's message, and the JSON written so far names what ran. The machine
(CPU model, cores, load average at start and end) is recorded beside the times: a busy machine says so.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import click

_STAGE = re.compile(r"^Running stage '([^']+)'", re.MULTILINE)


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
    dry = subprocess.run(["dvc", "repro", "--dry", *targets], capture_output=True, text=True, check=False)
    if dry.returncode != 0:
        sys.exit(f"dvc repro --dry failed: {dry.stderr.strip()[-500:]}")
    stages = _STAGE.findall(dry.stdout)
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
