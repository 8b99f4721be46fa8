"""A selection as chat JSONL, the conversational format TRL's ``SFTTrainer`` and LLaMA-Factory (``formatting:
sharegpt`` with OpenAI-style tags) read as is: one line per example,
``{"messages": [{"role": "system", ...}?, {"role": "user", "content": question}, {"role": "assistant",
"content": response}]}``::

    python -c "from rdpt.selection.chat import chat_messages; print(chat_messages('1 + 1?', '2', None))"
"""

from __future__ import annotations

from pathlib import Path

from rdpt.io.artifacts import write_jsonl


def chat_messages(question: str, response: str, system_prompt: str | None) -> list[dict[str, str]]:
    """The conversation fine-tuning renders for one example: a system message only when there is a system prompt
    (an empty string means none, as in :func:`rdpt.models.render_prompt`)."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return system + [{"role": "user", "content": question}, {"role": "assistant", "content": response}]


def write_chat(path: str | Path, records: list[dict], system_prompt: str | None) -> None:
    """``records`` (selection rows: ``question``, ``text``, maybe ``system_prompt``) as chat JSONL at ``path``.

    The system prompt is the one the student is fine-tuned with (rdpt.training.launch): the row's own (the
    prompt its response was sampled under, data.train.system_prompt) when it has one, else ``system_prompt``
    (models.student.system_prompt)."""
    def system_of(row: dict) -> str | None:
        own = row.get("system_prompt")  # null in a row that has none (rows of several sources)
        return own if isinstance(own, str) else system_prompt

    write_jsonl(path, [{"messages": chat_messages(r["question"], r["text"], system_of(r))} for r in records])
