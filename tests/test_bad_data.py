"""Bad datasets, tampered journals, broken chat templates and an unreachable hub (issue 16, items 4, 5, 6, 10).

Every case is one line naming the file and row (or the model), or, for a journal, a record that is dropped and
recomputed; never a traceback, never a partial output.

    python -m pytest tests/test_bad_data.py -q
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rdpt import RdptError
from rdpt.io.data import load_candidates, load_questions
from rdpt.io.journal import Journal, record_checksum
from rdpt.params import CandidateDataset, DatasetSpec

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}A: {% endif %}"


# ------------------------------------------------------------------------- datasets (items 5 and 6)
BAD_FILES = [
    ("q.jsonl", b'{"question": "a", "answer": "1"}\n{"question": "caf\xe9", "answer": "2"}\n',
     "line 2: not UTF-8 text (byte 0xe9); save it as UTF-8"),
    ("q.csv", b'question,answer\n"caf\xe9",1\n', "line 2: not UTF-8 text (byte 0xe9)"),
    ("q.json", b'[{"question": "\xff", "answer": "1"}]', "line 1: not UTF-8 text (byte 0xff)"),
    ("q.jsonl", b"", "empty file (no rows)"),
    ("q.jsonl", b"\n  \n", "empty file (no rows)"),
    ("q.csv", b"", "empty file (no rows)"),
    ("q.csv", b"question,answer\n", "no rows (only a header line)"),
    ("q.json", b"[]", "no rows (an empty JSON list)"),
    ("q.jsonl", b'{"question": "a", "answer": "1"}\n{"question": "b", "ans\n', "row 1 (line 2): not valid JSON"),
    ("q.jsonl", b'{"question": "a", "answer": "1"}\n\n[1, 2]\n', "row 1 (line 3): not a JSON object (found list)"),
    ("q.csv", b'question,answer\na,1\nb,2,3\n', "row 1 (line 3): 3 fields, the header has 2"),
    ("q.csv", b'question,answer\n"a,1\n', "row 0 (line 2): not valid CSV (unexpected end of data)"),
    ("q.csv", b'question,question\na,1\n', "line 1: the header needs distinct, non-empty column names"),
    ("q.jsonl", b'{"question": "a", "answer": "1"}\n{"question": "b", "answer": "\\\\frac{"}\n',
     "row 1: gold answer '\\\\frac{' cannot be parsed by math-verify"),
    ("q.csv", b'question,answer\na,1\nb,?!\n', "row 1: gold answer '?!' cannot be parsed by math-verify"),
]


@pytest.mark.parametrize("name, content, message", BAD_FILES)
def test_bad_dataset_files_name_file_and_row(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RdptError) as err:
        load_questions(DatasetSpec(path=str(path)))
    text = str(err.value)
    assert text == f"{path}: {message}" or (text.startswith(f"{path}: ") and message in text), text
    assert "\n" not in text
    assert [p.name for p in tmp_path.iterdir()] == [name]  # nothing written beside it


def test_gold_is_parsed_when_candidates_are_loaded(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"question": "a", "response": "r1", "answer": "2"}, {"question": "a", "response": "r2", "answer": "2"},
            {"question": "b", "response": "r3", "answer": "\\frac{"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(RdptError, match=r"c.jsonl: row 2: gold answer '\\\\frac\{' cannot be parsed by math-verify"):
        load_candidates(CandidateDataset(path=str(path), answer_field="answer"))
    assert len(load_candidates(CandidateDataset(path=str(path), limit=2, answer_field="answer"))) == 2
    path.write_bytes(b'{"question": "a", "response": "r\xff"}\n')
    with pytest.raises(RdptError, match=r"c.jsonl: line 1: not UTF-8 text"):
        load_candidates(CandidateDataset(path=str(path)))


def test_gold_check_respects_limit_and_accepts_real_answers(tmp_path):
    path = tmp_path / "q.jsonl"
    golds = ["0", "204", "\\frac{1}{2}", "$\\$32,348$", "2\\sqrt{2}", "(C)", "x^2 + 1", "\\frac{"]
    path.write_text("".join(json.dumps({"question": f"q{i}", "answer": g}) + "\n" for i, g in enumerate(golds)))
    assert [q.answer for q in load_questions(DatasetSpec(path=str(path), limit=7))] == golds[:7]
    with pytest.raises(RdptError, match=r"q.jsonl: row 7: gold answer"):
        load_questions(DatasetSpec(path=str(path)))


def test_params_dataset_errors_reach_the_stage_as_one_line(tmp_path):
    """Through a stage: `error: <file>: row N: ...`, exit 1 (params_check does not read data; teach does)."""
    import click
    from click.testing import CliRunner

    from rdpt.cli import params_option, stage
    from rdpt.params import load_params

    @click.command()
    @params_option
    @stage
    def main(params_path):
        params = load_params(params_path)
        load_questions(params.data.train)

    bad = tmp_path / "train.jsonl"
    bad.write_bytes(b'{"question": "a", "answer": "1"}\n{"question": "b", "answer": "\xff"}\n')
    import yaml

    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["data"]["train"] = {"path": str(bad)}
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["--params", str(params)])
    assert result.exit_code == 1 and result.output.strip() == f"error: {bad}: line 2: not UTF-8 text (byte 0xff); " \
                                                              "save it as UTF-8"


# --------------------------------------------------------------------------------- journals (item 4)
def _score_record(keys: list[str], n: int = 2) -> dict:
    return {"keys": keys, "scores": [[[-1.5, n, n], [-0.25, 1, 1]] for _ in keys],
            "stats": {"tokens_scored": 3, "wall_s": 0.1}}


def _sample_record(prompts: list[int]) -> dict:
    return {"prompts": prompts, "samples": [[{"text": "So 5.", "finish_reason": "stop", "n_tokens": 3,
                                              "token_ids": [5, 6, 1]}] for _ in prompts]}


def _write_journal(tmp_path: Path, records: list[tuple[str, dict]]) -> Journal:
    with Journal(tmp_path, "score-teacher", {"k": 1}) as j:
        for unit, data in records:
            j.append(unit, data)
    return j


def _tamper(path: Path, line: int, edit, recompute: bool = True) -> None:
    lines = path.read_text().splitlines(keepends=True)
    record = json.loads(lines[line])
    edit(record)
    if recompute:  # a forger who knows the scheme: the schema checks must catch it
        record["sha256"] = record_checksum(record["unit"], record["data"])
    lines[line] = json.dumps(record) + "\n"
    path.write_text("".join(lines))


def _set_n_tokens(record):
    record["data"]["scores"][0][0][1] = -5


def _duplicate_key(record):
    record["data"]["keys"] = ["r2", "r2"]


def _string_value(record):
    record["data"]["scores"][0][0][0] = "abc"


def _positive_logprob(record):
    record["data"]["scores"][0][0][0] = 3.0


def _inf_stats(record):
    record["data"]["stats"]["wall_s"] = -1


def _bool_count(record):
    record["data"]["scores"][0][1][1] = True


@pytest.mark.parametrize("edit", [_set_n_tokens, _duplicate_key, _string_value, _positive_logprob, _inf_stats,
                                  _bool_count])
def test_tampered_score_records_are_dropped_and_recomputed(tmp_path, caplog, edit):
    j = _write_journal(tmp_path, [("0", _score_record(["r0", "r1"])), ("1", _score_record(["r2", "r3"])),
                                  ("2", _score_record(["r4"]))])
    _tamper(j.path, 1, edit)
    with caplog.at_level(logging.WARNING, logger="rdpt.io.journal"):
        with Journal(tmp_path, "score-teacher", {"k": 1}) as again:
            assert list(again.done) == ["0"]  # the tampered record and those after it are recomputed
            assert again.path.read_text().count("\n") == 1  # truncated to the valid prefix
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "line 2 fails its check" in warnings[0].getMessage()
    assert "dropping it and the 1 line(s) after it; they are recomputed" in warnings[0].getMessage()


@pytest.mark.parametrize("damage", ["flip", "duplicate_json_key", "old_format", "response_twice", "bad_sample"])
def test_damaged_journal_lines_are_dropped(tmp_path, damage):
    j = _write_journal(tmp_path, [("0", _score_record(["r0"])), ("1", _score_record(["r1"]))])
    text = j.path.read_text()
    lines = text.splitlines(keepends=True)
    if damage == "flip":  # edited by hand, checksum left as it was
        lines[1] = lines[1].replace("-1.5", "-0.5", 1)
    elif damage == "duplicate_json_key":  # {"unit": .., "data": A, .., "data": B}: the later would win silently
        lines[1] = lines[1].rstrip("\n")[:-1] + ', "data": {"keys": [], "scores": []}}\n'
    elif damage == "old_format":  # a line without a checksum
        lines[1] = json.dumps({"unit": "1", "data": _score_record(["r1"])}) + "\n"
    elif damage == "response_twice":  # r0 again in a later record, checksum and all
        data = _score_record(["r0"])
        lines[1] = json.dumps({"unit": "1", "data": data, "sha256": record_checksum("1", data)}) + "\n"
    elif damage == "bad_sample":
        data = _sample_record([0])
        data["samples"][0][0]["n_tokens"] = 7  # not the number of token ids
        lines[1] = json.dumps({"unit": "1", "data": data, "sha256": record_checksum("1", data)}) + "\n"
    j.path.write_text("".join(lines))
    with Journal(tmp_path, "score-teacher", {"k": 1}) as again:
        assert list(again.done) == ["0"]


def test_a_validator_that_breaks_on_a_record_drops_it_instead_of_a_traceback(tmp_path):
    _write_journal(tmp_path, [("0", {"value": 1}), ("1", {"value": "x"})])
    with Journal(tmp_path, "score-teacher", {"k": 1}, valid=lambda unit, data: data["value"] + 1 > 0) as again:
        assert list(again.done) == ["0"]  # "x" + 1 raised TypeError inside the caller's check


def test_good_journals_round_trip_with_checksums(tmp_path):
    records = [("easy/0", _sample_record([0, 1])), ("easy/1", _sample_record([2])), ("hard/0", _sample_record([0]))]
    with Journal(tmp_path, "generate-teacher", {"k": 2}) as j:
        for unit, data in records:
            assert j.append(unit, data) == data
    for line in j.path.read_text().splitlines():
        record = json.loads(line)
        assert record["sha256"] == record_checksum(record["unit"], record["data"])
    with Journal(tmp_path, "generate-teacher", {"k": 2}) as again:
        assert again.done == dict(records)  # the same prompt index in two benchmarks is fine


# --------------------------------------------------------------------------- chat templates (item 5)
@pytest.mark.parametrize("template, message", [
    ("{% for m in messages %}{{ m['content'] }", "TemplateSyntaxError at line 1"),
    ("{{ raise_exception('roles must alternate') }}", "roles must alternate"),
    ("{{ messages[0]['content'] | no_such_filter }}", "no_such_filter"),
    ("{{ messages[0].content.foo.bar }}", "UndefinedError"),
])
def test_a_broken_chat_template_is_one_line(tiny_lm_factory, template, message):
    from rdpt.models import load_tokenizer, render_prompt

    tok = load_tokenizer(tiny_lm_factory("tmpl_lm", ["Ana has 3 pens. So 5."] * 20, chat_template=TEMPLATE))
    assert render_prompt(tok, "q") == "Q: q\nA: "
    tok.chat_template = template
    with pytest.raises(RdptError) as err:
        render_prompt(tok, "q")
    text = str(err.value)
    assert text.startswith("model ") and "the chat template cannot be rendered (" in text and message in text
    assert "\n" not in text


# ----------------------------------------------------------------------------- the hub (item 10)
def test_an_uncached_hub_id_fails_at_once_offline():
    from rdpt.models import load_tokenizer

    start = time.monotonic()
    with pytest.raises(RdptError, match=r"^model 'no-such-org/no-such-model': not in the local hub cache and the hub "
                                        r"is off \(HF_HUB_OFFLINE=1\)"):
        load_tokenizer("no-such-org/no-such-model")
    assert time.monotonic() - start < 10


def test_an_unreachable_hub_fails_fast_in_one_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HUB_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    code = ("from rdpt.cli import stage; from rdpt.models import load_tokenizer; "
            "stage(load_tokenizer)('no-such-org/no-such-model')")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert time.monotonic() - start < 60  # was ~75 s of retries
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"error: model 'no-such-org/no-such-model': not in the local hub cache and cannot reach "
                     f"http://127.0.0.1:{port} ([Errno 111] Connection refused): check the network (or HF_ENDPOINT), "
                     "or point the params at a local folder"], proc.stderr


def test_a_cached_model_goes_offline_when_the_hub_is_unreachable(monkeypatch):
    import huggingface_hub.constants

    import rdpt.models as models

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(models, "_hub_unreachable", lambda: "cannot reach https://hub.example (timed out)")
    monkeypatch.setattr(models, "_hub_cached", lambda ref: True)
    models._check_exists(models.ModelRef("org/cached-model"))
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"
    # hub warnings reach the terminal once (its own handler), not also through the stages' root handler
    assert logging.getLogger("huggingface_hub").propagate is False


CORPUS = [f"Ana has {i} pens. She gets {i + 2} more. So {i} + {i + 2} = {2 * i + 2}. \\boxed{{{2 * i + 2}}}"
          for i in range(60)]


@pytest.mark.parametrize("line, edit, resumed", [
    (0, lambda d: d["samples"][0][0].update(n_tokens=-5), 0),  # p > 1 followed, before
    (1, lambda d: d["samples"][0][0].update(text=7), 1),  # a string value gave a traceback, before
    (1, lambda d: d.update(prompts=[d["prompts"][0]] * len(d["prompts"])), 1),  # a prompt twice in one record
])
def test_teach_recomputes_tampered_journal_records(tiny_lm_factory, tmp_path, monkeypatch, caplog, line, edit,
                                                   resumed):
    """A killed `teach`, its journal tampered with (checksum recomputed): resumed output = an uninterrupted run."""
    import yaml

    from rdpt.generation.responses import teach
    from rdpt.models import role_ref
    from rdpt.params import parse_params

    model = tiny_lm_factory("tamper_lm", CORPUS, chat_template=TEMPLATE)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"id": f"q{i}", "question": f"Ana has {i} pens and gets 2. Sum?",
                                         "answer": str(i + 2)}) + "\n" for i in range(7)))
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    for role in ("teacher", "student"):
        data["models"][role]["path"] = model
    data["device"] = "cpu"
    data["data"]["train"] = {"path": str(train), "id_field": "id"}
    data["teach"].update(n_questions=None, num_samples=2, max_new_tokens=12, batch_size=2, only_correct=False)
    params = parse_params(data)
    ref = role_ref(params, "teacher", model)
    reference = teach(params, ref, str(tmp_path / "ref.jsonl"), journal_dir=str(tmp_path / "j_ref"))

    real, count = Journal.append, [0]

    class Killed(Exception):
        pass

    def append(self, unit, data):
        out = real(self, unit, data)
        count[0] += 1
        if count[0] == 2:
            raise Killed
        return out

    with monkeypatch.context() as m:
        m.setattr(Journal, "append", append)
        with pytest.raises(Killed):
            teach(params, ref, str(tmp_path / "out.jsonl"), journal_dir=str(tmp_path / "j"))
    units = next((tmp_path / "j").glob("*/units.jsonl"))
    _tamper(units, line, lambda record: edit(record["data"]))
    with caplog.at_level("INFO", logger="rdpt.io.journal"):
        assert teach(params, ref, str(tmp_path / "out.jsonl"), journal_dir=str(tmp_path / "j")) == reference
    assert f"teach: 4 unit(s): {resumed} from the journal, {4 - resumed} computed" in caplog.text
    assert sum("fails its check" in r.getMessage() for r in caplog.records) == 1  # logged once
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    assert not any((tmp_path / "j").iterdir())
