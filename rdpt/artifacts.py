"""Artifact schemas (one place), checked reads and atomic writes.

Every table a stage writes or reads is declared in :data:`SCHEMAS`; :func:`read_table` checks the
columns and names the file on error. Writes go to a temporary file in the same folder and are
renamed into place, so a stage that dies never leaves a half-written artifact behind::

    python -c "from rdpt.artifacts import SCHEMAS; print(SCHEMAS['sentences'])"
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from rdpt import RdptError

# name -> {column: dtype kind} ('str', 'int', 'float', 'bool'). Extra columns are allowed.
SCHEMAS: dict[str, dict[str, str]] = {
    # one row per sampled response (`teach`, `generate`)
    "generations": {
        "response_id": "str", "benchmark": "str", "question_id": "str", "sample_idx": "int",
        "question": "str", "answer": "str", "text": "str", "finish_reason": "str", "n_tokens": "int",
    },
    # one row per response with its grade (`evaluate`); `model` is teacher / student / distilled
    "graded": {
        "model": "str", "response_id": "str", "benchmark": "str", "question_id": "str",
        "correct": "bool", "finish_reason": "str", "n_tokens": "int",
    },
    # one row per sentence (action) of a traced response (`segment`); spans are [start, end) characters
    "sentences": {
        "response_id": "str", "benchmark": "str", "sentence_idx": "int", "start": "int", "end": "int", "text": "str",
    },
    # one row per response that yielded no sentence (recorded, not a crash)
    "empty_responses": {"response_id": "str", "benchmark": "str"},
    # one row per sentence and model (`score@<model>`); mean = sum / n_tokens, NaN when n_tokens == 0
    "scores": {
        "response_id": "str", "sentence_idx": "int", "n_tokens": "int", "sum_logprob": "float",
        "mean_logprob": "float",
    },
    # one row per sentence with the three models' scores and its class (`classify`)
    "classified": {
        "response_id": "str", "benchmark": "str", "sentence_idx": "int", "p_teacher": "float",
        "p_student": "float", "p_distilled": "float", "cls": "str",
    },
}

_KINDS = {"str": ("O", "U", "S"), "int": ("i", "u"), "float": ("f", "i", "u"), "bool": ("b",)}


def _check(df: pd.DataFrame, schema: str, path: Path) -> pd.DataFrame:
    for column, kind in SCHEMAS[schema].items():
        if column not in df.columns:
            raise RdptError(f"{path}: missing column {column!r} (expected a {schema} table)")
        if len(df) and df[column].dtype.kind not in _KINDS[kind] and not (
            kind == "str" and pd.api.types.is_string_dtype(df[column])
        ):
            raise RdptError(f"{path}: column {column!r} should be {kind}, found {df[column].dtype}")
    return df


def read_table(path: str | Path, schema: str) -> pd.DataFrame:
    """Read a .jsonl or .parquet artifact and check it against ``SCHEMAS[schema]``."""
    path = Path(path)
    if not path.exists():
        raise RdptError(f"{path}: not found (run the stage that produces it: dvc repro)")
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_json(path, lines=True, dtype=False)
    except ValueError as err:
        raise RdptError(f"{path}: unreadable ({str(err).splitlines()[0]})") from None
    if df.empty and len(df.columns) == 0:
        df = pd.DataFrame({c: pd.Series(dtype="object") for c in SCHEMAS[schema]})
    return _check(df, schema, path)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: str | Path, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_clean(payload), indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_table(path: str | Path, df: pd.DataFrame, schema: str) -> None:
    """Check ``df`` against its schema, then write it (.parquet or .jsonl by suffix) atomically."""
    path = Path(path)
    _check(df, schema, path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_json(tmp, orient="records", lines=True, force_ascii=False)
