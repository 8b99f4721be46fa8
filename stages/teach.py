"""The teacher samples responses to the train questions (params `data.train`, `teach`).

    python stages/teach.py --teacher toy/models/teacher --out data/teach.jsonl
"""

import click

from rdpt.cli import journal_option, params_option, stage
from rdpt.generation.responses import teach
from rdpt.models import role_ref
from rdpt.params import load_params


@click.command()
@params_option
@click.option("--teacher", required=True, help="Teacher model: hub id or local folder.")
@click.option("--out", required=True, help="JSONL of generations (the distillation data).")
@journal_option
@stage
def main(params_path, journal_dir, teacher, out):
    params = load_params(params_path)
    teach(params, role_ref(params, "teacher", teacher), out, journal_dir=journal_dir)


if __name__ == "__main__":
    main()
