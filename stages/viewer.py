"""One self-contained HTML provenance viewer per benchmark: every traced response, sentences coloured by class.

    python stages/viewer.py --classified data/classified.parquet --graded data/graded.parquet \
        --generations data/generations/distilled.jsonl --out reports/viewer
"""

import click

from rdpt.analysis.viewer import viewer
from rdpt.cli import stage


@click.command()
@click.option("--classified", required=True, help="Classified sentences (parquet).")
@click.option("--graded", required=True, help="Graded responses (parquet).")
@click.option("--generations", required=True, help="The distilled model's generations (jsonl).")
@click.option("--out", required=True, help="Output folder: <benchmark>.html for each benchmark.")
@stage
def main(classified, graded, generations, out):
    for path in viewer(classified, graded, generations, out):
        click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
