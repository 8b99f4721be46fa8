"""The real-weights world: one-step word problems for two real pretrained models of different families.

``configs/real-cpu.yaml`` traces real models on this 2-core CPU: teacher **gemma-3-270m** (base, Gemma
tokenizer, 262,144 tokens, prompted with two worked examples), student **SmolLM2-135M-Instruct** (Llama,
49,152-token BPE, its own ChatML template), and the student fine-tuned on the teacher's answers. Both come from
package registries (:mod:`rdpt.real_assets`). This module writes what the preset's stages read::

    python -m rdpt.real_world prepare --out data/real     # questions + model references, a few seconds

- ``train.jsonl`` / ``one_step.jsonl``: ``id, question, answer`` one-step word problems ("Noor has 21 stamps.
  Noor buys 5 more stamps. How many stamps does Noor have now?"), add / subtract / multiply / divide, several
  phrasings each, in GSM8K's plain style. The test questions never appear in the training questions.
  Why not GSM8K or GSM-Symbolic: both models are far too weak for them (issue 17 measured 3% for SmolLM2 on
  2-3-step problems; GSM-Symbolic's templates are GSM8K's 2-8-step problems), while on one step the teacher
  gets ~35% and the student ~10%, a gap distillation can close.
- ``models/teacher`` and ``models/student``: model-reference folders (:data:`rdpt.models.MODEL_REF_FILE`)
  naming the real assets (``gemma3``, ``smollm2``), found in the real-asset cache and checked by sha256 when a
  model loads, so the references are the same on every machine and the stage runs without the assets. The
  teacher's reference adds the ``"\\n\\n"`` token to gemma-3's end ids (:func:`rdpt.real_assets.asset_path`):
  a base model has no end-of-answer token and runs on into new questions after its answer; the worked examples
  end each answer with a blank line.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import click

from rdpt.io.artifacts import atomic_dir, write_jsonl
from rdpt.models import write_ref

NAMES = ["Eva", "Liam", "Noor", "Kenji", "Ana", "Tom", "Maya", "Omar", "Lena", "Ravi", "Sofia", "Mateo", "Aisha",
         "Jonas", "Mei", "Carlos", "Priya", "Felix", "Zara", "Hugo"]
THINGS = ["stamps", "apples", "marbles", "books", "stickers", "shells", "pencils", "cards", "coins", "beads"]
CONTAINERS = [("box", "boxes"), ("bag", "bags"), ("jar", "jars"), ("pack", "packs"), ("basket", "baskets")]

# (operation, phrasing); {n} name, {t} thing, {c}/{cs} container; a, b are the numbers; answers are integers
TEMPLATES = [
    ("add", "{n} has {a} {t}. {n} buys {b} more {t}. How many {t} does {n} have now?"),
    ("add", "{n} collected {a} {t} on Monday and {b} {t} on Tuesday. How many {t} did {n} collect in all?"),
    ("add", "There are {a} {t} in a {c}. {n} puts in {b} more. How many {t} are in the {c} now?"),
    ("sub", "{n} has {a} {t}. {n} gives away {b} {t}. How many {t} does {n} have left?"),
    ("sub", "A {c} holds {a} {t}. {n} takes out {b} of them. How many {t} are still in the {c}?"),
    ("sub", "{n} needs {a} {t} and already has {b}. How many more {t} does {n} need?"),
    ("mul", "{n} buys {a} {cs} of {t}. Each {c} has {b} {t}. How many {t} does {n} have?"),
    ("mul", "{n} fills {a} {cs} with {b} {t} each. How many {t} does {n} use?"),
    ("div", "{n} shares {a} {t} equally among {b} friends. How many {t} does each friend get?"),
    ("div", "{n} packs {a} {t} into {cs} of {b}. How many {cs} does {n} fill?"),
]

# Two worked examples for the base teacher, each answer closed by a blank line (its stop: see the docstring).
FEW_SHOT = (
    "Question: Ben has 12 marbles. Ben finds 5 more marbles. How many marbles does Ben have now?\n"
    "Answer: Ben has 12 + 5 = 17 marbles. The answer is 17.\n\n"
    "Question: Sara bakes 4 trays of muffins. Each tray holds 6 muffins. How many muffins does Sara bake?\n"
    "Answer: Sara bakes 4 * 6 = 24 muffins. The answer is 24.\n\n"
)
# A base model has no chat template: params give this one (configs/real-cpu.yaml holds the same text).
TEACHER_TEMPLATE = "{% for m in messages %}" + FEW_SHOT + "Question: {{ m['content'] }}\nAnswer:{% endfor %}"
TEACHER_STOP = "\n\n"
TEACHER_ASSET, STUDENT_ASSET = "gemma3", "smollm2"  # rdpt.real_assets names
# The base teacher stops at the blank line, or at gemma's end-of-turn should it write one (both one token).
TEACHER_ENDS = (TEACHER_STOP, "<end_of_turn>")


def numbers(op: str, rng: random.Random) -> tuple[int, int, int]:
    """(a, b, answer) in the ranges the templates read naturally: small counts, exact divisions."""
    if op == "add":
        a, b = rng.randint(5, 60), rng.randint(2, 30)
        return a, b, a + b
    if op == "sub":
        a = rng.randint(10, 80)
        b = rng.randint(2, a - 3)
        return a, b, a - b
    if op == "mul":
        a, b = rng.randint(2, 9), rng.randint(2, 12)
        return a, b, a * b
    b, q = rng.randint(2, 9), rng.randint(2, 9)
    return b * q, b, q


def problem(rng: random.Random) -> tuple[str, int]:
    op, text = rng.choice(TEMPLATES)
    a, b, answer = numbers(op, rng)
    c, cs = rng.choice(CONTAINERS)
    question = text.format(n=rng.choice(NAMES), t=rng.choice(THINGS), c=c, cs=cs, a=a, b=b)
    return question[0].upper() + question[1:], answer


def problems(n_train: int, n_test: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Disjoint train and test questions (distinct texts), each ``{id, question, answer}``."""
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict] = []
    while len(rows) < n_train + n_test:
        question, answer = problem(rng)
        if question not in seen:
            seen.add(question)
            rows.append({"question": question, "answer": str(answer)})
    test = [{"id": f"one_step-{i}", **r} for i, r in enumerate(rows[:n_test])]
    train = [{"id": f"train-{i}", **r} for i, r in enumerate(rows[n_test:])]
    return train, test


def prepare(out: str | Path, n_train: int, n_test: int, seed: int) -> dict:
    """Questions and model references under ``out`` (no asset needed: the loader finds and checks them)."""
    train, test = problems(n_train, n_test, seed)
    with atomic_dir(out) as tmp:  # all of it or nothing
        for name, rows in (("train", train), ("one_step", test)):
            write_jsonl(tmp / f"{name}.jsonl", rows)
        write_ref(tmp / "models" / "teacher", asset=TEACHER_ASSET, end_texts=TEACHER_ENDS)
        write_ref(tmp / "models" / "student", asset=STUDENT_ASSET)
    return {"n_train": len(train), "n_test": len(test), "seed": seed,
            "teacher": {"asset": TEACHER_ASSET, "end_texts": list(TEACHER_ENDS)}, "student": {"asset": STUDENT_ASSET}}


@click.group()
def main() -> None:
    """The real-weights world (configs/real-cpu.yaml)."""


@main.command("prepare")
@click.option("--out", default="data/real", show_default=True)
@click.option("--n-train", default=256, show_default=True)
@click.option("--n-test", default=48, show_default=True)
@click.option("--seed", default=0, show_default=True)
def prepare_cmd(out: str, n_train: int, n_test: int, seed: int) -> None:
    """Write the questions and the model references under OUT."""
    click.echo(json.dumps(prepare(out, n_train, n_test, seed), indent=2))


if __name__ == "__main__":
    main()
