"""Teacher identification: which candidate teacher explains the distilled model's sentences, with a test.

    python stages/identify.py --sentences data/sentences.parquet --generations data/generations/distilled.jsonl \
        --student data/scores/student --distilled data/scores/distilled --candidates data/identify/scores \
        --calibration data/calibration.json --out reports/identify --metrics reports/identify.json
"""

import click

from rdpt.analysis.identify import identify
from rdpt.cli import params_option, stage
from rdpt.params import load_params


@click.command()
@params_option
@click.option("--sentences", required=True, help="Sentences table from `segment`.")
@click.option("--generations", required=True, help="The traced responses (JSONL): question of each response.")
@click.option("--student", required=True, help="Student scores folder.")
@click.option("--distilled", required=True, help="Distilled scores folder.")
@click.option("--candidates", required=True, help="Folder of <candidate>/scores.parquet from identify_score.")
@click.option("--calibration", required=True, help="classify's thresholds (alpha_used, beta_used).")
@click.option("--out", required=True, help="Folder: identify.md + teacher_share.png.")
@click.option("--metrics", "metrics_out", required=True, help="Metrics JSON.")
@stage
def main(params_path, sentences, generations, student, distilled, candidates, calibration, out, metrics_out):
    identify(load_params(params_path), sentences, generations, student, distilled, candidates, calibration, out,
             metrics_out)


if __name__ == "__main__":
    main()
