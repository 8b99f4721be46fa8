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
  naming the verified checkpoints in the real-asset cache, so that the preset names fixed paths whatever
  ``$RDPT_REAL_CACHE`` is. The teacher's reference names a folder beside gemma-3's converted checkpoint whose
  ``generation_config.json`` adds the ``"\\n\\n"`` token to the end ids: a base model has no end-of-answer token
  and runs on into new questions after its answer; the worked examples end each answer with a blank line.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import click

from rdpt.models import ModelRef, write_ref
from rdpt.real_assets import asset_path, cache_dir

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


def teacher_folder() -> Path:
    """gemma-3's converted checkpoint, linked file by file, with "\\n\\n" added to its end ids."""
    source = asset_path("gemma3")  # verified (sha256) on every call
    folder = cache_dir() / "hf" / "gemma3-stop-blank-line"
    folder.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        link = folder / path.name
        if path.name != "generation_config.json" and not link.exists():
            os.symlink(path, link)
    config = json.loads((source / "generation_config.json").read_text())
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    blank = tokenizer(TEACHER_STOP, add_special_tokens=False)["input_ids"]
    assert len(blank) == 1, f"{TEACHER_STOP!r} is not one gemma token: {blank}"
    ends = config.get("eos_token_id")
    ends = [ends] if isinstance(ends, int) else list(ends or [])
    config["eos_token_id"] = ends + [i for i in [tokenizer.convert_tokens_to_ids("<end_of_turn>"), blank[0]]
                                     if i not in ends]
    (folder / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def prepare(out: str | Path, n_train: int, n_test: int, seed: int) -> dict:
    out = Path(out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    train, test = problems(n_train, n_test, seed)
    for name, rows in (("train", train), ("one_step", test)):
        with open(out / f"{name}.jsonl", "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    write_ref(out / "models" / "teacher", ModelRef(str(teacher_folder())))
    write_ref(out / "models" / "student", ModelRef(str(asset_path("smollm2"))))
    return {"n_train": len(train), "n_test": len(test), "seed": seed, "teacher": str(teacher_folder()),
            "student": str(asset_path("smollm2"))}


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
