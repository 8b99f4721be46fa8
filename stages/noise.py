"""Re-score a few traced responses with one model under other batch plans / precision (the noise floor).

    python stages/noise.py --role teacher --model data/toy/models/teacher \
        --generations data/generations/distilled.jsonl --sentences data/sentences.parquet \
        --out data/noise/teacher.parquet
"""

import click

from rdpt.cli import params_option, stage
from rdpt.models import role_ref
from rdpt.params import load_params
from rdpt.provenance import ROLES
from rdpt.provenance.calibrate import noise


@click.command()
@params_option
@click.option("--role", type=click.Choice(ROLES), required=True, help="Which model this is.")
@click.option("--model", required=True, help="Hub id or local folder.")
@click.option("--generations", required=True, help="The traced responses (JSONL).")
@click.option("--sentences", required=True, help="Sentences table from `segment`.")
@click.option("--out", required=True, help="Noise table (parquet): one row per re-scored sentence and setup.")
@stage
def main(params_path, role, model, generations, sentences, out):
    params = load_params(params_path)
    noise(params, role_ref(params, role, model), role, generations, sentences, out)


if __name__ == "__main__":
    main()
