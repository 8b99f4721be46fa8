"""Property tests (issue 16): arbitrary params values, YAML text and dataset rows given to validation end in
either a one-line :class:`RdptError` or a completed load; never another exception, never a multi-line message.

    python -m pytest tests/test_bad_inputs_property.py -q
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rdpt import RdptError
from rdpt.params import Params, parse_params, parse_yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def _leaves(node, prefix=()):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, (*prefix, key))
    else:
        yield prefix


def _stage(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PARAMS_CHECK = _stage("params_check")
LEAVES = [p for p in _leaves(DEFAULT) if p]
SECTIONS = [p[:-1] for p in LEAVES if len(p) > 1]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["auto", "cosine", "hf", "vllm", "../x", "a/b", "", "4", "yes", "1e-3", ".inf"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=8)


def _assert_one_line(err: RdptError, source: str) -> None:
    text = str(err)
    assert text.startswith(f"{source}: ") and "\n" not in text and "\r" not in text and len(text) < 2000


def _set(data: dict, path: tuple, value) -> None:
    node = data
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


@pytest.fixture(scope="module")
def params_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("property_params")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(LEAVES + SECTIONS + [("new_key",), ("models", "x")]), values),
                min_size=1, max_size=4))
def test_arbitrary_params_values_give_params_or_one_line(params_dir, changes):
    data = json.loads(json.dumps(DEFAULT))
    for path, value in changes:
        _set(data, path, value)
    # through the written file and the params_check stage: exit 0, or exit 1 with one `error:` line
    params_file = params_dir / "params.yaml"
    params_file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    result = CliRunner().invoke(PARAMS_CHECK.main, ["--params", str(params_file)])
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        assert result.output.count("\n") == 1 and result.output.startswith(f"error: {params_file}: ")
    try:
        params = parse_params(data, "params.yaml")
    except RdptError as err:
        _assert_one_line(err, "params.yaml")
        assert result.exit_code == 1
        return
    assert isinstance(params, Params)
    # what validated is usable: finite numbers, plain benchmark names, seeds in numpy's range
    for name in params.data.benchmarks:
        assert "/" not in name and name not in (".", "..") and not name.startswith((".", "-"))
    assert 0 <= params.seed < 2**32
    for section in (params.teach, params.generate, params.distill, params.server):
        for value in section.model_dump().values():
            assert not (isinstance(value, float) and not math.isfinite(value))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_yaml_text_gives_data_or_one_line(text):
    try:
        parse_yaml(text, "p.yaml")
    except RdptError as err:
        _assert_one_line(err, "p.yaml")


row_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False, width=32),
                       st.text(max_size=12), st.sampled_from(["2", "\\frac{1}{2}", "\\frac{", "(C)", "?!", " "]))
rows = st.lists(st.dictionaries(st.sampled_from(["question", "answer", "id", "other"]), row_values, max_size=4),
                max_size=5)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("property_rows")


_counter = iter(range(10**9))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(rows, st.sampled_from(["jsonl", "csv", "raw"]), st.binary(max_size=40), st.booleans())
def test_arbitrary_dataset_rows_give_questions_or_one_line(data_dir, rows, kind, noise, with_id):
    from rdpt.io.data import load_questions
    from rdpt.params import DatasetSpec

    path = data_dir / f"d{next(_counter)}.{'csv' if kind == 'csv' else 'jsonl'}"
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "csv":
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["question", "answer", "id"])
        for r in rows:
            writer.writerow([r.get("question", ""), r.get("answer", ""), r.get("id", "")])
        path.write_text(out.getvalue())
    else:  # arbitrary bytes after a valid row: garbled, non-UTF-8, torn
        path.write_bytes(b'{"question": "q", "answer": "1"}\n' + noise)
    spec = DatasetSpec(path=str(path), id_field="id" if with_id else None)
    try:
        questions = load_questions(spec)
    except RdptError as err:
        _assert_one_line(err, str(path) if not str(err).startswith("dataset ") else f"dataset {str(path)!r}")
        return
    assert questions and all(q.question.strip() and q.answer.strip() for q in questions)
    assert len({q.id for q in questions}) == len(questions)
