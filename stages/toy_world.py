"""Build the embedded toy world: synthetic questions plus a teacher and a student trained from scratch.

    python stages/toy_world.py --out toy --report reports/toy_world.json
"""

import click

from rdpt.artifacts import write_json
from rdpt.cli import params_option, stage
from rdpt.params import load_params
from rdpt.pipeline import build_toy


@click.command()
@params_option
@click.option("--out", required=True, help="Folder for data/ and models/{teacher,student}/.")
@click.option("--report", required=True, help="JSON report: sizes, training times, sampled accuracies.")
@stage
def main(params_path, out, report):
    write_json(report, build_toy(load_params(params_path), out))


if __name__ == "__main__":
    main()
