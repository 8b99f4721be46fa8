import json

import pandas as pd
import pytest

from rdpt import RdptError
from rdpt.artifacts import read_table, write_table
from rdpt.data import load_questions
from rdpt.params import DatasetSpec


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_local_jsonl_through_datasets(tmp_path):
    path = _write(tmp_path / "q.jsonl", [{"id": "a", "q": "1+1?", "gold": "2"}, {"id": "b", "q": "2+2?", "gold": 4}])
    qs = load_questions(DatasetSpec(path=path, question_field="q", answer_field="gold", id_field="id"))
    assert [(q.id, q.question, q.answer) for q in qs] == [("a", "1+1?", "2"), ("b", "2+2?", "4")]
    assert len(load_questions(DatasetSpec(path=path, question_field="q", answer_field="gold", limit=1))) == 1


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"question": "x?", "answer": "1"}, {"question": "", "answer": "2"}], "row 1: empty or missing 'question'"),
        ([{"question": "x?", "answer": None}], "row 0: empty or missing gold answer 'answer'"),
        ([{"question": "x?"}], "no column 'answer'"),
        ([{"id": 1, "question": "x?", "answer": "1"}, {"id": 1, "question": "y?", "answer": "2"}], "duplicate id '1'"),
    ],
)
def test_bad_rows_name_file_and_row(tmp_path, rows, message):
    path = _write(tmp_path / "bad.jsonl", rows)
    id_field = "id" if "id" in rows[0] else None
    with pytest.raises(RdptError) as err:
        load_questions(DatasetSpec(path=path, id_field=id_field))
    assert message in str(err.value) and str(tmp_path / "bad.jsonl") in str(err.value)


def test_missing_dataset_file(tmp_path):
    with pytest.raises(RdptError, match="dataset file not found"):
        load_questions(DatasetSpec(path=str(tmp_path / "missing.jsonl")))


def test_tables_checked_and_atomic(tmp_path):
    good = pd.DataFrame({"response_id": ["r"], "benchmark": ["b"]})
    write_table(tmp_path / "e.parquet", good, "empty_responses")
    assert read_table(tmp_path / "e.parquet", "empty_responses").equals(good)
    with pytest.raises(RdptError, match="missing column 'benchmark'"):
        write_table(tmp_path / "f.parquet", good.drop(columns="benchmark"), "empty_responses")
    assert not (tmp_path / "f.parquet").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["e.parquet"]  # no temp file left behind
    with pytest.raises(RdptError, match="not found"):
        read_table(tmp_path / "nope.parquet", "sentences")
