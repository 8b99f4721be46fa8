"""Bad params (issue 16, items 1, 5, 8): strict types, non-finite numbers, seeds, schedulers, names that become
paths, every unknown key at once, duplicate YAML keys, and `dvc repro` validating the whole file every time.

Every case is one line, ``<file>: <key>: <what>``, exit status 1 from a stage, and nothing written.

    python -m pytest tests/test_bad_params.py -q
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rdpt import RdptError
from rdpt.params import LrScheduler, load_params, parse_params, parse_yaml

ROOT = Path(__file__).resolve().parents[1]


def _default() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _error(data: dict) -> str:
    with pytest.raises(RdptError) as err:
        parse_params(data, "params.yaml")
    text = str(err.value)
    assert text.startswith("params.yaml: ") and "\n" not in text
    return text


def _set(data: dict, dotted: str, value) -> dict:
    *path, last = dotted.split(".")
    node = data
    for key in path:
        node = node.setdefault(key, {})
    node[last] = value
    return data


# ------------------------------------------------------------------------------ strict types (item 8)
@pytest.mark.parametrize("key, value, message", [
    ("generate.num_samples", "4", "generate.num_samples: Input should be a valid integer (got '4')"),
    ("generate.num_samples", True, "generate.num_samples: Input should be a valid integer (got True)"),
    ("teach.num_samples", 4.0, "teach.num_samples: Input should be a valid integer (got 4.0)"),
    ("teach.only_correct", "yes", "teach.only_correct: Input should be a valid boolean (got 'yes')"),
    ("correlate.exclude_truncated", 1, "correlate.exclude_truncated: Input should be a valid boolean (got 1)"),
    ("distill.learning_rate", "1e-3", "distill.learning_rate: Input should be a valid number (got '1e-3')"),
    ("data.train.limit", "10", "data.train.limit: Input should be a valid integer (got '10')"),
    ("models.teacher.path", 7, "models.teacher.path: Input should be a valid string (got 7)"),
])
def test_strict_types_are_not_coerced(key, value, message):
    assert message in _error(_set(_default(), key, value))


# ------------------------------------------------------- values that validated but failed later (item 5)
@pytest.mark.parametrize("key, value, message", [
    ("distill.epochs", float("inf"), "distill.epochs: Input should be a finite number"),
    ("server.timeout_s", float("inf"), "server.timeout_s: Input should be a finite number"),
    ("generate.temperature", float("inf"), "generate.temperature: Input should be a finite number"),
    ("teach.temperature", float("nan"), "teach.temperature: Input should be a finite number"),
    ("server.backoff_s", float("-inf"), "server.backoff_s: Input should be a finite number"),
    ("classify.alpha", float("nan"), "classify.alpha: Input should be a number in [0, 1] or 'auto'"),
    ("seed", -1, "seed: Input should be greater than or equal to 0 (got -1)"),
    ("seed", 2**40, f"seed: Input should be less than 4294967296 (got {2**40})"),
    ("toy.seed", -1, "toy.seed: Input should be greater than or equal to 0"),
    ("correlate.seed", 2**32, "correlate.seed: Input should be less than 4294967296"),
    ("select.seeds", [0, 2**40], "select.seeds: Value error, give one or more distinct seeds, 0 <= seed < 2**32"),
    ("distill.lr_scheduler", "bogus", "distill.lr_scheduler: Input should be 'linear', 'cosine'"),
    ("distill.lr_scheduler", "cosine_with_min_lr", "distill.lr_scheduler: Input should be"),  # needs kwargs
])
def test_values_that_would_fail_later_fail_here(key, value, message):
    assert message in _error(_set(_default(), key, value))


def test_the_allowed_schedulers_are_transformers_schedulers():
    from typing import get_args

    import torch
    from transformers import get_scheduler
    from transformers.trainer_utils import SchedulerType

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    for name in get_args(LrScheduler):
        assert SchedulerType(name).value == name
        get_scheduler(name, opt, num_warmup_steps=1, num_training_steps=10)  # needs no extra kwargs


def test_seed_bounds_are_accepted():
    data = _set(_set(_default(), "seed", 2**32 - 1), "select.seeds", [0, 2**32 - 1])
    assert parse_params(data).seed == 2**32 - 1


# ------------------------------------------------------------------- names that become paths (item 1)
@pytest.mark.parametrize("name", ["x/../../../../tmp/evil", "a/b", "my bench", "toy.easy", "..", "-x", "_x", "",
                                  "a\\b", "é", "a" * 101])
def test_benchmark_names_that_are_not_plain_names_are_refused(name):
    data = _default()
    data["data"]["benchmarks"] = {name: data["data"]["benchmarks"]["toy_easy"]}
    text = _error(data)
    assert f"data.benchmarks: Value error, benchmark name {name!r}: use letters, digits, _ and -" in text


def test_plain_benchmark_names_pass():
    data = _default()
    easy = data["data"]["benchmarks"]["toy_easy"]
    data["data"]["benchmarks"] = {"aime-2024": easy, "MATH_500": easy, "0day": easy}
    assert list(parse_params(data).data.benchmarks) == ["aime-2024", "MATH_500", "0day"]


@pytest.mark.parametrize("key, value, message", [
    ("identify.candidates", {"../x": "data/toy/models/teacher", "b": "data/toy_alt/teacher"},
     "identify.candidates: Value error, candidate name '../x': use letters, digits and _"),
    ("select.arms", ["../../x"], "select.arms: Value error, arm '../../x': unknown strategy"),
    ("select.arms", ["rsr_beta0.1/../x"], "select.arms: Value error, arm 'rsr_beta0.1/../x': unknown strategy"),
])
def test_other_names_that_become_paths_are_checked(key, value, message):
    assert message in _error(_set(_default(), key, value))


# ---------------------------------------------------------------------- every unknown key (item 8)
def test_every_unknown_key_is_named_in_one_line():
    data = _default()
    data["sede"] = 1
    data["models"]["definitely_not_a_key"] = 2
    data["classify"]["bta"] = 0.1
    text = _error(data)
    assert text.startswith("params.yaml: unknown keys: ")
    assert all(k in text for k in ("sede", "models.definitely_not_a_key", "classify.bta"))


def test_one_unknown_key_reads_as_before():
    data = _default()
    data["sede"] = 1
    assert _error(data) == "params.yaml: sede: unknown key"


# ------------------------------------------------------------------------------- YAML (item 8)
def test_duplicate_yaml_keys_are_refused(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    path.write_text(text + "\nclassify:\n  beta: 0.3\n")  # a second `classify:` silently replaced the first
    with pytest.raises(RdptError) as err:
        load_params(path)
    line = text.count("\n") + 2
    first = 1 + text.split("\nclassify:")[0].count("\n") + 1
    assert str(err.value) == f"{path}: line {line}: duplicate key 'classify' (first at line {first})"
    with pytest.raises(RdptError, match=r"x.yaml: line 3: duplicate key 'b' \(first at line 2\)"):
        parse_yaml("a:\n  b: 1\n  b: 2\n", "x.yaml")


def test_yaml_reader_reads_floats_as_yaml_1_2_and_dvc_do():
    assert parse_yaml("lr: 1e-3\nx: 5E+2\ny: -.5e1\nz: 1_0\nv: 1.0.0\n", "p") == {
        "lr": 1e-3, "x": 500.0, "y": -5.0, "z": 10, "v": "1.0.0"}
    data = _default()
    data["distill"]["learning_rate"] = parse_yaml("lr: 2e-5", "p")["lr"]
    assert parse_params(data).distill.learning_rate == 2e-5


def test_bad_params_files_are_one_line(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes((ROOT / "params.yaml").read_bytes() + b"\n# caf\xe9\n")
    with pytest.raises(RdptError, match=r"p.yaml: line \d+: not UTF-8 text \(byte 0xe9\)"):
        load_params(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(RdptError, match=r"p.yaml: expected a mapping at the top level"):
        load_params(path)
    path.write_text("seed: 0\n  x: [\n")
    with pytest.raises(RdptError, match=r"p.yaml: not valid YAML \(line 2: "):
        load_params(path)


def test_launch_config_uses_the_same_reader(tmp_path):
    from rdpt.training.launch import _read_config

    config = tmp_path / "fsdp.yaml"
    config.write_text("num_processes: 2\nnum_processes: 4\n")
    with pytest.raises(RdptError, match=r"^launch.config_file: .*fsdp.yaml: line 2: duplicate key 'num_processes'"):
        _read_config(str(config))


# ------------------------------------------------------------------ stages: exit 1, one line, no output
def _load_stage(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_params_check_stage_prints_one_line_and_exits_1(tmp_path):
    from click.testing import CliRunner

    module = _load_stage("params_check")
    data = _default()
    data["sede"] = 1
    data["seed"] = -1
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = CliRunner().invoke(module.main, ["--params", str(path)])
    assert result.exit_code == 1
    want = f"error: {path}: seed: Input should be greater than or equal to 0 (got -1) (+1 more)"
    assert result.output.strip() == want
    path.write_text((ROOT / "params.yaml").read_text())
    result = CliRunner().invoke(module.main, ["--params", str(path)])
    assert result.exit_code == 0 and "ok" in result.output


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """An OSError (ENOSPC while an artifact is written) used to escape the stage wrapper as a traceback."""
    from rdpt.cli import stage
    from rdpt.io import artifacts

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(artifacts.os, "fsync", full)
    out = tmp_path / "data" / "teach.jsonl"
    with pytest.raises(SystemExit) as exit_:
        stage(artifacts.write_jsonl)(out, [{"a": 1}])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: No space left on device (the disk is full")
    assert list(out.parent.iterdir()) == []  # no half-written file, no temporary

    def torch_save(*args, **kwargs):  # how torch.save reports a full disk
        raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    with pytest.raises(SystemExit):
        stage(torch_save)()
    assert capsys.readouterr().err.strip().startswith("error: No space left on device (the disk is full")

    def bug(*args, **kwargs):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):  # other exceptions are not disguised as user errors
        stage(bug)()

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "ro"))

    with pytest.raises(SystemExit):
        stage(denied)()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'ro'}: Permission denied (permission denied: check the folder's permissions)"]


# ------------------------------------------------- `dvc repro` validates the whole params file (item 8)
def _dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(cwd)}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_dvc_repro_fails_on_a_key_no_stage_lists(tmp_path):
    """The real params_check stage of dvc.yaml, beside a cheap stage that reads one param, in a git + DVC repo."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    for folder in ("stages", "rdpt"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    check = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["params_check"]
    assert check["always_changed"] is True and "outs" not in check and "params.yaml" in check["deps"]
    other = {"cmd": "python -c \"open('other.txt', 'w').write('x')\"", "params": ["classify.beta"],
             "outs": ["other.txt"]}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"params_check": check, "other": other}}))
    assert subprocess.run(["git", "init", "-q"], cwd=repo).returncode == 0
    assert _dvc(repo, "init", "-q").returncode == 0

    first = _dvc(repo, "repro")
    assert first.returncode == 0, first.stderr
    again = _dvc(repo, "repro")  # nothing changed: the check runs, the other stage does not
    assert again.returncode == 0 and "Running stage 'params_check'" in again.stdout
    assert "Running stage 'other'" not in again.stdout

    data = _default()
    data["models"]["definitely_not_a_key"] = 1  # no stage lists it: before, `dvc repro` said "up to date"
    data["sede"] = 0  # a misspelt top-level key
    (repo / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    typo = _dvc(repo, "repro")
    assert typo.returncode != 0
    errors = [line for line in (typo.stdout + typo.stderr).splitlines() if line.startswith("error:")]
    assert errors == ["error: params.yaml: unknown keys: sede, models.definitely_not_a_key"] or errors == [
        "error: params.yaml: unknown keys: models.definitely_not_a_key, sede"]
    assert "Running stage 'other'" not in typo.stdout

    # `dvc exp run` (from a commit) runs the same check
    (repo / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    git = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    assert _dvc(repo, "repro").returncode == 0
    subprocess.run(["git", "add", "-A"], cwd=repo, env=git, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, env=git, check=True, capture_output=True)
    exp = _dvc(repo, "exp", "run", "-S", "seed=-1")
    assert exp.returncode != 0
    errors = [line for line in (exp.stdout + exp.stderr).splitlines() if line.startswith("error:")]
    assert errors == ["error: params.yaml: seed: Input should be greater than or equal to 0 (got -1)"]
