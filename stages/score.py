"""Score every sentence of the traced responses under one model (one forward pass per response).

    python stages/score.py --role teacher --model toy/models/teacher \
        --generations data/generations/distilled.jsonl --sentences data/sentences.parquet --out data/scores/teacher
"""

import click

from rdpt.cli import journal_option, params_option, stage
from rdpt.models import role_ref
from rdpt.params import load_params
from rdpt.provenance import ROLES
from rdpt.provenance.score import score


@click.command()
@params_option
@click.option("--role", type=click.Choice(ROLES), required=True, help="Which model this is.")
@click.option("--model", required=True, help="Hub id or local folder.")
@click.option("--generations", required=True, help="The traced responses (JSONL).")
@click.option("--sentences", required=True, help="Sentences table from `segment`.")
@click.option("--out", required=True, help="Folder: scores.parquet + cost.json.")
@click.option("--timing", default=None, help="Wall-clock record (JSON, a DVC metric nothing depends on).")
@journal_option
@stage
def main(params_path, journal_dir, role, model, generations, sentences, out, timing):
    params = load_params(params_path)
    score(params, role_ref(params, role, model), role, generations, sentences, out, journal_dir=journal_dir,
          timing_out=timing)


if __name__ == "__main__":
    main()
