"""One model samples K responses per question of every benchmark in params `data.benchmarks`.

    python stages/generate.py --role distilled --model models/distilled --out data/generations/distilled.jsonl
"""

import click

from rdpt.cli import journal_option, params_option, stage
from rdpt.params import load_params
from rdpt.pipeline import ROLES, generate


@click.command()
@params_option
@click.option("--role", type=click.Choice(ROLES), required=True, help="Which model this is.")
@click.option("--model", required=True, help="Hub id or local folder.")
@click.option("--out", required=True, help="JSONL of generations.")
@journal_option
@stage
def main(params_path, journal_dir, role, model, out):
    generate(load_params(params_path), role, model, out, journal_dir=journal_dir)


if __name__ == "__main__":
    main()
