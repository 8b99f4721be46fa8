"""Write the real-weights world: one-step word problems and references to the cached real checkpoints.

    python stages/real_world.py --out data/real --report reports/real_world.json

Needs no asset itself (the references name them; the loader checks them by sha256 when a model loads), so
`dvc repro` runs it anywhere; `bash scripts/install_real_models.sh gemma3 smollm2` installs what the
real-cpu preset's other stages load.
"""

import click

from rdpt.cli import params_option, stage
from rdpt.io.artifacts import write_json
from rdpt.params import load_params
from rdpt.real_world import prepare


@click.command()
@params_option
@click.option("--out", required=True, help="Folder for train.jsonl, one_step.jsonl and models/{teacher,student}/.")
@click.option("--report", required=True, help="JSON report: question counts, seed, the assets named.")
@stage
def main(params_path, out, report):
    params = load_params(params_path)
    write_json(report, prepare(out, params.real.n_train, params.real.n_test, params.real.seed))


if __name__ == "__main__":
    main()
