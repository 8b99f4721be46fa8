import re
import threading

import pytest

from rdpt import RdptError
from rdpt.generation.grade import choice_letter, extract_answer, grade, last_box


@pytest.mark.parametrize(
    "gold, response, expected",
    [
        ("7", r"So the total is \boxed{7}.", True),
        ("7", r"So the total is \boxed{8}.", False),
        (r"$\boxed{3}$", r"Hence \boxed{3}", True),
        (r"\frac{1}{2}", r"We get \boxed{\dfrac{1}{2}}.", True),
        (r"\frac{1}{2}", r"The answer is $0.5$.", True),
        ("1/2", r"\boxed{\frac12}", True),
        ("1/2", r"\boxed{\frac{1}{3}}", False),
        (r"2\sqrt{2}", r"\boxed{\sqrt{8}}", True),
        (r"2\sqrt{2}", r"\boxed{2}", False),  # gold read as LaTeX, not as the number 2
        (r"\pi/2", r"\boxed{\frac{\pi}{2}}", True),
        ("7", "The answer is 7.", True),  # announced answers count without a box
        ("7", "Answer: 7", True),
        (r"\$32,348", r"The balance is $\boxed{\$32,348}$.", True),  # escaped dollar in the gold (MATH-500)
        (r"\$32,348", r"\boxed{32348}", True),
        (r"\$32,348", r"\boxed{\$32,349}", False),
        (r"\left( 3, \frac{\pi}{2} \right)", r"\boxed{(3, \frac{\pi}{2})}", True),
        (r"\left( 3, \frac{\pi}{2} \right)", r"\boxed{(3, \pi)}", False),
    ],
)
def test_grade_math(gold, response, expected):
    assert grade(gold, response) is expected


@pytest.mark.parametrize(
    "response",
    ["", "I am not sure.", "so x = 7", r"Let $x = 7$. Hmm.", r"Finally \boxed{7"],  # the last box is unclosed
)
def test_missing_answer_is_wrong(response):
    assert grade("7", response) is False


def test_last_complete_box_wins():
    response = r"First \boxed{3}, then on reflection \boxed{7}."
    assert grade("7", response) is True
    assert grade("3", response) is False
    assert extract_answer(response) == "7"
    # a truncated final box does not count: the last complete one is the answer
    assert grade("3", r"\boxed{3} but wait \boxed{8") is True


@pytest.mark.parametrize(
    "gold, response, expected",
    [
        ("C", r"\boxed{C}", True),
        ("C", r"\boxed{\text{(C)}}", True),
        ("(C)", r"\boxed{C}", True),
        ("C", "The answer is C.", True),
        ("C", "The answer is (C).", True),  # a letter in parentheses, announced
        ("C", "**Answer: (C)**", True),
        ("C", "The answer is (D).", False),
        ("C", r"\boxed{D}", False),
        ("C", "Option (C) looks right.", False),  # neither boxed nor announced
        (r"\boxed{C}", r"\boxed{C}", True),
    ],
)
def test_grade_multiple_choice(gold, response, expected):
    assert grade(gold, response) is expected


def test_choice_letter():
    assert [choice_letter(g) for g in ["C", " (B) ", "c", "CD", "7"]] == ["C", "B", None, None, None]


@pytest.mark.parametrize("gold", ["", "   ", "???"])
def test_unparseable_gold_is_an_error_naming_it(gold):
    with pytest.raises(RdptError, match=re.escape(f"gold answer {gold!r} cannot be parsed")):
        grade(gold, r"\boxed{1}")


def test_last_box_handles_nesting_and_escaped_braces():
    text = r"a \boxed{x} b \boxed{\frac{1}{2} \}} c"
    start, end = last_box(text)
    assert text[start:end] == r"\boxed{\frac{1}{2} \}}"
    assert last_box("no box") is None


def test_extract_answer():
    assert extract_answer(r"thus \boxed{\frac{3}{4}} done") == r"\frac{3}{4}"
    assert extract_answer("The answer is C.") == "C"
    assert extract_answer("nothing here") is None


def test_grade_off_the_main_thread():
    results = []
    worker = threading.Thread(target=lambda: results.append(grade("1/2", r"\boxed{0.5}")))
    worker.start()
    worker.join()
    assert results == [True]


# ----------------------------------------------------------------------- golds of several parts (OlympiadBench)
@pytest.mark.parametrize(
    "gold, response, expected",
    [
        (["$2$", "$3$"], r"The roots are $\boxed{2, 3}$.", True),
        (["$2$", "$3$"], r"The roots are $\boxed{3, 2}$.", True),  # any order
        (["$2$", "$3$"], r"$x = \boxed{2}$ or $x = \boxed{3}$.", True),  # one box per part
        (["$2$", "$3$"], r"The root is $\boxed{2}$.", False),  # partial: math-verify alone would accept it
        (["$2$", "$3$"], r"$\boxed{2, 3, 4}$", False),  # a part too many
        (["$2$", "$3$"], r"$\boxed{2, 2}$", False),  # one gold part answered twice, the other not
        (["$2$", "$3$"], r"$\boxed{2, 5}$", False),
        (["$2$", "$3$"], "The roots are 2 and 3.", False),  # several parts need boxes
        (["$(1,2)$", "$(2,1)$"], r"$\boxed{(2,1), (1,2)}$", True),  # commas inside a tuple do not split
        (["$(1,2)$", "$(2,1)$"], r"$\boxed{(1,2)}$", False),
        ([r"$\frac{1}{2}$", r"$\sqrt{2}$"], r"$\boxed{0.5, \sqrt{2}}$", True),
        (["$x=1$", "$y=2$"], r"$\boxed{x = 1, y = 2}$", True),
        (["$1000$", "$7$"], r"$\boxed{1,000, 7}$", True),  # 1,000 is one number
        (["$5$"], r"$\boxed{5}$", True),  # a one-part list is an ordinary gold
        (["$5$"], r"$\boxed{6}$", False),
    ],
)
def test_grade_every_part_of_a_multi_part_gold(gold, response, expected):
    assert grade(gold, response) is expected


def test_multi_part_gold_errors():
    with pytest.raises(RdptError, match="gold answer '\\?\\?\\?' cannot be parsed"):
        grade(["$1$", "???"], r"\boxed{1, 2}")
    with pytest.raises(RdptError, match="has no part"):
        grade([], r"\boxed{1}")


def test_split_items_and_row_gold():
    from rdpt.generation.grade import row_gold, split_items

    assert split_items(r"1, (2, 3), [4,5], \{6, 7\}, 8,000") == ["1", "(2, 3)", "[4,5]", r"\{6, 7\}", "8,000"]
    assert row_gold("$2$, $3$", ["$2$", "$3$"]) == ["$2$", "$3$"]
    assert row_gold("7", None) == row_gold("7", float("nan")) == row_gold("7", ["7"]) == "7"


@pytest.mark.parametrize(
    "response, expected",
    [
        ("<think>\nSo 6 * 120 = 720.\n</think>\n\nThe answer is $\\boxed{720}$.", "720"),
        ("<think>\n\\boxed{3} first\n</think>\n\nHence $\\boxed{\\frac{1}{2}}$.", r"\frac{1}{2}"),
        ("<think>\nIt is \\boxed{5}.\n</think>\n\nThe answer is 5.", None),  # no box after the think block
        ("<think>\nStill thinking... \\boxed{5}", None),  # never closed: cut off
        ("No think block, \\boxed{5}.", None),
        ("<think>x</think> \\boxed{???}", None),  # math-verify cannot parse it
        ("<think>x</think>\n```python\nprint(1)\n```", None),  # a code answer
    ],
)
def test_final_answer_is_the_pseudo_gold_after_think(response, expected):
    from rdpt.generation.grade import final_answer

    assert final_answer(response) == expected
    if expected is not None:
        assert grade(expected, response) is True  # a row's pseudo-gold grades its own response right


def test_evaluate_grades_rows_with_answer_parts(tmp_path):
    import pandas as pd

    from rdpt.generation.grade import evaluate
    from rdpt.io.artifacts import write_jsonl

    base = {"benchmark": "b", "question": "q", "finish_reason": "stop", "n_tokens": 3}
    rows = [{**base, "response_id": "b/1/0", "question_id": "1", "sample_idx": 0, "answer": "$2$, $3$",
             "answer_parts": ["$2$", "$3$"], "text": r"\boxed{2}"},
            {**base, "response_id": "b/1/1", "question_id": "1", "sample_idx": 1, "answer": "$2$, $3$",
             "answer_parts": ["$2$", "$3$"], "text": r"\boxed{3, 2}"},
            {**base, "response_id": "b/2/0", "question_id": "2", "sample_idx": 0, "answer": "7", "text": r"\boxed{7}"}]
    gen = tmp_path / "g.jsonl"
    write_jsonl(gen, rows)
    graded = evaluate({"distilled": str(gen)}, str(tmp_path / "graded.parquet"))
    assert graded["correct"].tolist() == [False, True, True]
    assert pd.read_parquet(tmp_path / "graded.parquet")["correct"].tolist() == [False, True, True]
