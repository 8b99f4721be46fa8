"""Fine-tune the original student on one selection (params `select.train`), then sample every benchmark
(params `generate` under `select.eval`) and grade it: one cell of the selection experiment (no --selection: the
untrained student under the same evaluation).

    python stages/select_run.py --student data/toy/models/student \
        --selection data/select/selections/teacher_count/seed0.jsonl --seed 0 \
        --out data/select/runs/teacher_count/seed0
    python stages/select_run.py --student data/toy/models/student --seed 0 --out data/select/untrained
"""

import click

from rdpt.cli import params_option, stage
from rdpt.models import role_ref
from rdpt.params import load_params
from rdpt.selection.run import select_run


@click.command()
@params_option
@click.option("--student", required=True, help="Original student: hub id or local folder.")
@click.option("--selection", default=None, help="Selected candidates (JSONL from `select_data`); without it the "
              "student is evaluated untrained (Table 1's reference row).")
@click.option("--seed", type=int, required=True, help="Training and evaluation-sampling seed.")
@click.option("--out", required=True, help="Run folder: eval.jsonl, train_report.json [, model/].")
@click.option("--timing", default=None, help="Wall-clock record (JSON, a DVC metric nothing depends on).")
@stage
def main(params_path, student, selection, seed, out, timing):
    params = load_params(params_path)
    select_run(params, role_ref(params, "student", student), selection, seed, out, timing_out=timing)


if __name__ == "__main__":
    main()
