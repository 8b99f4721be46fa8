"""Grade every response of every model with math-verify.

    python stages/evaluate.py --teacher data/generations/teacher.jsonl --student data/generations/student.jsonl \
        --distilled data/generations/distilled.jsonl --out data/graded.parquet
"""

import click

from rdpt.cli import stage
from rdpt.generation.grade import evaluate


@click.command()
@click.option("--teacher", required=True, help="Teacher generations (JSONL).")
@click.option("--student", required=True, help="Student generations (JSONL).")
@click.option("--distilled", required=True, help="Distilled generations (JSONL).")
@click.option("--out", required=True, help="Graded responses (parquet).")
@stage
def main(teacher, student, distilled, out):
    evaluate({"teacher": teacher, "student": student, "distilled": distilled}, out)


if __name__ == "__main__":
    main()
