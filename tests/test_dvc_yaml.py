"""dvc.yaml held to the code: every rdpt file a stage runs is one of its deps, and every code dep is needed.

A stage's code is its script under stages/ and every rdpt module that script imports, transitively (static,
from the import statements, function-level imports included), plus the package data of those packages
(e.g. the viewer's template). Each of those files must be covered by a dep of the stage — the file itself or
a folder above it — or DVC would serve a cached result computed by older code. Conversely every code dep must
cover some file the stage runs: then removing any code dep leaves a needed file uncovered and this test fails
(checked below by removing each one in turn). The params keys each stage reads are checked against its
``params`` by the end-to-end test (tests/test_pipeline_e2e.py), which records them while ``dvc repro`` runs::

    python -m pytest tests/test_dvc_yaml.py -q
"""

from __future__ import annotations

import ast
import re
import shlex
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=None)
def _imports(path: Path) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return frozenset(n for n in names if n == "rdpt" or n.startswith("rdpt."))


def _package_data() -> dict[str, list[str]]:
    """package folder (relative to the repo) -> its package-data globs, from pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text()
    table = re.search(r"^\[tool\.setuptools\.package-data\]\n((?:[^\[\n].*\n?)*)", text, re.M)
    out: dict[str, list[str]] = {}
    if table:
        for line in table.group(1).splitlines():
            m = re.match(r'^\s*"?([\w.]+)"?\s*=\s*\[(.*)\]', line)
            if m:
                pkg = m.group(1).replace(".", "/")
                out[pkg] = [g.strip().strip("\"'") for g in m.group(2).split(",") if g.strip()]
    return out


def code_files(script: Path) -> set[str]:
    """The script and every rdpt file it runs (modules and the packages' data), relative to the repo."""
    files, todo = {script}, [script]
    while todo:
        for name in _imports(todo.pop()):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing rdpt.a.b runs rdpt/__init__ and rdpt/a/__init__ too
                found = _module_file(".".join(parts[:i]))
                if found is not None and found not in files:
                    files.add(found)
                    todo.append(found)
    data = set()
    for pkg, globs in _package_data().items():
        for pattern in globs:
            for path in (ROOT / pkg).glob(pattern):
                # `<name>_assets/` belongs to module `<name>.py` beside it; other data to any module of its folder
                folder = path.parent
                while folder != ROOT and not (folder / "__init__.py").is_file():
                    folder = folder.parent
                first = path.relative_to(folder).parts[0]
                owner = folder / f"{first.removesuffix('_assets')}.py"
                if first.endswith("_assets") and owner.is_file():
                    needed = owner in files
                else:
                    needed = any(f.parent == folder and f.name != "__init__.py" for f in files)
                if path.is_file() and needed:
                    data.add(path)
    return {p.relative_to(ROOT).as_posix() for p in files | data}


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _script(stage: dict) -> Path:
    cmd = stage.get("cmd") or stage["do"]["cmd"]
    words = shlex.split(" ".join(cmd) if isinstance(cmd, list) else cmd)
    return ROOT / next(w for w in words if w.startswith("stages/") and w.endswith(".py"))


def _deps(stage: dict) -> list[str]:
    return list((stage.get("do") or stage)["deps"])


def problems(name: str, stage: dict, deps: list[str]) -> list[str]:
    """What is wrong with ``deps`` as the code deps of stage ``name`` (empty: nothing)."""
    needed = code_files(_script(stage))
    out = [f"{name}: {path} runs but is not a dep" for path in sorted(needed) if not _covered(path, deps)]
    for dep in deps:
        if dep.startswith(("rdpt", "stages/")) and not any(_covered(path, [dep]) for path in needed):
            out.append(f"{name}: dep {dep} is code the stage never runs")
    return out


STAGES = _stages()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_file_a_stage_runs_is_a_dep(name):
    assert problems(name, STAGES[name], _deps(STAGES[name])) == []


@pytest.mark.parametrize("name", sorted(STAGES))
def test_removing_any_code_dep_is_caught(name):
    deps = _deps(STAGES[name])
    code = [d for d in deps if d.startswith(("rdpt", "stages/"))]
    assert code, f"{name} lists no code dep"
    for dep in code:
        assert problems(name, STAGES[name], [d for d in deps if d != dep]), f"{name}: {dep} removed, nothing noticed"


def test_the_checker_sees_imports_a_stage_makes_inside_functions(tmp_path):
    # function-level imports run too: the checker must follow them (the viewer's jinja assets, lazily loaded
    # engines); here: the score stage reaches the hf engine only through the registry's function bodies
    files = code_files(ROOT / "stages" / "score.py")
    assert {"rdpt/engines/hf.py", "rdpt/engines/vllm.py", "rdpt/engines/server.py"} <= files
    assert any(p.startswith("rdpt/analysis/viewer_assets/") for p in code_files(ROOT / "stages" / "viewer.py"))


def test_every_param_a_stage_lists_is_in_params_yaml():
    """DVC refuses to run a stage whose listed param key is missing from params.yaml ("Parameters ... are missing"),
    so a key that only has a pydantic default must be listed through its parent section."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    missing = []
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for key in body.get("params", []):
            if not isinstance(key, str) or "${" in key:
                continue  # templated (foreach) keys resolve per item
            node = params
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    missing.append(f"{name}: {key}")
                    break
                node = node[part]
    assert not missing
