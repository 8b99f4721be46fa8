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
    "toy_alt": {"corpus": 60, "vocab": 300, "layers": 1, "hidden": 32, "heads": 2, "steps": 4, "batch_size": 16,
                "eval_max_new_tokens": 48},
    "teach": {"n_questions": 24, "max_new_tokens": 48, "only_correct": False},
    "distill": {"max_steps": 4, "batch_size": 8},
    "generate": {"num_samples": 2, "max_new_tokens": 48},
    "correlate": {"min_responses": 1},
    # two arms that read different features, two seeds, teacher_count at a third (contrast): 5 runs
    # a mixed-temperature pool (one candidate at each temperature), the runs' own tiny training budget, and an
    # evaluation of its own (T 0.6, 3 samples per question) that the untrained reference shares
    "select": {"candidates": {"n_questions": 6, "num_samples": 2, "max_new_tokens": 48, "only_correct": False,
                              "temperatures": [0.7, 1.3]},
               "train": {"max_steps": 4, "batch_size": 8},
               "arms": ["teacher_count", "rsr"], "seeds": [0, 1],
               "contrast": {"arms": ["teacher_count"], "seeds": [2]},
               "eval": {"temperature": 0.6, "num_samples": 3}},
}


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _dvc(cwd: Path, *args: str, trace: Path | None = None) -> str:
    # Stages run `python stages/...`: make that the interpreter running the tests (its venv), importing
    # the repo copy's rdpt rather than the editable install (the tree may change while the test runs).
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(cwd)}
    if trace is not None:  # every stage records the params keys it reads (rdpt/params/trace.py)
        env["RDPT_PARAMS_TRACE"] = str(trace)
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def _ran(log: str) -> set[str]:
    # params_check (always_changed, no outs) validates the params file at every repro: not a rerun of anything
    return set(re.findall(r"Running stage '([^']+)'", log)) - {"params_check"}


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
    log = _dvc(repo, "repro", trace=repo / ".params_trace")
    return repo, log


@pytest.mark.slow
def test_every_params_key_a_stage_reads_is_listed_in_dvc_yaml(micro_repo):
    """dvc.yaml held to the code, params half: a key a stage read but does not list would not rerun it."""
    import shlex

    repo, _ = micro_repo
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    by_argv = {tuple(shlex.split(entry["cmd"])[1:]): name for name, entry in lock.items()}
    records = [json.loads(p.read_text()) for p in (repo / ".params_trace").glob("*.json")]
    checked, missing = set(), []
    for record in records:
        name = by_argv.get(tuple(record["argv"]))
        if name is None:
            continue  # a process that is not a stage command line (none expected, but harmless)
        if "params.yaml" in (lock[name].get("deps") and [d["path"] for d in lock[name]["deps"]] or []):
            continue  # a stage with the whole file as a dep (params_check) reruns on any edit
        listed = list((lock[name].get("params") or {}).get("params.yaml", {}))
        checked.add(name)
        for key in record["keys"]:
            if not any(key == p or key.startswith(p + ".") for p in listed):
                missing.append(f"{name} reads {key} but lists {listed}")
    assert missing == []
    assert {"teach", "generate@teacher", "score@distilled", "noise@teacher", "classify", "select_data"} <= checked


@pytest.mark.slow
def test_repro_fills_reports(micro_repo):
    repo, log = micro_repo
    assert {"toy_world", "teach", "distill", "score@teacher", "classify", "correlate", "viewer"} <= _ran(log)
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
    assert (repo / "reports" / "figures" / "index_counts.png").stat().st_size > 1000
    for bench in ("toy_easy", "toy_hard"):
        assert (repo / "reports" / "figures" / f"position_curves_{bench}.png").exists()
        assert 'id="rdpt-data"' in (repo / "reports" / "viewer" / f"{bench}.html").read_text()
    assert "Teacher" in (repo / "reports" / "tables" / "class_shares.md").read_text()
    cost = json.loads((repo / "reports" / "cost.json").read_text())
    assert cost["teacher"]["tokens_scored"] > 0 and cost["distilled"]["device"] == "cpu"


@pytest.mark.slow
def test_teacher_identification_runs(micro_repo):
    repo, log = micro_repo
    assert {"toy_teacher_alt", "identify_score@teacher", "identify_score@alt_teacher", "identify"} <= _ran(log)
    report = json.loads((repo / "reports" / "identify.json").read_text())
    for bench in ("toy_easy", "toy_hard"):  # micro models are noise: only the shape is checked, not the winner
        entry = report["identify"][bench]
        assert set(entry["candidates"]) == {"teacher", "alt_teacher"} and entry["best"] in entry["candidates"]
        assert 0.0 <= entry["candidates"]["teacher"]["teacher_share"] <= 1.0
    assert (repo / "reports" / "identify" / "teacher_share.png").stat().st_size > 1000
    assert json.loads((repo / "reports" / "toy_alt.json").read_text())["arch"] == "gpt2"


@pytest.mark.slow
def test_second_repro_is_noop_and_beta_reruns_only_downstream(micro_repo):
    repo, _ = micro_repo
    assert _ran(_dvc(repo, "repro")) == set()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["classify"]["beta"] = 0.3
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = _ran(_dvc(repo, "repro"))
    assert "classify" in ran and ran <= {"classify", "correlate", "viewer", "identify"}


@pytest.mark.slow
def test_selection_experiment_fills_its_reports(micro_repo):
    repo, log = micro_repo
    ran = _ran(log)
    assert {"candidates", "select_score@teacher", "select_score@student", "select_data", "select_report"} <= ran
    assert {f"select_run@{arm}-{seed}" for arm in ("teacher_count", "rsr") for seed in (0, 1)} <= ran
    assert {"select_run_contrast@teacher_count-2", "select_untrained"} <= ran
    metrics = json.loads((repo / "reports" / "selection.json").read_text())
    for bench in ("toy_easy", "toy_hard", "avg"):
        for arm, n_seeds in (("teacher_count", 3), ("rsr", 2)):
            cell = metrics["accuracy"][bench][arm]
            assert 0.0 <= cell["mean"] <= 1.0 and cell["n_seeds"] == n_seeds
    # every run and the untrained reference sampled select.eval's 3 responses per question at T 0.6
    for run in [*(repo / "data" / "select" / "runs").glob("*/seed*"), repo / "data" / "select" / "untrained"]:
        rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
        per_question = {}
        for r in rows:
            per_question.setdefault((r["benchmark"], r["question_id"]), set()).add(r["sample_idx"])
        assert set(map(len, per_question.values())) == {3}, run
    assert sorted(p.name for p in (repo / "data" / "select" / "runs" / "teacher_count").iterdir()) == [
        "seed0", "seed1", "seed2"]
    assert metrics["candidates"]["n_sampled"] == 12
    assert set(metrics["candidates"]["kept_by_temperature"]) == {"0.7", "1.3"}
    assert set(metrics["candidates"]["pool"]["by_temperature"]) <= {"0.7", "1.3"}
    assert set(metrics["untrained"]) == {"toy_easy", "toy_hard", "avg"}
    table = (repo / "reports" / "selection" / "table1.md").read_text()
    assert "`teacher_count`" in table and "`rsr`" in table and "toy_hard" in table
    assert "| seeds |" in table  # uneven seed counts get a column
    assert (repo / "reports" / "selection" / "accuracy.png").stat().st_size > 1000


@pytest.mark.slow
def test_select_beta_reruns_only_what_it_changes(micro_repo):
    repo, _ = micro_repo
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["select"]["beta"] = 0.4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = _ran(_dvc(repo, "repro"))
    assert "select_data" in ran and "select_report" in ran
    # rsr does not read beta: its selections are byte-identical, so its runs stay cached.
    assert not {r for r in ran if r.startswith("select_run@rsr")}
    assert not ran & {"candidates", "select_score@teacher", "select_score@student", "classify", "correlate"}


# Runs every stage command of dvc.yaml, in DAG order, in one fresh process (stages re-executed as
# `__main__`): a second fresh run of the same params, without paying a Python start-up per stage.
_RUN_ALL_STAGES = """
import runpy, shlex, sys
import networkx as nx
from dvc.repo import Repo
for stage in reversed(list(nx.topological_sort(Repo(".").index.graph))):
    argv = shlex.split(stage.cmd)
    assert argv[0] == "python", stage.cmd
    sys.argv = argv[1:]
    try:
        runpy.run_path(argv[1], run_name="__main__")
    except SystemExit as done:
        if done.code not in (0, None):
            raise SystemExit(f"stage {stage.addressing} failed")
"""
_WALL_CLOCK = re.compile(r"(wall_s|_per_s)$")  # timings: the one documented exception to byte-identity


def _without_wall_clock(value):
    if isinstance(value, dict):
        return {k: _without_wall_clock(v) for k, v in value.items() if not _WALL_CLOCK.search(k)}
    if isinstance(value, list):
        return [_without_wall_clock(v) for v in value]
    return value


def _artifacts(repo: Path) -> dict[str, Path]:
    return {p.relative_to(repo).as_posix(): p for folder in ("data", "reports")
            for p in sorted((repo / folder).rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_two_fresh_runs_write_identical_bytes(micro_repo, tmp_path):
    first, _ = micro_repo
    second = tmp_path / "second"
    second.mkdir()
    for name in ("dvc.yaml", ".dvcignore", "params.yaml"):
        shutil.copy(first / name, second / name)
    for folder in ("stages", "rdpt"):  # the first run's code, whatever changed in the tree since
        shutil.copytree(first / folder, second / folder, ignore=shutil.ignore_patterns("__pycache__"))
    _dvc(second, "init", "--no-scm", "-q")
    proc = subprocess.run([sys.executable, "-c", _RUN_ALL_STAGES], cwd=second, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]

    a, b = _artifacts(first), _artifacts(second)
    assert sorted(a) == sorted(b)
    differ = []
    for name in a:
        if a[name].read_bytes() == b[name].read_bytes():
            continue
        if name.endswith(".json") and _without_wall_clock(json.loads(a[name].read_text())) == _without_wall_clock(
                json.loads(b[name].read_text())):
            continue  # only the wall-clock times differ
        differ.append(name)
    assert differ == [], f"not byte-identical across two fresh runs: {differ}"
