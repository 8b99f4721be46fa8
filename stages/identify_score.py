"""Score the traced sentences under one candidate teacher (teacher identification), in the teacher's place.

    python stages/identify_score.py --candidate alt_teacher --generations data/generations/distilled.jsonl \
        --sentences data/sentences.parquet --teacher-scores data/scores/teacher --out data/identify/scores/alt_teacher
"""

import click

from rdpt.analysis.identify_score import identify_score
from rdpt.cli import journal_option, params_option, stage
from rdpt.params import load_params


@click.command()
@params_option
@click.option("--candidate", required=True, help="A name under identify.candidates in the params file.")
@click.option("--generations", required=True, help="The traced responses (JSONL).")
@click.option("--sentences", required=True, help="Sentences table from `segment`.")
@click.option("--teacher-scores", default=None,
              help="score@teacher's folder: reused when the candidate is models.teacher (no second scoring).")
@click.option("--out", required=True, help="Folder: scores.parquet + cost.json.")
@click.option("--timing", default=None, help="Wall-clock record (JSON, a DVC metric nothing depends on).")
@journal_option
@stage
def main(params_path, journal_dir, candidate, generations, sentences, teacher_scores, out, timing):
    identify_score(load_params(params_path), candidate, generations, sentences, out, teacher_scores=teacher_scores,
                    journal_dir=journal_dir, timing_out=timing)


if __name__ == "__main__":
    main()
