"""Classify each sentence as Shared / Teacher / Student / Boosted from pT, pS, pD (params `classify`).

    python stages/classify.py --sentences data/sentences.parquet --teacher data/scores/teacher \
        --student data/scores/student --distilled data/scores/distilled --noise data/noise \
        --out data/classified.parquet --calibration data/calibration.json
"""

import click

from rdpt.cli import params_option, stage
from rdpt.params import load_params
from rdpt.provenance.classify import classify


@click.command()
@params_option
@click.option("--sentences", required=True, help="Sentences table from `segment`.")
@click.option("--teacher", required=True, help="Teacher scores folder.")
@click.option("--student", required=True, help="Student scores folder.")
@click.option("--distilled", required=True, help="Distilled scores folder.")
@click.option("--noise", default=None, help="Folder of <model>.parquet from the noise stages (for alpha: auto).")
@click.option("--out", required=True, help="Classified sentences (parquet).")
@click.option("--calibration", default=None, help="Output: thresholds used, noise floor and beta sweep (JSON).")
@stage
def main(params_path, sentences, teacher, student, distilled, noise, out, calibration):
    dirs = {"teacher": teacher, "student": student, "distilled": distilled}
    classify(load_params(params_path), sentences, dirs, out, noise_dir=noise, calibration_out=calibration)


if __name__ == "__main__":
    main()
