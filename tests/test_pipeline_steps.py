"""Pipeline steps on hand-made artifacts: bad rows are named, empty responses are recorded."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rdpt import RdptError
from rdpt.generation.grade import evaluate
from rdpt.io.artifacts import read_table
from rdpt.params import parse_params
from rdpt.provenance.classify import classify
from rdpt.provenance.segment import segment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def params():
    return parse_params(yaml.safe_load((ROOT / "params.yaml").read_text()))


def _generations(path: Path, texts: list[str], golds: list[str] | None = None) -> str:
    golds = golds or ["5"] * len(texts)
    with open(path, "w") as fh:
        for i, (text, gold) in enumerate(zip(texts, golds)):
            fh.write(json.dumps({
                "response_id": f"b/{i}/0", "benchmark": "b", "question_id": str(i), "sample_idx": 0,
                "question": "How many?", "answer": gold, "text": text, "finish_reason": "stop", "n_tokens": 3,
            }) + "\n")
    return str(path)


def test_segment_records_responses_without_sentences(tmp_path, params):
    gens = _generations(tmp_path / "g.jsonl", ["So 2 + 3 = 5. The answer is \\boxed{5}.", "", "  \n "])
    stats = segment(params, gens, str(tmp_path / "s.parquet"), str(tmp_path / "e.parquet"))
    assert stats == {"n_responses": 3, "n_sentences": 2, "n_empty": 2}
    sents = read_table(tmp_path / "s.parquet", "sentences")
    assert sents["text"].tolist() == ["So 2 + 3 = 5. ", "The answer is \\boxed{5}."]
    assert read_table(tmp_path / "e.parquet", "empty_responses")["response_id"].tolist() == ["b/1/0", "b/2/0"]


def test_evaluate_grades_and_names_unparseable_gold(tmp_path):
    gens = _generations(tmp_path / "g.jsonl", ["\\boxed{5}", "\\boxed{4}", "no answer"])
    graded = evaluate({"distilled": gens}, str(tmp_path / "graded.parquet"))
    assert graded["correct"].tolist() == [True, False, False]
    bad = _generations(tmp_path / "bad.jsonl", ["\\boxed{5}", "\\boxed{5}"], golds=["5", "???"])
    with pytest.raises(RdptError, match=r"bad.jsonl: row 1: gold answer '\?\?\?' cannot be parsed"):
        evaluate({"distilled": bad}, str(tmp_path / "graded2.parquet"))
    assert not (tmp_path / "graded2.parquet").exists()


def test_classify_names_missing_scores(tmp_path, params):
    sents = pd.DataFrame({"response_id": ["r", "r"], "benchmark": ["b", "b"], "sentence_idx": [0, 1],
                          "start": [0, 3], "end": [3, 6], "text": ["ab ", "cd."]})
    sents.to_parquet(tmp_path / "s.parquet")
    dirs = {}
    for role, n in (("teacher", 2), ("student", 2), ("distilled", 1)):
        d = tmp_path / role
        d.mkdir()
        pd.DataFrame({"response_id": ["r"] * n, "sentence_idx": list(range(n)), "n_tokens": [2] * n,
                      "sum_logprob": [-0.2] * n, "mean_logprob": [-0.1] * n,
                      "sum_rank": [3] * n}).to_parquet(d / "scores.parquet")
        dirs[role] = str(d)
    with pytest.raises(RdptError, match=r"distilled/scores.parquet: no row for response_id/sentence_idx \('r', 1\)"):
        classify(params, str(tmp_path / "s.parquet"), dirs, str(tmp_path / "c.parquet"))
    assert not (tmp_path / "c.parquet").exists()


def test_distill_with_an_existing_checkpoint_trains_nothing(tmp_path):
    from rdpt.generation.responses import teach
    from rdpt.models import resolve_ref, role_ref
    from rdpt.training.distill import distill

    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["models"]["distilled"] = {"path": "org/distilled-model", "revision": "abc123", "chat_template": None}
    params = parse_params(data)
    assert teach(params, role_ref(params, "teacher", "unused-teacher"),
                 str(tmp_path / "teach.jsonl")) == {"skipped": True}
    assert (tmp_path / "teach.jsonl").read_text() == ""
    report = distill(params, role_ref(params, "student", "unused-student"), str(tmp_path / "teach.jsonl"),
                     str(tmp_path / "distilled"))
    assert report == {"trained": False, "model": "org/distilled-model", "revision": "abc123"}
    ref = resolve_ref(str(tmp_path / "distilled"))
    assert (ref.path, ref.revision) == ("org/distilled-model", "abc123")


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "stages").glob("*.py")))
def test_every_stage_answers_help(name):
    import importlib.util

    from click.testing import CliRunner

    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = CliRunner().invoke(module.main, ["--help"])
    assert result.exit_code == 0 and result.output.startswith("Usage:")
    # every stage names its output; params_check writes nothing (it only validates the params file)
    assert name == "params_check" or any(opt in result.output for opt in ("--out ", "--reports "))
