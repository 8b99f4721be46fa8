"""`dvc repro` of the whole pipeline on a micro toy world, in a temporary copy of the repo."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Smallest settings that still exercise every stage (accuracy is irrelevant here).
MICRO = {
    "toy": {"n_train_questions": 60, "n_test_questions": 8, "teacher_corpus": 120, "student_corpus": 40,
            "teacher_vocab": 300, "student_vocab": 300, "teacher_layers": 1, "teacher_hidden": 32,
            "teacher_heads": 2, "teacher_steps": 8, "student_layers": 1, "student_hidden": 32,
            "student_heads": 2, "student_steps": 4, "batch_size": 16, "student_one_step": 20,
            "eval_max_new_tokens": 48},
    "teach": {"n_questions": 24, "max_new_tokens": 48, "only_correct": False},
    "distill": {"max_steps": 4, "batch_size": 8},
    "generate": {"num_samples": 2, "max_new_tokens": 48},
    "correlate": {"min_responses": 1},
}


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _dvc(cwd: Path, *args: str) -> str:
    # Stages run `python stages/...`: make that the interpreter running the tests (its venv).
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def _ran(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", log))


@pytest.fixture(scope="module")
def micro_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    for folder in ("stages", "rdpt"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    params = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), MICRO)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _dvc(repo, "init", "--no-scm", "-q")
    log = _dvc(repo, "repro")
    return repo, log


@pytest.mark.slow
def test_repro_fills_reports(micro_repo):
    repo, log = micro_repo
    assert {"toy_world", "teach", "distill", "score@teacher", "classify", "correlate"} <= _ran(log)
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert set(metrics["accuracy"]) == {"toy_easy", "toy_hard"}
    for bench, by_model in metrics["accuracy"].items():
        assert set(by_model) == {"teacher", "student", "distilled"}
        assert all(0.0 <= acc <= 1.0 for acc in by_model.values())
        prov = metrics["provenance"][bench]
        shares = prov["share"]["all"]
        assert set(shares) >= {"Shared", "Teacher", "Student", "Boosted"}
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
        assert prov["n_sentences"] > 0
    assert (repo / "reports" / "figures" / "action_split.png").stat().st_size > 1000
    for bench in ("toy_easy", "toy_hard"):
        assert (repo / "reports" / "figures" / f"position_curves_{bench}.png").exists()
    assert "Teacher" in (repo / "reports" / "tables" / "class_shares.md").read_text()
    cost = json.loads((repo / "reports" / "cost.json").read_text())
    assert cost["teacher"]["tokens_scored"] > 0 and cost["distilled"]["device"] == "cpu"


@pytest.mark.slow
def test_second_repro_is_noop_and_beta_reruns_only_downstream(micro_repo):
    repo, _ = micro_repo
    assert _ran(_dvc(repo, "repro")) == set()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["classify"]["beta"] = 0.3
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = _ran(_dvc(repo, "repro"))
    assert "classify" in ran and ran <= {"classify", "correlate"}
