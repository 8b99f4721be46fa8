"""Apply every selection arm (params `select.arms`, `select.seeds`, `select.beta`) to the scored candidates.

Writes `<out>/<arm>/seed<k>.jsonl` (one chosen candidate per question), `features.parquet` and `summary.json`,
and each selection as chat JSONL (`{"messages": [...]}`, for TRL / LLaMA-Factory) in `<chat-out>/<arm>/seed<k>.jsonl`.

    python stages/select_data.py --candidates data/select/candidates.jsonl --sentences data/select/sentences.parquet \
        --teacher data/select/scores/teacher --student data/select/scores/student --out data/select/selections \
        --chat-out data/select/chat
"""

import click

from rdpt.cli import params_option, stage
from rdpt.params import load_params
from rdpt.selection.select_data import select_data


@click.command()
@params_option
@click.option("--candidates", "candidates_path", required=True, help="Candidates JSONL (`candidates`).")
@click.option("--sentences", required=True, help="The candidates' sentences (`segment`).")
@click.option("--teacher", required=True, help="Folder with the teacher's scores.parquet.")
@click.option("--student", required=True, help="Folder with the student's scores.parquet.")
@click.option("--out", required=True, help="Folder of selections.")
@click.option("--chat-out", default=None, help="Folder of the selections as chat JSONL (messages).")
@stage
def main(params_path, candidates_path, sentences, teacher, student, out, chat_out):
    select_data(load_params(params_path), candidates_path, sentences, {"teacher": teacher, "student": student}, out,
                chat_out)


if __name__ == "__main__":
    main()
