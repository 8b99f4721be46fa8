"""The selection experiment's results: accuracy per arm x benchmark over seeds, Table 1, the metric
ablation, the beta sensitivity and a figure.

    python stages/select_report.py --selections data/select/selections --runs data/select/runs \
        --candidates-report data/select/candidates.json --out reports/selection --metrics reports/selection.json \
        --untrained data/select/untrained/eval.jsonl
"""

import click

from rdpt.cli import params_option, stage
from rdpt.params import load_params
from rdpt.selection.report import select_report


@click.command()
@params_option
@click.option("--selections", required=True, help="Folder from `select` (summary.json).")
@click.option("--runs", required=True, help="Folder of runs: <arm>/seed<k>/eval.jsonl.")
@click.option("--candidates-report", required=True, help="JSON from `candidates`.")
@click.option("--out", required=True, help="Folder: table1.md, ablation.md, beta.md, accuracy.csv/png.")
@click.option("--metrics", "metrics_out", required=True, help="Metrics JSON (dvc metrics).")
@click.option("--untrained", default=None, help="The untrained student's evaluation (`select_untrained`'s eval.jsonl): "
              "Table 1's reference row.")
@stage
def main(params_path, selections, runs, candidates_report, out, metrics_out, untrained):
    select_report(load_params(params_path), selections, runs, candidates_report, out, metrics_out, untrained)


if __name__ == "__main__":
    main()
