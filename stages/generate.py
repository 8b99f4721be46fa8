"""One model samples K responses per question of every benchmark in params `data.benchmarks`.

    python stages/generate.py --role distilled --model models/distilled --out data/generations/distilled.jsonl
"""

import click

from rdpt.cli import journal_option, params_option, stage
from rdpt.generation.responses import generate
from rdpt.models import role_ref
from rdpt.params import load_params
from rdpt.provenance import ROLES


@click.command()
@params_option
@click.option("--role", type=click.Choice(ROLES), required=True, help="Which model this is.")
@click.option("--model", required=True, help="Hub id or local folder.")
@click.option("--out", required=True, help="JSONL of generations.")
@journal_option
@stage
def main(params_path, journal_dir, role, model, out):
    params = load_params(params_path)
    generate(params, role_ref(params, role, model), role, out, journal_dir=journal_dir)


if __name__ == "__main__":
    main()
