"""Candidate responses for data selection: K teacher samples per train question, or a dataset of them.

Params `select.candidates` (source, num_samples = K, sampling, n_questions, only_correct, dataset).

    python stages/candidates.py --teacher data/toy/models/teacher --out data/select/candidates.jsonl \
        --report data/select/candidates.json
"""

import click

from rdpt.cli import journal_option, params_option, stage
from rdpt.models import role_ref
from rdpt.params import load_params
from rdpt.selection.candidates import candidates


@click.command()
@params_option
@click.option("--teacher", required=True, help="Teacher model (hub id or folder); unused for a candidate dataset.")
@click.option("--out", required=True, help="JSONL of candidates (generations rows + source).")
@click.option("--report", "report_out", required=True, help="JSON: sampled / truncated / kept counts.")
@journal_option
@stage
def main(params_path, journal_dir, teacher, out, report_out):
    params = load_params(params_path)
    candidates(params, role_ref(params, "teacher", teacher), out, report_out, journal_dir=journal_dir)


if __name__ == "__main__":
    main()
