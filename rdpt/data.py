"""Questions and gold answers, loaded through `datasets` so a local file and a hub id take one path.

    python -c "from rdpt.params import load_params; from rdpt.data import load_questions; \
p = load_params(); print(load_questions(p.data.benchmarks['toy_easy'])[:2])"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rdpt import RdptError
from rdpt.params import DatasetSpec

_LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answer: str


def _load(spec: DatasetSpec):
    import datasets

    datasets.disable_progress_bars()
    local = Path(spec.path)
    try:
        if local.is_file():
            builder = _LOCAL_BUILDERS.get(local.suffix)
            if builder is None:
                raise RdptError(f"{spec.path}: unsupported file type (use .jsonl, .json, .csv or .parquet)")
            return datasets.load_dataset(builder, data_files=str(local), split="train")
        if local.suffix in _LOCAL_BUILDERS or spec.path.startswith((".", "/")):
            raise RdptError(f"{spec.path}: dataset file not found")
        return datasets.load_dataset(spec.path, spec.name, split=spec.split, revision=spec.revision)
    except RdptError:
        raise
    except Exception as err:  # noqa: BLE001 - one actionable line for every loading failure
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RdptError(f"dataset {spec.path!r}: cannot load ({first})") from None


def load_questions(spec: DatasetSpec) -> list[Question]:
    """Rows as :class:`Question`; a row without a question or gold answer is an error naming the row."""
    ds = _load(spec)
    for field in (spec.question_field, spec.answer_field) + ((spec.id_field,) if spec.id_field else ()):
        if field not in ds.column_names:
            raise RdptError(f"{spec.path}: no column {field!r} (columns: {', '.join(ds.column_names)})")
    if spec.limit is not None:
        ds = ds.select(range(min(spec.limit, len(ds))))
    questions: list[Question] = []
    seen: set[str] = set()
    for i, row in enumerate(ds):
        q, a = row[spec.question_field], row[spec.answer_field]
        if q is None or not str(q).strip():
            raise RdptError(f"{spec.path}: row {i}: empty or missing {spec.question_field!r}")
        if a is None or not str(a).strip():
            raise RdptError(f"{spec.path}: row {i}: empty or missing gold answer {spec.answer_field!r}")
        qid = str(row[spec.id_field]) if spec.id_field else str(i)
        if qid in seen:
            raise RdptError(f"{spec.path}: row {i}: duplicate id {qid!r} in {spec.id_field!r}")
        seen.add(qid)
        questions.append(Question(qid, str(q), str(a)))
    if not questions:
        raise RdptError(f"{spec.path}: no rows")
    return questions
