"""Classify each sentence as Shared / Teacher / Student / Boosted from pT, pS, pD (params `classify`).

    python stages/classify.py --sentences data/sentences.parquet --teacher data/scores/teacher \
        --student data/scores/student --distilled data/scores/distilled --out data/classified.parquet
"""

import click

from rdpt.cli import params_option, stage
from rdpt.params import load_params
from rdpt.pipeline import classify


@click.command()
@params_option
@click.option("--sentences", required=True, help="Sentences table from `segment`.")
@click.option("--teacher", required=True, help="Teacher scores folder.")
@click.option("--student", required=True, help="Student scores folder.")
@click.option("--distilled", required=True, help="Distilled scores folder.")
@click.option("--out", required=True, help="Classified sentences (parquet).")
@stage
def main(params_path, sentences, teacher, student, distilled, out):
    dirs = {"teacher": teacher, "student": student, "distilled": distilled}
    classify(load_params(params_path), sentences, dirs, out)


if __name__ == "__main__":
    main()
