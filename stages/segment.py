"""Split each traced (distilled) response into sentences: character spans that reconstruct it exactly.

    python stages/segment.py --generations data/generations/distilled.jsonl --out data/sentences.parquet \
        --empty-out data/empty_responses.parquet
"""

import click

from rdpt.cli import params_option, stage
from rdpt.params import load_params
from rdpt.provenance.segment import segment


@click.command()
@params_option
@click.option("--generations", required=True, help="The traced model's generations (JSONL).")
@click.option("--out", required=True, help="Sentences table (parquet).")
@click.option("--empty-out", required=True, help="Responses that yielded no sentence (parquet).")
@stage
def main(params_path, generations, out, empty_out):
    segment(load_params(params_path), generations, out, empty_out)


if __name__ == "__main__":
    main()
