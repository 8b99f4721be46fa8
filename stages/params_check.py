"""Validate the whole params file: every key, type and range, in one line on failure.

The first stage of dvc.yaml (``always_changed``, no outs): every ``dvc repro`` / ``dvc exp run`` runs it, so a
typo in a key no stage lists (e.g. a misspelt top-level key) fails the run instead of "up to date"; nothing
depends on it, so it never makes another stage rerun.

    python stages/params_check.py --params params.yaml
"""

import click

from rdpt.cli import journal_option, params_option, stage
from rdpt.io.journal import prune_orphans
from rdpt.params import load_params


@click.command()
@params_option
@journal_option
@stage
def main(params_path, journal_dir):
    params = load_params(params_path)
    # every repro starts here: also the moment to drop journals whose artifact DVC restored from its cache
    prune_orphans(journal_dir)
    click.echo(f"{params_path}: ok (benchmarks {', '.join(params.data.benchmarks)})")


if __name__ == "__main__":
    main()
