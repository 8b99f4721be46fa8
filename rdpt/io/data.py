"""Questions and gold answers, loaded through `datasets` so a local file and a hub id take one path.

    python -c "from rdpt.params import load_params; from rdpt.io.data import load_questions; \
p = load_params(); print(load_questions(p.data.benchmarks['toy_easy'])[:2])"

Real benchmarks load through the same :class:`~rdpt.params.DatasetSpec` fields (see ``configs/``): AIME's
integer answers become strings, MATH-500's LaTeX answers are kept as written (math-verify reads them), and a
multiple-choice set such as GPQA (``distractor_fields``) becomes a question with lettered options whose gold
answer is a letter. ``prompt_template`` wraps the question in an instruction (e.g. where to put the answer).
A list gold (``answer_format: list``, OlympiadBench's ``final_answer``) becomes the question's gold parts, all of
which a response must answer (:func:`rdpt.generation.grade.grade`). ``filter`` keeps the rows whose columns hold
given values (AceReason-1.1-SFT's math rows); a candidate dataset may read question and response from one
conversation column by role (``chat``: OpenThoughts3) and take each row's gold from its own response
(``pseudo_gold``).

A dataset is checked whole when it is loaded, so a bad row fails the stage before any model runs, in one line
naming the file and the row: a local JSONL/CSV file must be UTF-8 and well formed (every line a JSON object;
every CSV row as many fields as the header), must have rows, and every gold answer must parse with math-verify
(:func:`rdpt.generation.grade.parse_gold`, the parse grading uses).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from string import ascii_uppercase

from rdpt import RdptError
from rdpt.params import DatasetSpec

_DOLLARS = re.compile(r"\$[^$]*\$")  # one inline-math span, the whole cell
_LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answer: str  # the gold; for a gold of several parts, the parts joined by ", " (for reading only)
    parts: tuple[str, ...] = ()  # a gold of several parts (answer_format: list), all to be answered; else ()

    @property
    def gold(self) -> str | list[str]:
        """What :func:`rdpt.generation.grade.grade` takes: the parts when there are several, else the answer."""
        return list(self.parts) if self.parts else self.answer


def _check_text_file(path: Path) -> None:
    """A local JSON/JSONL/CSV file is UTF-8, well formed and has rows; else one line naming file and row."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise RdptError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        byte = raw[err.start]
        raise RdptError(f"{path}: line {line}: not UTF-8 text (byte 0x{byte:02x}); save it as UTF-8") from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise RdptError(f"{path}: empty file (no rows)")
    if path.suffix == ".csv":
        _check_csv(path, text)
    elif path.suffix == ".jsonl" or not _check_json_array(path, text):
        _check_jsonl(path, text)


def _check_json_array(path: Path, text: str) -> bool:
    """True when ``text`` is one JSON document (checked: a non-empty list of objects, or an object)."""
    try:
        data = json.loads(text)
    except ValueError:
        return False  # JSON lines, checked line by line
    if isinstance(data, list):
        if not data:
            raise RdptError(f"{path}: no rows (an empty JSON list)")
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise RdptError(f"{path}: row {i}: not a JSON object (found {type(row).__name__})")
    elif not isinstance(data, dict):
        raise RdptError(f"{path}: expected JSON objects, one per line (found a {type(data).__name__})")
    return True


def _check_jsonl(path: Path, text: str) -> None:
    row, columns = 0, False
    for line_no, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            msg = getattr(err, "msg", str(err))
            raise RdptError(f"{path}: row {row} (line {line_no}): not valid JSON ({msg})") from None
        if not isinstance(record, dict):
            raise RdptError(f"{path}: row {row} (line {line_no}): not a JSON object (found {type(record).__name__})")
        columns = columns or bool(record)
        row += 1
    if not columns:
        raise RdptError(f"{path}: no columns (every row is an empty JSON object)")


def _check_csv(path: Path, text: str) -> None:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header, row = None, 0
    try:
        for fields in reader:
            if not fields:
                continue  # a blank line
            if header is None:
                header = fields
                if len(set(header)) != len(header) or any(not h.strip() for h in header):
                    raise RdptError(f"{path}: line {reader.line_num}: the header needs distinct, non-empty column "
                                    f"names (found {header!r:.100})")
                continue
            if len(fields) != len(header):
                raise RdptError(f"{path}: row {row} (line {reader.line_num}): {len(fields)} fields, the header "
                                f"has {len(header)}")
            row += 1
    except csv.Error as err:
        raise RdptError(f"{path}: row {row} (line {reader.line_num}): not valid CSV ({err})") from None
    if row == 0:
        raise RdptError(f"{path}: no rows (only a header line)")


def _first_line(err: BaseException) -> str:
    """The innermost cause's first line (datasets wraps the useful message: "An error occurred while ...")."""
    lines = []
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err).strip()
        lines.append(text.splitlines()[0] if text else type(err).__name__)
        err = err.__cause__ or err.__context__
    return lines[-1] if lines else "unknown error"


def _load(spec: DatasetSpec):
    import datasets

    datasets.disable_progress_bars()
    local = Path(spec.path)
    try:
        if local.is_file():
            builder = _LOCAL_BUILDERS.get(local.suffix)
            if builder is None:
                raise RdptError(f"{spec.path}: unsupported file type (use .jsonl, .json, .csv or .parquet)")
            if builder in ("json", "csv"):
                _check_text_file(local)
            return datasets.load_dataset(builder, data_files=str(local), split="train")
        if local.suffix in _LOCAL_BUILDERS or spec.path.startswith((".", "/")):
            raise RdptError(f"{spec.path}: dataset file not found")
        return datasets.load_dataset(spec.path, spec.name, split=spec.split, revision=spec.revision)
    except RdptError:
        raise
    except Exception as err:  # noqa: BLE001 - one actionable line for every loading failure
        raise RdptError(f"dataset {spec.path!r}: cannot load ({_first_line(err)})") from None


@lru_cache(maxsize=65536)
def _gold_problem(gold: str) -> str | None:
    from rdpt.generation.grade import parse_gold

    try:
        parse_gold(gold)
    except RdptError as err:
        return str(err)
    return None


def check_gold(path: str, i: int, gold: str) -> None:
    """A gold answer math-verify cannot parse is an error naming the dataset file and row, at load time
    (else it would be found only after sampling, and would silently grade every response wrong)."""
    problem = _gold_problem(gold)
    if problem is not None:
        raise RdptError(f"{path}: row {i}: {problem}")


def option_order(question_id: str, n: int) -> list[int]:
    """The order in which ``n`` options of a question are shown: a permutation fixed by the question id.

    Each option index is ranked by a SHA-256 of (id, index), so the order is the same in every run, process and
    Python version, differs between questions (the right option is not always A), and needs no seed param.
    """
    return sorted(range(n), key=lambda j: hashlib.sha256(f"{question_id}\0{j}".encode()).digest())


def _multiple_choice(spec: DatasetSpec, row: dict, question: str, qid: str, i: int) -> tuple[str, str]:
    """Question text with options lettered A, B, ... in :func:`option_order`, and the right option's letter."""
    fields = [spec.answer_field, *spec.distractor_fields]
    options = []
    for field in fields:
        value = row[field]
        if value is None or not str(value).strip():
            raise RdptError(f"{spec.path}: row {i}: empty or missing option {field!r}")
        options.append(str(value).strip())
    if len(set(options)) < len(options):
        # two identical options would make the gold letter ambiguous
        raise RdptError(f"{spec.path}: row {i}: two options have the same text")
    order = option_order(qid, len(options))
    lines = [f"{ascii_uppercase[k]}) {options[j]}" for k, j in enumerate(order)]
    return question.strip() + "\n\n" + "\n".join(lines), ascii_uppercase[order.index(0)]


def _require_text(path: str, row: int, value, what: str) -> None:
    """A cell that must hold non-blank text: one line naming the file, the row and the column."""
    if value is None or not str(value).strip():
        raise RdptError(f"{path}: row {row}: empty or missing {what}")


def _rows(ds, spec, fields) -> list[tuple[int, dict]]:
    """(row index in the file, row) of the rows ``spec.filter`` keeps, the first ``spec.limit`` of them; the
    columns in ``fields`` and the filter's must exist (one line naming the dataset and the column)."""
    needed = [f for f in fields if f] + list(spec.filter or {})
    for field in needed:
        if field not in ds.column_names:
            raise RdptError(f"{spec.path}: no column {field!r} (columns: {', '.join(ds.column_names)})")
    if spec.filter:
        wanted = {c: v if isinstance(v, list) else [v] for c, v in spec.filter.items()}
        # type-exact: YAML's true must not keep a row holding 1, nor 1 a row holding True
        keep = [i for i, row in enumerate(ds.select_columns(list(wanted)))
                if all(any(type(row[c]) is type(v) and row[c] == v for v in vs) for c, vs in wanted.items())]
        if not keep:
            raise RdptError(f"{spec.path}: no row matches filter {spec.filter!r}")
    else:
        keep = list(range(len(ds)))
    if spec.limit is not None:
        keep = keep[: spec.limit]
    return list(zip(keep, ds.select(keep))) if keep != list(range(len(ds))) else list(enumerate(ds))


def _gold_parts(spec: DatasetSpec, i: int, row: dict) -> tuple[str, ...]:
    """A list gold's parts as text; each must be non-blank and parse (one line naming file, row and column)."""
    from rdpt.generation.grade import split_items

    value = row[spec.answer_field]
    if not isinstance(value, (list, tuple)):
        raise RdptError(f"{spec.path}: row {i}: gold answer {spec.answer_field!r} should be a list "
                        f"(answer_format: list), found {type(value).__name__}")
    if not value:
        raise RdptError(f"{spec.path}: row {i}: empty list in gold answer {spec.answer_field!r}")
    for part in value:
        _require_text(spec.path, i, part, f"part of gold answer {spec.answer_field!r}")
    parts = [str(p).strip() for p in value]
    if spec.multiple_answer_field is not None:
        multiple = row[spec.multiple_answer_field]
        if not isinstance(multiple, bool):
            raise RdptError(f"{spec.path}: row {i}: {spec.multiple_answer_field!r} should be true or false, found "
                            f"{multiple!r}")
        if multiple and len(parts) == 1:
            # '$2, 3$' -> '$2$', '$3$': each part keeps the gold's math delimiters
            wrapped = _DOLLARS.fullmatch(parts[0]) is not None
            items = split_items(parts[0][1:-1] if wrapped else parts[0])
            if len(items) > 1:
                parts = [f"${t}$" if wrapped else t for t in items]
    for part in parts:
        check_gold(spec.path, i, part)
    return tuple(parts)


def load_questions(spec: DatasetSpec) -> list[Question]:
    """Rows as :class:`Question`; a row without a question or gold answer is an error naming the row."""
    ds = _load(spec)
    fields = (spec.question_field, spec.answer_field, *(spec.distractor_fields or ()), spec.id_field,
              spec.multiple_answer_field)
    questions: list[Question] = []
    seen: set[str] = set()
    for i, row in _rows(ds, spec, fields):
        q, a = row[spec.question_field], row[spec.answer_field]
        _require_text(spec.path, i, q, repr(spec.question_field))
        parts: tuple[str, ...] = ()
        if spec.answer_format == "list":
            parts = _gold_parts(spec, i, row)
            a = ", ".join(parts)
            parts = parts if len(parts) > 1 else ()  # one part: an ordinary answer
        _require_text(spec.path, i, a, f"gold answer {spec.answer_field!r}")
        qid = str(row[spec.id_field]) if spec.id_field else str(i)
        if qid in seen:
            raise RdptError(f"{spec.path}: row {i}: duplicate id {qid!r} in {spec.id_field!r}")
        seen.add(qid)
        q, a = str(q), str(a)
        if spec.distractor_fields:
            q, a = _multiple_choice(spec, row, q, qid, i)
        if not parts:
            check_gold(spec.path, i, a)
        if spec.prompt_template is not None:
            q = spec.prompt_template.replace("{question}", q)
        questions.append(Question(qid, q, a, parts))
    if not questions:
        raise RdptError(f"{spec.path}: no rows")
    return questions


@dataclass(frozen=True)
class Candidate:
    """One response of a candidate dataset (several per question) for data selection."""

    question_id: str
    sample_idx: int  # order among the question's candidates in the file (ties in selection go to the earliest)
    question: str
    answer: str  # "" when the dataset has no gold answer column
    response: str
    source: str  # the model that wrote it, "" when unknown


def _chat_texts(spec, i: int, row: dict) -> tuple[object, object]:
    """(question, response) of a row's conversation column: the one message of each role."""
    chat = spec.chat
    messages = row[chat.column]
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise RdptError(f"{spec.path}: row {i}: {chat.column!r} should be a list of messages, found "
                        f"{type(messages).__name__}")
    texts = {}
    for role in (chat.question_role, chat.response_role):
        found = [m.get(chat.content_key) for m in messages if m.get(chat.role_key) == role]
        if len(found) != 1:
            raise RdptError(f"{spec.path}: row {i}: {chat.column!r} has {len(found)} messages with "
                            f"{chat.role_key} {role!r} (expected one)")
        texts[role] = found[0]
    return texts[chat.question_role], texts[chat.response_role]


def load_candidates(spec) -> list[Candidate]:
    """Rows of a :class:`~rdpt.params.CandidateDataset` as candidates grouped by question.

    Without ``id_field``, rows with the same question text belong to one question (id = its first row).
    A row without a question or response is an error naming the row; a question whose rows disagree on
    the gold answer is an error too (the answer decides which candidates are kept). With ``pseudo_gold`` each
    row's gold is its own final answer (:func:`rdpt.generation.grade.final_answer`; "" when it has none).
    """
    from rdpt.generation.grade import final_answer

    ds = _load(spec)
    text_fields = [spec.chat.column] if spec.chat else [spec.question_field, spec.response_field]
    fields = [*text_fields, spec.answer_field, spec.id_field, spec.source_field]
    out: list[Candidate] = []
    ids_of_text: dict[str, str] = {}
    gold: dict[str, str] = {}
    count: dict[str, int] = {}
    for i, row in _rows(ds, spec, fields):
        q, r = _chat_texts(spec, i, row) if spec.chat else (row[spec.question_field], row[spec.response_field])
        _require_text(spec.path, i, q, f"question in {spec.chat.column!r}" if spec.chat else repr(spec.question_field))
        _require_text(spec.path, i, r, f"response in {spec.chat.column!r}" if spec.chat else
                      f"response {spec.response_field!r}")
        q = str(q)
        qid = str(row[spec.id_field]) if spec.id_field else ids_of_text.setdefault(q, str(i))
        a = ""
        if spec.pseudo_gold:
            a = final_answer(str(r)) or ""
        elif spec.answer_field:
            raw = row[spec.answer_field]
            if raw is None or not str(raw).strip():
                raise RdptError(f"{spec.path}: row {i}: empty or missing gold answer {spec.answer_field!r}")
            a = str(raw)
            if qid not in gold:
                check_gold(spec.path, i, a)
            if gold.setdefault(qid, a) != a:
                raise RdptError(f"{spec.path}: row {i}: question {qid!r} has two gold answers "
                                f"({gold[qid]!r} and {a!r})")
        source = str(row[spec.source_field]) if spec.source_field and row[spec.source_field] is not None else ""
        k = count.get(qid, 0)
        count[qid] = k + 1
        out.append(Candidate(qid, k, q, a, str(r), source))
    if not out:
        raise RdptError(f"{spec.path}: no rows")
    return out
