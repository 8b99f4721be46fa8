"""Fine-tune the student on the teacher's responses (loss on response tokens only) -> the distilled model.

When params `models.distilled.path` names an existing checkpoint, nothing is trained: the output
folder records that model and revision, and later stages load it from there.

    python stages/distill.py --student toy/models/student --data data/teach.jsonl --out models/distilled
"""

import click

from rdpt.cli import params_option, stage
from rdpt.models import role_ref
from rdpt.params import load_params
from rdpt.training.distill import distill


@click.command()
@params_option
@click.option("--student", required=True, help="Original student: hub id or local folder.")
@click.option("--data", "data_path", required=True, help="Teacher responses (JSONL from `teach`).")
@click.option("--out", required=True, help="Folder for the distilled model (or its reference).")
@click.option("--timing", default=None, help="Wall-clock record (JSON, a DVC metric nothing depends on).")
@stage
def main(params_path, student, data_path, out, timing):
    params = load_params(params_path)
    distill(params, role_ref(params, "student", student), data_path, out, timing_out=timing)


if __name__ == "__main__":
    main()
