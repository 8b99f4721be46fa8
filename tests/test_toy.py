"""The toy world: task generator, reasoning styles, tokenizers and a micro build (fast)."""

from __future__ import annotations

import json
import random
import re

import pytest

from rdpt.models import encode_prompt, encode_prompt_response, load_model, load_tokenizer, render_prompt
from rdpt.params import ToyParams
from rdpt.toy import boxed_answer, is_correct, toy_world
from rdpt.toy.styles import STYLES
from rdpt.toy.task import MAX_AMOUNT, MAX_VALUE, MIN_AMOUNT, MIN_VALUE, NAMES, OBJECTS, make_toy_data

MICRO = dict(
    n_train_questions=30, n_test_questions=6, teacher_corpus=60, student_corpus=30, student_one_step=20,
    teacher_layers=1, teacher_hidden=32, teacher_heads=2, teacher_steps=4,
    student_layers=1, student_hidden=32, student_heads=2, student_steps=4,
    batch_size=8, eval_max_new_tokens=8,
)  # fmt: skip


# --- an independent reading of the question text -------------------------------------------------

_PLUS = {"buys", "finds", "gets", "bought", "found", "got"}
_MINUS = {"gives", "loses", "gave", "lost"}


def solve_text(question: str) -> tuple[int, list[int], list[int]]:
    """(answer, amounts, values) computed from the words alone, not from the Problem object."""
    name = re.match(r"(?:At first )?(\w+) ha[sd] (\d+)", question)
    assert name, question
    value = int(name.group(2))
    values, amounts = [value], []
    body = question.split(".", 1)[1].rsplit("How many", 1)[0]
    for clause in re.split(r"\.|,| and ", body):
        words = clause.split()
        if not words:
            continue
        amount = int(next(w for w in words if w.isdigit()))
        if _PLUS & set(words):
            sign = +1
        elif _MINUS & set(words):
            sign = -1
        else:
            raise AssertionError(f"unparsed clause {clause!r} in {question!r}")
        amounts.append(amount)
        values.append(values[-1] + sign * amount)
    return values[-1], amounts, values


@pytest.fixture(scope="module")
def data():
    return make_toy_data(0, 400, 60, {"teacher": 300, "student": 300})


def test_answers_correct_by_construction(data):
    problems = data.train_pool + data.benchmarks["toy_easy"] + data.benchmarks["toy_hard"]
    for p in problems:
        answer, amounts, values = solve_text(p.question())
        assert answer == p.answer
        assert len(amounts) in (2, 3)
        assert all(MIN_AMOUNT <= a <= MAX_AMOUNT for a in amounts)
        assert all(MIN_VALUE <= v <= MAX_VALUE for v in values)


def test_benchmark_shapes(data):
    assert all(p.phrasing == "story" for p in data.benchmarks["toy_easy"])
    assert all(p.phrasing == "summary" and len(p.steps) == 3 for p in data.benchmarks["toy_hard"])
    assert {len(p.steps) for p in data.benchmarks["toy_easy"]} == {2, 3}
    # The hard phrasing exists in training, but rarely.
    summary = sum(p.phrasing == "summary" for p in data.train_pool) / len(data.train_pool)
    assert 0.02 < summary < 0.4


def test_train_and_test_disjoint(data):
    train = data.train_pool + data.corpora["teacher"] + data.corpora["student"]
    test = data.benchmarks["toy_easy"] + data.benchmarks["toy_hard"]
    train_combos = {(p.name, p.obj) for p in train}
    test_combos = {(p.name, p.obj) for p in test}
    assert not train_combos & test_combos
    assert not {p.question() for p in train} & {p.question() for p in test}
    easy, hard = ({p.question() for p in data.benchmarks[b]} for b in ("toy_easy", "toy_hard"))
    assert not easy & hard and len(easy) == len(hard) == 60
    # Held-out COMBINATIONS of seen words: every word of a test question occurs in training.
    words = lambda qs: {w for q in qs for w in re.findall(r"[A-Za-z]+", q)}  # noqa: E731
    assert words(p.question() for p in test) <= words(p.question() for p in train)
    assert {p.name for p in train} == set(NAMES) and {p.obj for p in train} == set(OBJECTS)


def test_data_is_seeded():
    a, b, c = (make_toy_data(s, 50, 10, {"teacher": 20}) for s in (1, 1, 2))
    assert [p.question() for p in a.train_pool] == [p.question() for p in b.train_pool]
    assert [p.question() for p in a.train_pool] != [p.question() for p in c.train_pool]


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_solutions_are_correct_and_boxed(data, role):
    rng = random.Random(0)
    for p in data.corpora[role]:
        text = STYLES[role].solve(p, rng)
        assert boxed_answer(text) == p.answer and is_correct(text, str(p.answer))
        assert text.splitlines()[-1] == f"The answer is \\boxed{{{p.answer}}}."
        for line in text.splitlines():
            if "=" in line:  # a step "a + k = b" or the check "s + k1 - k2 = b": evaluate it
                expr, result = re.search(r"(\d+(?: [+-] \d+)+) = (\d+)\.$", line).groups()
                assert eval(expr) == int(result), line  # noqa: S307 - digits and +/- only


def _sentence_kinds(text: str) -> set[str]:
    kinds = set()
    for line in text.splitlines():
        if line.startswith(("Let me plan", "First, I will")):
            kinds.add("plan")
        elif "starts with" in line:
            kinds.add("start")
        elif ", so " in line:
            kinds.add("verbose_step")
        elif re.fullmatch(r"Now \d+ [+-] \d+ = \d+\.", line):
            kinds.add("terse_step")
        elif line.startswith("Let me check"):
            kinds.add("verify")
        elif line.startswith("Final count"):
            kinds.add("ending")
        elif line.startswith("The answer is"):
            kinds.add("answer")
        else:
            raise AssertionError(f"unknown sentence {line!r}")
    return kinds


def test_styles_overlap_with_different_frequencies(data):
    """Every sentence type occurs in both corpora; plan/verify mostly teacher, terse mostly student."""
    share = {}
    for role in ("teacher", "student"):
        rng = random.Random(0)
        kinds = [_sentence_kinds(STYLES[role].solve(p, rng)) for p in data.corpora[role]]
        share[role] = {k: sum(k in ks for ks in kinds) / len(kinds) for k in
                       ("plan", "start", "verbose_step", "terse_step", "verify", "ending", "answer")}
        assert all(v > 0 for v in share[role].values()), (role, share[role])
    t, s = share["teacher"], share["student"]
    assert t["plan"] > s["plan"] + 0.5 and t["verify"] > s["verify"] + 0.5
    assert s["ending"] > t["ending"] + 0.4 and s["terse_step"] > t["terse_step"]
    assert t["answer"] == s["answer"] == 1.0


def test_boxed_answer():
    assert boxed_answer("x \\boxed{3} then \\boxed{ 12 }.") == 12
    assert boxed_answer("no box") is None
    assert not is_correct("\\boxed{7}", "8") and is_correct("\\boxed{7}", 7)


def test_params_validation():
    with pytest.raises(ValueError):
        ToyParams(teacher_hidden=30, teacher_heads=4)


# --- a micro build: files, reload round trip, tokenizers -----------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    report = toy_world(ToyParams(**MICRO), out, "cpu")
    return out, report


def test_build_writes_data_and_report(world):
    out, report = world
    for name, n in (("train", 30), ("toy_easy", 6), ("toy_hard", 6)):
        rows = [json.loads(line) for line in (out / "data" / f"{name}.jsonl").read_text().splitlines()]
        assert len(rows) == n and len({r["id"] for r in rows}) == n
        assert all(set(r) == {"id", "question", "answer"} and r["answer"].isdigit() for r in rows)
        assert all(solve_text(r["question"])[0] == int(r["answer"]) for r in rows)
    for role in ("teacher", "student"):
        m = report["models"][role]
        assert m["steps"] == 4 and m["params"] > 0 and m["train_wall_s"] >= 0
        assert set(m["accuracy"]) == {"toy_easy", "toy_hard"}
        assert all(0 <= a <= 1 for a in m["accuracy"].values())


def test_tokenizers_round_trip_with_own_vocab_and_template(world):
    out, _ = world
    import torch

    teacher = load_tokenizer(str(out / "models" / "teacher"))
    student = load_tokenizer(str(out / "models" / "student"), padding_side="left")
    assert teacher.padding_side == "right" and student.padding_side == "left"  # set by load_tokenizer
    assert teacher.get_vocab() != student.get_vocab()
    assert teacher.eos_token != student.eos_token and teacher.pad_token_id != teacher.eos_token_id
    assert student.bos_token is None and teacher.bos_token is not None

    question = "Ana has 7 apples. She buys 3 more. Then she gives 2 to Ben. How many apples does Ana have now?"
    t_prompt, s_prompt = render_prompt(teacher, question), render_prompt(student, question)
    assert t_prompt.endswith("<|assistant|>\n") and question in t_prompt
    assert s_prompt == f"Question: {question}\nAnswer:\n"
    t_ids = encode_prompt(teacher, t_prompt)
    assert t_ids[0] == teacher.bos_token_id and t_ids[1] != teacher.bos_token_id  # exactly one BOS
    assert encode_prompt(student, s_prompt)[0] != student.eos_token_id

    response = "She buys 3, so 7 + 3 = 10.\n10 - 2 = 8.\nThe answer is \\boxed{8}."
    for tok, prompt in ((teacher, t_prompt), (student, s_prompt)):
        enc = encode_prompt_response(tok, prompt, response)
        assert tok.decode(enc.response_ids) == response
        tokens = tok.convert_ids_to_tokens(enc.response_ids)
        ends = [s for s, _ in enc.offsets[1:]] + [len(response)]
        for (s, e), token, next_start in zip(enc.offsets, tokens, ends):
            piece = response[s:e]
            assert piece == piece.strip() or piece == "\n"  # trim_offsets: no leading space in a span
            assert tok.convert_tokens_to_string([token]).strip() == piece.strip()
            if s == e:  # zero width: only a lone space token, placed at the word it precedes
                assert tok.convert_tokens_to_string([token]) == " " and s == next_start

    for role in ("teacher", "student"):
        model = load_model(str(out / "models" / role), torch.device("cpu"), torch.float32)
        tok = teacher if role == "teacher" else student
        assert model.config.vocab_size == len(tok)
        assert model.config.eos_token_id == tok.eos_token_id
