"""Score every sentence of the traced responses under one model (one forward pass per response).

    python stages/score.py --role teacher --model toy/models/teacher \
        --generations data/generations/distilled.jsonl --sentences data/sentences.parquet --out data/scores/teacher
"""

import click

from rdpt.cli import journal_option, params_option, stage
from rdpt.params import load_params
from rdpt.pipeline import ROLES, score


@click.command()
@params_option
@click.option("--role", type=click.Choice(ROLES), required=True, help="Which model this is.")
@click.option("--model", required=True, help="Hub id or local folder.")
@click.option("--generations", required=True, help="The traced responses (JSONL).")
@click.option("--sentences", required=True, help="Sentences table from `segment`.")
@click.option("--out", required=True, help="Folder: scores.parquet + cost.json.")
@journal_option
@stage
def main(params_path, journal_dir, role, model, generations, sentences, out):
    score(load_params(params_path), role, model, generations, sentences, out, journal_dir=journal_dir)


if __name__ == "__main__":
    main()
