"""Build the embedded toy world: synthetic questions plus a teacher and a student trained from scratch.

    python stages/toy_world.py --out toy --report reports/toy_world.json
"""

import click

from rdpt.cli import params_option, stage
from rdpt.io.artifacts import write_json
from rdpt.models import resolve_device
from rdpt.params import load_params
from rdpt.toy import toy_world


@click.command()
@params_option
@click.option("--out", required=True, help="Folder for data/ and models/{teacher,student}/.")
@click.option("--report", required=True, help="JSON report: sizes, training times, sampled accuracies.")
@stage
def main(params_path, out, report):
    params = load_params(params_path)
    device, _ = resolve_device(params.device, "float32")  # toy models always train in fp32
    write_json(report, toy_world(params.toy, out, device=device))


if __name__ == "__main__":
    main()
