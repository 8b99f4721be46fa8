"""Relate provenance to correctness: metrics, figures and the class-share and correlation tables under reports/.

    python stages/correlate.py --classified data/classified.parquet --graded data/graded.parquet \
        --scores data/scores --calibration data/calibration.json --reports reports
"""

from pathlib import Path

import click

from rdpt.analysis.correlate import correlate
from rdpt.cli import params_option, stage
from rdpt.params import load_params
from rdpt.provenance import ROLES


@click.command()
@params_option
@click.option("--classified", required=True, help="Classified sentences (parquet).")
@click.option("--graded", required=True, help="Graded responses (parquet).")
@click.option("--scores", required=True, help="Folder holding <model>/cost.json for each model.")
@click.option("--calibration", default=None, help="Thresholds used and beta sweep from classify (JSON); optional.")
@click.option("--reports", required=True, help="Output folder (metrics.json, figures/, tables/, plots/).")
@stage
def main(params_path, classified, graded, scores, calibration, reports):
    cost_dirs = {role: str(Path(scores) / role) for role in ROLES}
    correlate(load_params(params_path), classified, graded, cost_dirs, reports, calibration_path=calibration)


if __name__ == "__main__":
    main()
