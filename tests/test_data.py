import json
import re
from pathlib import Path

import pandas as pd
import pytest

from rdpt import RdptError
from rdpt.io.artifacts import read_table, write_table
from rdpt.io.data import load_questions
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


def _mc_rows():
    return [
        {"q": "Which is a noble gas?", "right": "Neon", "w1": "Sodium", "w2": "Iron", "w3": "Sulfur"},
        {"q": "Which planet is largest?", "right": "Jupiter", "w1": "Mars", "w2": "Venus", "w3": "Mercury"},
    ]


def test_multiple_choice_letters_options_and_gold(tmp_path):
    path = _write(tmp_path / "mc.jsonl", _mc_rows())
    spec = DatasetSpec(path=path, question_field="q", answer_field="right", distractor_fields=["w1", "w2", "w3"],
                       prompt_template="Pick one.\n\n{question}\n\nEnd with \\boxed{X}.")
    for q, row in zip(load_questions(spec), _mc_rows()):
        assert q.id == str(_mc_rows().index(row))  # id_field null: the row index
        options = dict(line.split(") ", 1) for line in q.question.splitlines() if line[1:3] == ") ")
        assert list(options) == ["A", "B", "C", "D"]
        assert options[q.answer] == row["right"]
        assert sorted(options.values()) == sorted([row["right"], row["w1"], row["w2"], row["w3"]])
        assert q.question.startswith(f"Pick one.\n\n{row['q']}\n\nA) ") and q.question.endswith("\\boxed{X}.")


def test_option_order_is_a_fixed_permutation_per_id():
    from rdpt.io.data import option_order

    orders = {qid: option_order(qid, 4) for qid in map(str, range(40))}
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders.values())
    assert orders == {qid: option_order(qid, 4) for qid in orders}
    assert option_order("0", 4) == [1, 0, 3, 2]  # pinned: the same letters in every run and Python version
    assert len({o.index(0) for o in orders.values()}) == 4  # the right option lands on every letter


@pytest.mark.parametrize(
    "change, message",
    [
        ({"w2": "  "}, "row 1: empty or missing option 'w2'"),
        ({"w3": "Jupiter "}, "row 1: two options have the same text"),
    ],
)
def test_bad_multiple_choice_rows_name_file_and_row(tmp_path, change, message):
    rows = _mc_rows()
    rows[1].update(change)
    path = _write(tmp_path / "mc.jsonl", rows)
    with pytest.raises(RdptError, match=message):
        load_questions(DatasetSpec(path=path, question_field="q", answer_field="right",
                                   distractor_fields=["w1", "w2", "w3"]))
    with pytest.raises(RdptError, match="no column 'w9'"):
        load_questions(DatasetSpec(path=path, question_field="q", answer_field="right", distractor_fields=["w9"]))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"distractor_fields": []}, "give 1 to 25 columns"),
        ({"distractor_fields": ["a", "a"]}, "a column is named twice"),
        ({"distractor_fields": ["answer"]}, "answer_field 'answer' is also in distractor_fields"),
        ({"prompt_template": "Solve it."}, "must contain '{question}'"),
        ({"answer_format": "list", "distractor_fields": ["a"]}, "answer_format 'list' does not go with distractor"),
        ({"multiple_answer_field": "is_multiple_answer"}, "multiple_answer_field needs answer_format: list"),
        ({"answer_format": "lists"}, "answer_format"),
        ({"filter": {}}, "name at least one column, or null"),
        ({"filter": {"category": []}}, "column 'category': give at least one value"),
        ({"num_samples": 0}, "num_samples"),
    ],
)
def test_dataset_spec_checks_multiple_choice_and_template_fields(fields, message):
    import yaml

    from rdpt.params import parse_params

    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    data["data"]["benchmarks"]["toy_easy"].update(fields)
    with pytest.raises(RdptError, match=re.escape(message)) as err:
        parse_params(data, "params.yaml")
    assert str(err.value).startswith("params.yaml: data.benchmarks.toy_easy")


def test_integer_answers_and_ids_become_strings(tmp_path):
    # AIME mirrors store answers as integers (0 included) and ids as integers
    path = _write(tmp_path / "aime.jsonl", [{"problem_idx": 3, "problem": "p?", "answer": 0},
                                            {"problem_idx": 4, "problem": "q?", "answer": 204}])
    qs = load_questions(DatasetSpec(path=path, question_field="problem", id_field="problem_idx"))
    assert [(q.id, q.answer) for q in qs] == [("3", "0"), ("4", "204")]


FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _olympiad(**fields) -> DatasetSpec:
    return DatasetSpec(**{"path": str(FIXTURES / "olympiadbench.jsonl"), "answer_field": "final_answer",
                          "answer_format": "list", "id_field": "id", **fields})


def test_olympiadbench_list_golds_become_parts():
    qs = {q.id: q for q in load_questions(_olympiad(multiple_answer_field="is_multiple_answer"))}
    assert (qs["2001"].gold, qs["2001"].parts) == ("$3$", ())  # a one-part list: an ordinary gold
    assert qs["2003"].gold == ["$2$", "$3$"] and qs["2003"].answer == "$2$, $3$"
    assert qs["2004"].gold == ["$(1,2)$", "$(2,1)$"]  # the tuples' own commas do not split
    assert qs["2005"].gold == ["$1$", "$3$"]  # one item '$1,3$' of a multiple-answer row: split
    # without multiple_answer_field the one-item gold stays one part (math-verify reads it as a set)
    assert {q.id: q.gold for q in load_questions(_olympiad())}["2005"] == "$1,3$"


@pytest.mark.parametrize(
    "cell, message",
    [
        ("$3$", "gold answer 'final_answer' should be a list (answer_format: list), found str"),
        ([], "empty list in gold answer 'final_answer'"),
        (["$1$", " "], "empty or missing part of gold answer 'final_answer'"),
        (["$1$", "???"], "gold answer '???' cannot be parsed"),
    ],
)
def test_bad_list_golds_name_file_and_row(tmp_path, cell, message):
    path = _write(tmp_path / "ob.jsonl", [{"id": 1, "question": "q?", "final_answer": ["$1$"]},
                                          {"id": 2, "question": "r?", "final_answer": cell}])
    with pytest.raises(RdptError) as err:
        load_questions(DatasetSpec(path=path, answer_field="final_answer", answer_format="list", id_field="id"))
    assert str(err.value).startswith(f"{path}: row 1: ") and message in str(err.value)
    bad_flag = _write(tmp_path / "flag.jsonl", [{"question": "q?", "final_answer": ["$1$"], "multi": "yes"}])
    with pytest.raises(RdptError, match="row 0: 'multi' should be true or false"):
        load_questions(DatasetSpec(path=bad_flag, answer_field="final_answer", answer_format="list",
                                   multiple_answer_field="multi"))


def test_row_filter_keeps_matching_rows_and_their_row_numbers(tmp_path):
    rows = [{"q": "a?", "answer": "1", "cat": "math", "n": 1}, {"q": "b?", "answer": "2", "cat": "code", "n": 2},
            {"q": "c?", "answer": "3", "cat": "math", "n": True}, {"q": "d?", "answer": "4", "cat": "science", "n": 1}]
    path = _write(tmp_path / "f.jsonl", rows)
    spec = DatasetSpec(path=path, question_field="q", filter={"cat": "math"})
    assert [(q.id, q.question) for q in load_questions(spec)] == [("0", "a?"), ("2", "c?")]
    either = DatasetSpec(path=path, question_field="q", filter={"cat": ["math", "science"]}, limit=2)
    assert [q.id for q in load_questions(either)] == ["0", "2"]  # limit counts kept rows
    assert [q.id for q in load_questions(DatasetSpec(path=path, question_field="q", filter={"n": 1}))] == ["0", "3"]
    with pytest.raises(RdptError, match=re.escape(f"{path}: no row matches filter {{'cat': 'history'}}")):
        load_questions(DatasetSpec(path=path, question_field="q", filter={"cat": "history"}))
    with pytest.raises(RdptError, match=re.escape(f"{path}: no column 'domain'")):
        load_questions(DatasetSpec(path=path, question_field="q", filter={"domain": "math"}))


def test_openthoughts3_chat_column_by_role():
    from rdpt.io.data import load_candidates
    from rdpt.params import CandidateDataset

    spec = CandidateDataset(path=str(FIXTURES / "openthoughts3.jsonl"), chat={"column": "conversations"},
                            source_field="source", filter={"domain": "math"}, pseudo_gold=True)
    got = load_candidates(spec)
    assert [(c.question_id, c.sample_idx, c.answer) for c in got] == [("0", 0, "9"), ("0", 1, "9"), ("3", 0, "10")]
    assert got[0].question == "How many positive divisors does $36$ have?"
    assert got[2].response.startswith("<think>\n2^9 = 512") and got[2].source == "ai2-adapt-dev/openmath-2-math"


@pytest.mark.parametrize(
    "conversations, message",
    [
        ([{"from": "human", "value": "q?"}], "has 0 messages with from 'gpt' (expected one)"),
        ([{"from": "human", "value": "q?"}, {"from": "human", "value": "again?"}, {"from": "gpt", "value": "a"}],
         "has 2 messages with from 'human' (expected one)"),
        ("q? a", "'conversations' should be a list of messages, found str"),
        ([{"from": "human", "value": " "}, {"from": "gpt", "value": "a"}], "empty or missing question in"),
    ],
)
def test_bad_chat_rows_name_file_and_row(tmp_path, conversations, message):
    from rdpt.io.data import load_candidates
    from rdpt.params import CandidateDataset

    path = _write(tmp_path / "ot.jsonl", [{"conversations": conversations}])
    with pytest.raises(RdptError) as err:
        load_candidates(CandidateDataset(path=path, chat={"column": "conversations"}))
    assert str(err.value).startswith(f"{path}: row 0: ") and message in str(err.value)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"chat": {"column": "c"}, "question_field": "q"}, "chat replaces question_field and response_field"),
        ({"chat": {"column": "c", "question_role": "x", "response_role": "x"}}, "must differ"),
        ({"pseudo_gold": True, "answer_field": "gold"}, "pseudo_gold reads the gold from each response"),
    ],
)
def test_candidate_dataset_checks(fields, message):
    from rdpt.params import CandidateDataset

    with pytest.raises(ValueError, match=re.escape(message)):
        CandidateDataset(path="x.jsonl", **fields)


def test_train_set_takes_no_num_samples():
    import yaml

    from rdpt.params import parse_params

    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    data["data"]["train"]["num_samples"] = 4
    with pytest.raises(RdptError, match="train.num_samples: teach.num_samples and select.candidates.num_samples"):
        parse_params(data, "params.yaml")
