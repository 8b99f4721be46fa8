"""Artifact schemas (one place), checked reads and atomic writes.

Every table a stage writes or reads is declared in :data:`SCHEMAS`; :func:`read_table` checks the
columns, types, missing values and duplicate keys (:data:`KEYS`) and names the file and row on error.
Writes go to a temporary file (or folder) beside the target and are renamed into place, so a stage
that dies, even by SIGKILL, never leaves a half-written artifact that a later stage could read; a
temporary left by a killed stage is removed by the next write of the same target::

    python -c "from rdpt.io.artifacts import SCHEMAS; print(SCHEMAS['sentences'])"
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
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
        # the decoded text holds U+FFFD: sampled bytes that are not valid UTF-8 (e.g. cut inside a character)
        "replacement_char": "bool",
    },
    # one row per sentence (action) of a traced response (`segment`); spans are [start, end) characters
    "sentences": {
        "response_id": "str", "benchmark": "str", "sentence_idx": "int", "start": "int", "end": "int", "text": "str",
    },
    # one row per response that yielded no sentence (recorded, not a crash)
    "empty_responses": {"response_id": "str", "benchmark": "str"},
    # one row per sentence and model (`score@<model>`); mean = sum / n_tokens, NaN when n_tokens == 0;
    # sum_rank = sum of the tokens' ranks under the model, each clipped at score.rank_clip
    "scores": {
        "response_id": "str", "sentence_idx": "int", "n_tokens": "int", "sum_logprob": "float",
        "mean_logprob": "float", "sum_rank": "int",
    },
    # one row per selection candidate with what the strategies read (`select`; rdpt/select.py FEATURES)
    "candidate_features": {
        "question_id": "str", "response_id": "str", "sample_idx": "int", "n_sentences": "int", "n_scored": "int",
        "n_teacher": "int", "n_student": "int", "n_common": "int", "teacher_ratio": "float",
        "student_tokens": "int", "student_mean_logprob": "float", "rsr": "float",
    },
    # one row per re-scored sentence and replicate setup (`noise@<model>`, rdpt/calibrate.py); NaN when n_tokens == 0
    "noise": {
        "response_id": "str", "sentence_idx": "int", "replicate": "str", "dtype": "str", "n_tokens": "int",
        "mean_logprob": "float",
    },
    # one row per sentence with the three models' scores and its class (`classify`)
    "classified": {
        "response_id": "str", "benchmark": "str", "sentence_idx": "int", "p_teacher": "float",
        "p_student": "float", "p_distilled": "float", "cls": "str",
    },
}

# Columns a table may lack (written by newer stages, read only by the options that need them), checked by type when
# present. scores: the score variants' per-sentence statistics (rdpt/provenance/score.py, docs/scoring.md "Score
# variants"): the first token's log-prob and the lowest mean log-prob over WINDOW_TOKENS consecutive tokens; NaN when
# n_tokens == 0. A scores table without them still serves classify.aggregate / select.aggregate: mean.
OPTIONAL_COLUMNS: dict[str, dict[str, str]] = {
    "scores": {"first_logprob": "float", "min_window_logprob": "float"},
}

# name -> the columns that identify a row: a duplicate is an error naming the file and row.
KEYS: dict[str, tuple[str, ...]] = {
    "generations": ("response_id",),
    "graded": ("model", "response_id"),
    "sentences": ("response_id", "sentence_idx"),
    "empty_responses": ("response_id",),
    "scores": ("response_id", "sentence_idx"),
    "classified": ("response_id", "sentence_idx"),
    "noise": ("response_id", "sentence_idx", "replicate"),
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
    for column, kind in OPTIONAL_COLUMNS.get(schema, {}).items():
        if column in df.columns and len(df) and df[column].dtype.kind not in _KINDS[kind]:
            raise RdptError(f"{path}: column {column!r} should be {kind}, found {df[column].dtype}")
    return df


def _check_rows(df: pd.DataFrame, schema: str, path: Path) -> pd.DataFrame:
    """Row-level checks of a table read from disk: text cells hold text, keys are unique."""
    df = df.reset_index(drop=True)
    for column, kind in SCHEMAS[schema].items():
        if kind == "str" and len(df):
            bad = ~df[column].map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
            if bad.any():
                i = int(bad.argmax())
                value = df[column].iloc[i]
                what = "is missing" if value is None or (isinstance(value, float) and math.isnan(value)) else (
                    f"should be text, found {type(value).__name__} {value!r}")
                raise RdptError(f"{path}: row {i}: {column!r} {what}")
    keys = [k for k in KEYS.get(schema, ()) if k in df.columns]
    if keys and len(df):
        dup = df.duplicated(keys).to_numpy()
        if dup.any():
            i = int(dup.argmax())
            value = tuple(getattr(v, "item", lambda v=v: v)() for v in (df[k].iloc[i] for k in keys))
            raise RdptError(f"{path}: row {i}: duplicate {'/'.join(keys)} {value[0] if len(value) == 1 else value!r}")
    return df


def check_same_keys(ref: pd.DataFrame, ref_path: str | Path, other: pd.DataFrame, other_path: str | Path,
                    keys: list[str]) -> None:
    """``other`` must hold exactly the keys of ``ref`` (e.g. one score per sentence); names the first odd one."""
    ref_keys = pd.MultiIndex.from_frame(ref[keys].astype(object))
    other_keys = pd.MultiIndex.from_frame(other[keys].astype(object))
    extra = ~other_keys.isin(ref_keys)
    if extra.any():
        i = int(extra.argmax())
        raise RdptError(f"{other_path}: row {i}: {'/'.join(keys)} {_key(other_keys[i])!r} is not in {ref_path} "
                        "(stale file? dvc repro)")
    missing = ~ref_keys.isin(other_keys)
    if missing.any():
        key = _key(ref_keys[int(missing.argmax())])
        raise RdptError(f"{other_path}: no row for {'/'.join(keys)} {key!r} of {ref_path} (stale file? dvc repro)")


def _key(value) -> Any:
    value = tuple(getattr(v, "item", lambda v=v: v)() for v in value)
    return value[0] if len(value) == 1 else value


def _first_bad_json_line(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for i, line in enumerate(fh):
            try:
                if not isinstance(json.loads(line), dict):
                    return f"row {i}: not a JSON object"
            except ValueError as err:
                return f"row {i}: not valid JSON ({err})"
    return "not valid JSON lines"


def read_table(path: str | Path, schema: str) -> pd.DataFrame:
    """Read a .jsonl or .parquet artifact and check it against ``SCHEMAS[schema]`` (and :data:`KEYS`)."""
    path = Path(path)
    if not path.exists():
        raise RdptError(f"{path}: not found (run the stage that produces it: dvc repro)")
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_json(path, lines=True, dtype=False)
    except ValueError as err:
        where = _first_bad_json_line(path) if path.suffix != ".parquet" else str(err).splitlines()[0]
        raise RdptError(f"{path}: unreadable ({where})") from None
    except OSError as err:  # pyarrow: truncated or not a parquet file
        raise RdptError(f"{path}: unreadable ({str(err).splitlines()[0]})") from None
    if df.empty and len(df.columns) == 0:
        df = pd.DataFrame({c: pd.Series(dtype="object") for c in SCHEMAS[schema]})
    return _check_rows(_check(df, schema, path), schema, path)


def read_json(path: str | Path) -> Any:
    """A JSON artifact (e.g. ``cost.json``), with a one-line error when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise RdptError(f"{path}: not found (run the stage that produces it: dvc repro)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise RdptError(f"{path}: not valid JSON ({err})") from None


def _drop_stale_temporaries(path: Path) -> None:
    """Temporaries of ``path`` left by a killed writer (only one process writes a target at a time)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


_UMASK = os.umask(0)  # read once, at import (reading it means setting it)
os.umask(_UMASK)


def _umask_mode(mode: int) -> int:
    return mode & ~_UMASK


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _drop_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:  # on disk before it is renamed into place
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _umask_mode(0o666))  # mkstemp makes 0600; an artifact is an ordinary file
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only if the block succeeds.

    For outputs that are folders (e.g. ``data/scores/<model>``): their files appear together or not at all.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _drop_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, _umask_mode(0o777))
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
            os.replace(path, old / "old")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, hex, read in 1 MiB blocks (model weights never sit in memory whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path: str | Path, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_clean(payload), indent=2, sort_keys=False, ensure_ascii=False) + "\n")


# Wall-clock fields: they differ on every run, so they never go into an output another stage depends on (DVC
# would see a byte-identical rerun as changed and rerun everything downstream). They go to the stage's own
# timing file instead (``reports/timing/*.json``, a DVC metric nothing depends on).
TIMING_KEYS = ("wall_s", "tokens_per_s")


def split_timing(record: dict) -> tuple[dict, dict]:
    """(``record`` without its wall-clock fields, those fields) — see :data:`TIMING_KEYS`."""
    return ({k: v for k, v in record.items() if k not in TIMING_KEYS},
            {k: v for k, v in record.items() if k in TIMING_KEYS})


def write_timing(path: str | Path | None, timing: dict) -> None:
    """Write a stage's wall-clock record (nothing when the stage was given no timing file)."""
    if path is not None:
        write_json(path, timing)


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
