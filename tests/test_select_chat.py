"""The chat-JSONL export of each selection (``select_data --chat-out``): one ``{"messages": [...]}`` line per
selected row, read back with ``datasets.load_dataset("json", ...)`` (what TRL's SFTTrainer and LLaMA-Factory
load), system message from the row's own system prompt or the student's::

    pytest tests/test_select_chat.py -q
"""

from __future__ import annotations

import json

import datasets
import numpy as np
import pandas as pd

from rdpt.models import load_tokenizer
from rdpt.params import parse_params
from rdpt.selection.chat import chat_messages
from rdpt.selection.select_data import select_data
from tests.conftest import write_selection_pool

ARMS = ["teacher_count", "random"]


def _pool(tmp_path, system_prompts: list | None = None) -> tuple[str, str, dict[str, str]]:
    """Candidates (2 per question, 4 questions), their sentences and teacher/student scores on disk."""
    cands, sents = [], []
    rng = np.random.default_rng(1)
    for q in range(4):
        for k in range(2):
            rid = f"candidates/q{q}/{k}"
            row = {"response_id": rid, "benchmark": "candidates", "question_id": f"q{q}", "sample_idx": k,
                   "question": f"What is {q} + {k}?", "answer": str(q + k), "text": f"So {q} + {k}. It is {q + k}.",
                   "finish_reason": "stop", "n_tokens": 9}
            if system_prompts is not None:
                row["system_prompt"] = system_prompts[q % len(system_prompts)]
            cands.append(row)
            for j in range(2):
                sents.append({"response_id": rid, "benchmark": "candidates", "sentence_idx": j, "start": 0,
                              "end": 1, "text": "S"})
    return write_selection_pool(tmp_path, cands, sents, rng)


def _params(student: dict):
    return parse_params({"models": {"teacher": {"path": "t"}, "student": {"path": "s", **student}},
                         "data": {"train": {"path": "x"}, "benchmarks": {"b": {"path": "y"}}},
                         "select": {"arms": ARMS, "seeds": [0, 1]}}, "params.yaml")


def _loaded(path) -> list[list[dict]]:
    return datasets.load_dataset("json", data_files=str(path), split="train")["messages"]


def test_each_selection_round_trips_as_chat_messages(tmp_path):
    cands, sents, dirs = _pool(tmp_path)
    select_data(_params({}), cands, sents, dirs, str(tmp_path / "sel"), str(tmp_path / "chat"))
    for arm in ARMS:
        for seed in (0, 1):
            rows = pd.read_json(tmp_path / "sel" / arm / f"seed{seed}.jsonl", lines=True)
            got = _loaded(tmp_path / "chat" / arm / f"seed{seed}.jsonl")
            assert len(got) == len(rows) == 4  # one example per question, in the selection's order
            assert got == [[{"role": "user", "content": q}, {"role": "assistant", "content": t}]
                           for q, t in zip(rows["question"], rows["text"], strict=True)]
    assert got[0][1]["content"].startswith("So 0 + ")  # the selected response, not a rendered prompt


def test_the_system_message_is_the_one_the_student_trains_with(tmp_path):
    cands, sents, dirs = _pool(tmp_path, system_prompts=["Reason step by step.", None])
    select_data(_params({"system_prompt": "You are a helpful assistant."}), cands, sents, dirs,
                str(tmp_path / "sel"), str(tmp_path / "chat"))
    rows = pd.read_json(tmp_path / "sel" / "teacher_count" / "seed0.jsonl", lines=True)
    got = _loaded(tmp_path / "chat" / "teacher_count" / "seed0.jsonl")
    # a row sampled under data.train.system_prompt keeps it (the selection row carries it, select_run trains with
    # it); a row without one gets models.student.system_prompt
    systems = [m[0]["content"] for m in got]
    assert systems == ["Reason step by step.", "You are a helpful assistant."] * 2
    lines = (tmp_path / "sel" / "teacher_count" / "seed0.jsonl").read_text().splitlines()
    assert [json.loads(line)["system_prompt"] for line in lines] == ["Reason step by step.", None] * 2
    assert [m[1:] for m in got] == [[{"role": "user", "content": q}, {"role": "assistant", "content": t}]
                                    for q, t in zip(rows["question"], rows["text"], strict=True)]
    assert chat_messages("q", "r", "")[0]["role"] == "user"  # an empty system prompt means none


def test_a_chat_line_renders_with_the_students_template(tiny_lm_factory):
    """What SFTTrainer does with a conversational example: apply the tokenizer's chat template to messages."""
    template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    tok = load_tokenizer(tiny_lm_factory("chat_lm", ["So 1 + 1. It is 2."], chat_template=template))
    text = tok.apply_chat_template(chat_messages("What is 1 + 1?", "It is 2.", "Be brief."), tokenize=False)
    assert text == "<|system|>Be brief.<|end|><|user|>What is 1 + 1?<|end|><|assistant|>It is 2.<|end|>"
