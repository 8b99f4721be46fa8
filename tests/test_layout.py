"""The package's shape: no import cycle among rdpt's modules, no module over 500 lines, nothing in rdpt/ that
only tests use, and stages/ that stay thin (one stage body call each)::

    python -m pytest tests/test_layout.py -q
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
           for p in (ROOT / "rdpt").rglob("*.py")}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):  # function-level imports count too
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m in MODULES}


def test_no_import_cycle():
    # a package's __init__ re-exporting its modules is not a cycle of the modules themselves
    graph = {m: {t for t in _imports(p) if t != m} for m, p in MODULES.items() if p.name != "__init__.py"}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state and nxt in graph:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("path", sorted(MODULES.values()), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_over_500_lines(path):
    assert len(path.read_text().splitlines()) <= 500


def test_stage_scripts_stay_thin():
    for script in sorted((ROOT / "stages").glob("*.py")):
        body = [n for n in ast.parse(script.read_text()).body if isinstance(n, ast.FunctionDef)]
        assert [f.name for f in body] == ["main"], f"{script.name}: one click command, no logic"
        assert len(script.read_text().splitlines()) <= 45, f"{script.name}: parse options, call rdpt, that's all"
