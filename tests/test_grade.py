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
