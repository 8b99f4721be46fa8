"""Grade a response against a gold answer with math-verify.

Gold and response are both parsed with ``math_verify.parse`` and compared with ``verify(gold, answer)``
(in that order: verify is not symmetric)::

    python -c "from rdpt.generation.grade import grade; print(grade('1/2', r'So it is \\boxed{\\frac{1}{2}}.'))"

Choices made here:

- **The last complete ``\\boxed{}`` is the answer.** A reasoning trace often boxes intermediate results or
  restates the answer; the last box is the committed one. math-verify alone would read
  ``\\boxed{3} ... \\boxed{5}`` as the set {3, 5}, so only the last box is handed to it. A box left
  unclosed (truncated output) does not count.
- **Without a box, the answer must be announced** ("the answer is 7", "Answer: 7", "final answer is
  $\\frac12$"): loose numbers or formulas anywhere in the text are not taken as an answer, so a response
  that never commits to one is wrong rather than graded on its last equation.
- **Multiple choice.** A gold that is a single capital letter ("C" or "(C)") matches ``\\boxed{C}``,
  ``\\boxed{\\text{(C)}}`` and announced letters ("The answer is C", "The answer is (C)", "Answer: C");
  "(C)" without a box or an announcement does not.
- A gold may hold an escaped dollar (``\\$32,348``, MATH-500 money answers): only an unescaped ``$`` marks
  the gold as already delimited LaTeX.
- **A gold of several parts** (OlympiadBench's multi-answer items: ``final_answer`` is a list) is right only
  when the response gives every part and nothing more: the last box is split at its top-level commas (a comma
  between a digit and exactly three digits is a thousands separator, not a split), or, when it holds one item,
  the last boxes, one per part; the items and the parts must pair up one to one (any order), each pair
  equal under math-verify. math-verify alone reads ``\\boxed{3, 5}`` as a set and accepts any overlap with the
  gold, so one right part of two would count. A one-part gold is graded as an ordinary answer.
- **Pseudo-gold** (a dataset without a gold column, e.g. AceReason-1.1-SFT): :func:`final_answer` is the last
  box after ``</think>``, kept only when math-verify parses it, as the dataset's authors filter their data.
- A gold math-verify cannot parse raises :class:`RdptError` naming it (callers add the file and row):
  a wrong gold must not silently score every response 0.
- math-verify's timeouts use ``signal.alarm``, which only works in the main thread; off the main thread
  parsing and verification run without a timeout.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from string import ascii_uppercase

import pandas as pd
from latex2sympy2_extended import NormalizationConfig
from math_verify import ExprExtractionConfig, LatexExtractionConfig, StringExtractionConfig, parse, verify

from rdpt import RdptError
from rdpt.io.artifacts import SCHEMAS, read_table, write_table

TIMEOUT_S = 5  # per parse/verify call, main thread only

# Boxed content first (priority 0), then announced LaTeX, then announced plain expressions.
_LATEX = LatexExtractionConfig(
    boxed_match_priority=0,
    try_extract_without_anchor=False,
    normalization_config=NormalizationConfig(
        basic_latex=True, units=True, malformed_operators=True, nits=True, boxed="all"
    ),
)
_EXPR = ExprExtractionConfig(try_extract_without_anchor=False)
_LETTERS = StringExtractionConfig(strings=tuple(ascii_uppercase), try_extract_without_anchor=False)

_CHOICE = re.compile(r"\(?([A-Z])\)?")
# "(C)" as a word (not "f(C)"): math-verify's announced-letter patterns want the bare letter
_PAREN_LETTER = re.compile(r"(?<![A-Za-z0-9\\])\(([A-Z])\)")
_DELIMITER = re.compile(r"(?<!\\)\$")  # a $ that is not \$
_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
_THOUSANDS = re.compile(r"\d,\d{3}(?!\d)")  # at the comma's left neighbour: 1,000 is one number


def _timeout() -> int | None:
    return TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def choice_letter(gold: str) -> str | None:
    """The letter of a multiple-choice gold ("C", "(C)"), else None."""
    m = _CHOICE.fullmatch(gold.strip())
    return m.group(1) if m else None


def last_box(text: str) -> tuple[int, int] | None:
    """Span of the last ``\\boxed{...}`` (or ``\\fbox{...}``) whose braces close, or None."""
    for m in reversed(list(_BOX_OPEN.finditer(text))):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == "\\":  # \{ and \} are literal braces
                i += 1
            elif text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        if depth == 0:
            return m.start(), i
    return None


def _answer_region(response: str) -> str:
    box = last_box(response)
    return response if box is None else response[box[0] : box[1]]


def parse_gold(gold: str) -> list:
    """math-verify's parse of a gold answer; raises RdptError when it yields no expression."""
    letter = choice_letter(gold)
    if letter:
        text = f"${letter}$"  # as inline LaTeX a letter is a symbol, equal to a boxed or announced letter
    elif _DELIMITER.search(gold) or "\\boxed" in gold:
        text = gold
    else:
        # bare gold is read as LaTeX: as plain text, 2\sqrt{2} would parse to 2 and \pi to nothing
        text = f"${gold}$"
    parsed = parse(text, parsing_timeout=_timeout())
    # a result made only of the matched string (no sympy object) means math-verify did not understand it
    if not any(not isinstance(p, str) for p in parsed):
        raise RdptError(f"gold answer {gold!r} cannot be parsed by math-verify")
    return parsed


def parse_answer(response: str, choices: bool = False) -> list:
    """math-verify's parse of the response's answer ([] when there is none); see the module docstring."""
    region = _answer_region(response)
    if choices:
        region = _PAREN_LETTER.sub(r"\1", region)
    configs = [_LATEX, _EXPR, _LETTERS] if choices else [_LATEX, _EXPR]
    return parse(region, extraction_config=configs, parsing_timeout=_timeout())


def grade(gold: str | Sequence[str], response: str) -> bool:
    """Whether ``response`` answers ``gold``; a missing or unparseable answer is wrong.

    ``gold`` may be a list of parts (see the module docstring): all of them must be answered.
    """
    if not isinstance(gold, str):
        parts = list(gold)
        if len(parts) > 1:
            return _grade_parts(parts, response)
        if not parts:
            raise RdptError("gold answer [] has no part")
        gold = parts[0]
    gold_parsed = parse_gold(gold)
    answer = parse_answer(response, choices=choice_letter(gold) is not None)
    if not answer:
        return False
    return bool(verify(gold_parsed, answer, timeout_seconds=_timeout()))


def split_items(text: str) -> list[str]:
    """``text`` split at its top-level commas (not inside (), [], {}, nor a thousands separator like 1,000)."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0 and not _THOUSANDS.match(text, i - 1):
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [t.strip() for t in items if t.strip()]


def _boxes(text: str) -> list[str]:
    """Contents of every complete box, in order."""
    out, end = [], len(text)
    while (box := last_box(text[:end])) is not None:
        inner = text[box[0]:box[1]]
        out.append(inner[inner.index("{") + 1 : -1])
        end = box[0]
    return out[::-1]


def answer_items(response: str, n_parts: int) -> list[str]:
    """The response's answers to a gold of ``n_parts`` parts: the last box's items, or the last boxes."""
    boxes = _boxes(response)
    if not boxes:
        return []
    items = split_items(boxes[-1])
    if len(items) == 1 and len(boxes) >= n_parts:
        items = boxes[-n_parts:]
    return items


def _grade_parts(parts: list[str], response: str) -> bool:
    golds = [parse_gold(p) for p in parts]  # a bad part is an error even when the response has no answer
    items = answer_items(response, len(parts))
    if len(items) != len(parts):
        return False
    answers = [parse_answer(f"\\boxed{{{item}}}") for item in items]
    match = [[bool(a) and bool(verify(g, a, timeout_seconds=_timeout())) for a in answers] for g in golds]
    return _perfect_matching(match)


def _perfect_matching(match: list[list[bool]]) -> bool:
    """Whether every row (gold part) pairs with its own column (answer item): augmenting paths (Kuhn)."""
    owner: dict[int, int] = {}

    def assign(row: int, seen: set[int]) -> bool:
        for col, ok in enumerate(match[row]):
            if ok and col not in seen:
                seen.add(col)
                if col not in owner or assign(owner[col], seen):
                    owner[col] = row
                    return True
        return False

    return all(assign(row, set()) for row in range(len(match)))


def final_answer(response: str) -> str | None:
    """Pseudo-gold: the last box after ``</think>`` when math-verify parses it, else None (no think block closed,
    no box after it, or an unparseable one)."""
    _, think, summary = response.rpartition("</think>")
    if not think:
        return None
    boxes = _boxes(summary)
    if not boxes or not boxes[-1].strip():
        return None
    try:
        parse_gold(boxes[-1])
    except RdptError:
        return None
    return boxes[-1].strip()


def extract_answer(response: str) -> str | None:
    """The answer text math-verify found in ``response`` (for reports), or None."""
    parsed = parse_answer(response, choices=True)
    # parse returns [sympy object(s)..., matched string]; the string is what the model wrote
    strings = [p for p in parsed if isinstance(p, str)]
    if strings:
        return strings[-1]
    return str(parsed[0]) if parsed else None


def row_gold(answer, parts=None) -> str | list[str]:
    """The gold of a `generations` row: its ``answer_parts`` when it has several (multi-part gold), else
    ``answer`` (rows of one-part benchmarks have no ``answer_parts``; a table mixing both reads NaN there)."""
    if isinstance(parts, (list, tuple)) or hasattr(parts, "tolist"):
        parts = [str(p) for p in list(parts)]
        if len(parts) > 1:
            return parts
    return str(answer)


def evaluate(generations: dict[str, str], out: str) -> pd.DataFrame:
    """The evaluate stage: grade every response of every model with math-verify; a bad gold names file and row::

        python stages/evaluate.py --teacher data/generations/teacher.jsonl \\
            --student data/generations/student.jsonl --distilled data/generations/distilled.jsonl \\
            --out data/graded.parquet
    """
    frames = []
    for role, path in generations.items():
        df = read_table(path, "generations")
        parts = df["answer_parts"] if "answer_parts" in df.columns else [None] * len(df)
        correct = []
        for i, (gold, gold_parts, text) in enumerate(zip(df["answer"], parts, df["text"])):
            try:
                correct.append(bool(grade(row_gold(gold, gold_parts), str(text))))
            except RdptError as err:
                raise RdptError(f"{path}: row {i}: {err}") from None
        invalid = df["text"].astype(str).str.contains("\ufffd", regex=False)
        frames.append(df.assign(model=role, correct=correct, replacement_char=invalid)[list(SCHEMAS["graded"])])
    graded = pd.concat(frames, ignore_index=True)
    write_table(out, graded, "graded")
    return graded
