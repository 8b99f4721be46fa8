"""Bad input never crashes obscurely: every case is one line naming the file (and row or id) or key.

Covers what the other test files do not: artifacts that are malformed or stale (duplicate ids, missing
or non-text cells, broken JSON lines, score tables that do not match the sentences), non-finite
log-probs in a score table, truncated traces in the statistics, unicode and control characters and
empty responses through segment -> score -> classify, and atomic folder outputs.

    python -m pytest tests/test_bad_inputs.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rdpt import RdptError
from rdpt.io.artifacts import atomic_dir, read_json, read_table
from rdpt.params import parse_params

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}A: {% endif %}"


def _params(**sections) -> object:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, values in sections.items():
        data[name].update(values)
    return parse_params(data)


def _gen_row(i: int, text: str = "So 2 + 3 = 5. The answer is \\boxed{5}.", bench: str = "b",
             finish: str = "stop") -> dict:
    return {"response_id": f"{bench}/{i}/0", "benchmark": bench, "question_id": str(i), "sample_idx": 0,
            "question": "How many?", "answer": "5", "text": text, "finish_reason": finish, "n_tokens": 3}


def _write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


# ---------------------------------------------------------------------------------------- params
@pytest.mark.parametrize("section, values, message", [
    ("correlate", {"exclude_truncated": "sometimes"}, "correlate.exclude_truncated: Input should be a valid boolean"),
    ("generate", {"max_new_tokens": 0}, "generate.max_new_tokens: Input should be greater than or equal to 1"),
    ("score", {"max_tokens_per_batch": "lots"}, "score.max_tokens_per_batch: Input should be a valid integer"),
    ("classify", {"alpha": 1.5}, "classify.alpha: Input should be less than or equal to 1 (got 1.5)"),
])
def test_params_name_the_key(section, values, message):
    with pytest.raises(RdptError) as err:
        _params(**{section: values})
    assert message in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------- artifacts
@pytest.mark.parametrize("rows, message", [
    ([_gen_row(0), _gen_row(1), _gen_row(0)], "row 2: duplicate response_id 'b/0/0'"),
    ([_gen_row(0), {**_gen_row(1), "text": None}], "row 1: 'text' is missing"),
    ([_gen_row(0), {**_gen_row(1), "question": 7}], "row 1: 'question' should be text, found int 7"),
    ([{**_gen_row(0), "question": 7}], "column 'question' should be str, found int64"),
    ([json.dumps(_gen_row(0)), '{"response_id": "b/1/0", "text": "cut', json.dumps(_gen_row(2))],
     "row 1: not valid JSON"),
    ([{k: v for k, v in _gen_row(0).items() if k != "finish_reason"}], "missing column 'finish_reason'"),
])
def test_malformed_generations_name_file_and_row(tmp_path, rows, message):
    path = _write_jsonl(tmp_path / "gen.jsonl", rows)
    with pytest.raises(RdptError) as err:
        read_table(path, "generations")
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_duplicate_sentence_and_missing_json(tmp_path):
    df = pd.DataFrame({"response_id": ["r", "r"], "benchmark": "b", "sentence_idx": [0, 0], "start": [0, 0],
                       "end": [1, 1], "text": ["a", "a"]})
    df.to_parquet(tmp_path / "s.parquet")
    with pytest.raises(RdptError, match=r"s.parquet: row 1: duplicate response_id/sentence_idx \('r', 0\)"):
        read_table(tmp_path / "s.parquet", "sentences")
    with pytest.raises(RdptError, match=r"cost.json: not found \(run the stage that produces it"):
        read_json(tmp_path / "cost.json")
    (tmp_path / "cost.json").write_text('{"a": ')
    with pytest.raises(RdptError, match=r"cost.json: not valid JSON"):
        read_json(tmp_path / "cost.json")
    (tmp_path / "x.parquet").write_bytes(b"PAR1 cut short")
    with pytest.raises(RdptError, match=r"x.parquet: unreadable"):
        read_table(tmp_path / "x.parquet", "sentences")


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "scores"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "scores.parquet").write_text("half")
            raise RuntimeError("killed between the two files")
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(target) as tmp:  # replaces the old folder as a whole
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    stale = tmp_path / ".scores.123.tmp"  # what a SIGKILL leaves: removed by the next write
    stale.mkdir()
    with atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]


# ---------------------------------------------------------------------------------------- classify
def _sentences(tmp_path: Path, n: dict[str, int]) -> str:
    rows = [{"response_id": rid, "benchmark": "b", "sentence_idx": k, "start": k, "end": k + 1, "text": "x"}
            for rid, count in n.items() for k in range(count)]
    pd.DataFrame(rows).to_parquet(tmp_path / "sentences.parquet")
    return str(tmp_path / "sentences.parquet")


def _scores(tmp_path: Path, role: str, keys: list[tuple[str, int]], mean: float = -0.5) -> str:
    folder = tmp_path / role
    folder.mkdir(exist_ok=True)
    pd.DataFrame({"response_id": [r for r, _ in keys], "sentence_idx": [k for _, k in keys],
                  "n_tokens": 2, "sum_logprob": 2 * mean, "mean_logprob": mean, "sum_rank": 2}).to_parquet(
        folder / "scores.parquet")
    return str(folder)


@pytest.mark.parametrize("case, message", [
    ("missing", r"distilled/scores.parquet: no row for response_id/sentence_idx \('r1', 1\) of .*sentences.parquet"),
    ("extra", r"distilled/scores.parquet: row 3: response_id/sentence_idx \('r9', 0\) is not in .*sentences.parquet"),
    ("inf", r"distilled/scores.parquet: row 0: mean_logprob is -inf for a scored sentence of 'r0'"),
    ("nan", r"distilled/scores.parquet: row 0: sum_logprob is nan for a scored sentence of 'r0'"),
])
def test_classify_checks_score_tables_against_sentences(tmp_path, case, message):
    from rdpt.provenance.classify import classify

    sentences = _sentences(tmp_path, {"r0": 1, "r1": 2})
    keys = [("r0", 0), ("r1", 0), ("r1", 1)]
    dirs = {role: _scores(tmp_path, role, keys) for role in ("teacher", "student")}
    bad = {"missing": keys[:2], "extra": keys + [("r9", 0)]}.get(case, keys)
    dirs["distilled"] = _scores(tmp_path, "distilled", bad)
    if case in ("inf", "nan"):
        path = tmp_path / "distilled" / "scores.parquet"
        df = pd.read_parquet(path)
        column = "mean_logprob" if case == "inf" else "sum_logprob"
        df.loc[0, column] = -np.inf if case == "inf" else np.nan
        df.to_parquet(path)
    with pytest.raises(RdptError, match=message):
        classify(_params(), sentences, dirs, str(tmp_path / "classified.parquet"))
    assert not (tmp_path / "classified.parquet").exists()


# ----------------------------------------------------------------------------------------- score
def test_score_rejects_stale_sentences_before_loading_the_model(tmp_path):
    from rdpt.models import role_ref
    from rdpt.provenance.score import score

    gens = _write_jsonl(tmp_path / "gen.jsonl", [_gen_row(0, "Add 2. Then 3.")])
    pd.DataFrame({"response_id": ["b/0/0", "b/0/0"], "benchmark": "b", "sentence_idx": [0, 1], "start": [0, 7],
                  "end": [7, 14], "text": ["Add 2. ", "Then 4."]}).to_parquet(tmp_path / "s.parquet")
    with pytest.raises(RdptError, match=r"s.parquet: the sentences of response 'b/0/0' do not rebuild its text in "
                                        r".*gen.jsonl \(stale file\? rerun segment"):
        score(_params(), role_ref(_params(), "teacher", "no/such/model"), "teacher", gens,
              str(tmp_path / "s.parquet"), str(tmp_path / "out"))
    pd.DataFrame({"response_id": ["b/7/0"], "benchmark": "b", "sentence_idx": [0], "start": [0], "end": [1],
                  "text": ["x"]}).to_parquet(tmp_path / "s.parquet")
    with pytest.raises(RdptError,
                       match=r"s.parquet: response_id 'b/7/0' not in .*gen.jsonl"):
        score(_params(), role_ref(_params(), "teacher", "no/such/model"), "teacher", gens,
              str(tmp_path / "s.parquet"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


UNICODE_TEXTS = [
    "Ana has 3 pens.\x00 She gets\x1f 2. So 5.\r\n\r\nThe answer is \\boxed{5}.",
    "é🙂中文。 Ünïcödé ok! \u202eright-to-left\u202c. \ufeffBOM inside.",
    "\t\n  ",  # blank: no sentence
    "",  # empty response
    "?!...",  # no letter or digit: one sentence
    "a" * 40 + "." + " b" * 30,
]


def test_unicode_control_characters_and_empty_responses_flow_through(tmp_path, tiny_lm_factory):
    """segment -> score (tiny model) -> classify: every sentence gets exactly one score per model."""
    from rdpt.models import role_ref
    from rdpt.provenance.classify import classify
    from rdpt.provenance.score import score
    from rdpt.provenance.segment import segment

    model = tiny_lm_factory("unicode_lm", UNICODE_TEXTS * 5 + ["Ana has 3 pens. So 5."] * 20,
                            chat_template=TEMPLATE)
    gens = _write_jsonl(tmp_path / "gen.jsonl", [_gen_row(i, t) for i, t in enumerate(UNICODE_TEXTS)])
    params = _params()
    stats = segment(params, gens, str(tmp_path / "s.parquet"), str(tmp_path / "e.parquet"))
    assert stats["n_empty"] == 2
    sents = read_table(tmp_path / "s.parquet", "sentences")
    for rid, group in sents.groupby("response_id"):
        assert "".join(group.sort_values("sentence_idx")["text"]) == UNICODE_TEXTS[int(rid.split("/")[1])]
    dirs = {}
    for role in ("teacher", "student",
                 "distilled"):
        dirs[role] = str(tmp_path / role)
        score(params, role_ref(params, role, model), role, gens, str(tmp_path / "s.parquet"), dirs[role],
              journal_dir=str(tmp_path / "j"))
        scores = read_table(Path(dirs[role]) / "scores.parquet", "scores")
        assert len(scores) == len(sents) and (scores["n_tokens"] > 0).sum() >= len(sents) - 1
        assert np.isfinite(scores.loc[scores["n_tokens"] > 0, "mean_logprob"]).all()
    classified = classify(params, str(tmp_path / "s.parquet"), dirs, str(tmp_path / "c.parquet"))
    assert len(classified) == len(sents)


# ---------------------------------------------------------------------------------------- correlate
def _correlate_world(tmp_path: Path) -> dict:
    """Two benchmarks; a few responses cut at max_new_tokens, all of them Boosted and incorrect."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    graded, sents = [], []
    for bench, n, n_cut in (("easy", 6, 2), ("hard", 4, 0)):
        for i in range(n):
            cut = i < n_cut
            rid = f"{bench}/{i}/0"
            for model in ("teacher", "student", "distilled"):
                graded.append({"model": model, "response_id": rid, "benchmark": bench, "question_id": str(i),
                               "correct": (not cut) and i % 2 == 0, "finish_reason": "length" if cut else "stop",
                               "n_tokens": 5, "replacement_char": False})
            for k in range(3):
                cls = "Boosted" if cut else ("Teacher" if k else "Shared")
                sents.append({"response_id": rid, "benchmark": bench, "sentence_idx": k, "p_teacher": 0.5,
                              "p_student": 0.5, "p_distilled": 0.5, "cls": cls})
    pd.DataFrame(graded).to_parquet(tmp_path / "graded.parquet")
    pd.DataFrame(sents).to_parquet(tmp_path / "classified.parquet")
    for role in ("teacher", "student", "distilled"):
        (tmp_path / "scores" / role).mkdir(parents=True)
        (tmp_path / "scores" / role / "cost.json").write_text('{"tokens_scored": 1}')
    return {"classified": str(tmp_path / "classified.parquet"), "graded": str(tmp_path / "graded.parquet"),
            "cost_dirs": {r: str(tmp_path / "scores" / r) for r in ("teacher", "student", "distilled")}}


@pytest.mark.parametrize("exclude", [True, False])
def test_truncated_traces_are_excluded_and_counted(tmp_path, exclude):
    from rdpt.analysis.correlate import correlate

    w = _correlate_world(tmp_path)
    params = _params(correlate={"min_responses": 1, "exclude_truncated": exclude})
    payload = correlate(params, w["classified"], w["graded"], w["cost_dirs"], str(tmp_path / "reports"))
    easy, hard = payload["provenance"]["easy"], payload["provenance"]["hard"]
    assert (easy["n_truncated"], hard["n_truncated"]) == (2, 0)  # counted either way
    assert (easy["n_excluded_truncated"], hard["n_excluded_truncated"]) == ((2, 0) if exclude else (0, 0))
    assert easy["n_responses"] == (4 if exclude else 6)
    assert easy["share"]["all"]["Boosted"] == (0.0 if exclude else pytest.approx(6 / 18, abs=1e-4))
    assert payload["truncated"] == {"teacher": 2, "student": 2, "distilled": 2}
    assert payload["accuracy"]["easy"]["distilled"] == pytest.approx(2 / 6, abs=1e-4)  # accuracy keeps them all
    ev = payload["evaluation"]["easy"]["distilled"]  # the protocol block: truncation rate per benchmark and model
    assert (ev["n_truncated"], ev["truncation_rate"], ev["avg_at_k"]) == (2, round(2 / 6, 4), round(2 / 6, 4))
    assert payload["evaluation"]["hard"]["distilled"]["truncation_rate"] == 0.0
    assert list(payload["evaluation"]["easy"]) == ["teacher", "student", "distilled"]
    on_disk = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert on_disk["provenance"]["easy"]["n_truncated"] == 2


def test_correlate_names_stale_classified_rows_and_missing_cost(tmp_path):
    from rdpt.analysis.correlate import correlate

    w = _correlate_world(tmp_path)
    params = _params(correlate={"min_responses": 1})
    df = pd.read_parquet(w["classified"])
    df.loc[4, "response_id"] = "easy/99/0"
    df.to_parquet(w["classified"])
    with pytest.raises(RdptError, match=r"classified.parquet: row 4: response_id 'easy/99/0' is not a distilled "
                                        r"response in .*graded.parquet \(stale file\? dvc repro\)"):
        correlate(params, w["classified"], w["graded"], w["cost_dirs"], str(tmp_path / "reports"))
    w = _correlate_world(tmp_path / "second")
    Path(w["cost_dirs"]["student"], "cost.json").unlink()
    with pytest.raises(RdptError, match=r"student/cost.json: not found"):
        correlate(params, w["classified"], w["graded"], w["cost_dirs"], str(tmp_path / "reports2"))


def test_stage_prints_one_line_and_exits_1(tmp_path):
    """The CLI face of the checks above: `error: <file>: row N: ...`, exit status 1, no output."""
    import importlib.util

    from click.testing import CliRunner

    spec = importlib.util.spec_from_file_location("stage_segment", ROOT / "stages" / "segment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    gens = _write_jsonl(tmp_path / "gen.jsonl", [_gen_row(0), _gen_row(0)])
    (tmp_path / "p.yaml").write_text((ROOT / "params.yaml").read_text())
    result = CliRunner().invoke(module.main, ["--params", str(tmp_path / "p.yaml"), "--generations", gens,
                                              "--out", str(tmp_path / "s.parquet"),
                                              "--empty-out", str(tmp_path / "e.parquet")])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {gens}: row 1: duplicate response_id 'b/0/0'"
    assert not (tmp_path / "s.parquet").exists()
