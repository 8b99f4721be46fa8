"""The documentation holds together: README.md, docs/*.md and reports/README.md.

Fails on a relative link to a file that does not exist, on a ``#anchor`` that names no heading of its target
(GitHub's slug rules), on an unfilled placeholder, on a README over 250 lines, and when the install + test commands
in ``.ci/run`` are no longer written out in the docs. Offline and fast: it only reads files::

    python -m pytest tests/test_docs.py -q
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
# [text](target) and ![alt](target), target optionally in <...> and followed by a "title"
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
PLACEHOLDER = re.compile(r"«[^»]*»|\bTODO\b|\bTBD\b|XXX")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, file:, ...


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    if (ROOT / "reports" / "README.md").exists():
        files.append(ROOT / "reports" / "README.md")
    return files


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans blanked out."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m:
            marker = m.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence) and not line.strip()[len(marker):].strip():
                fence = None
            continue
        if fence is None:
            out.append((number, INLINE_CODE.sub(lambda c: " " * len(c.group(0)), line)))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: rendered text, lowercased, punctuation except '-' and '_' dropped, ' ' -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a heading of ``path`` defines; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        result.add(base if n == 0 else f"{base}-{n}")
    return result


def link_problems(path: Path) -> list[str]:
    problems = []
    text = path.read_text(encoding="utf-8")
    for number, line in prose_lines(text):
        for m in LINK.finditer(line):
            target = m.group(1).strip("<>")
            if not target or EXTERNAL.match(target):
                continue
            file_part, _, anchor = target.partition("#")
            where = f"{path.relative_to(ROOT)}:{number}: {target}"
            if file_part:
                base = ROOT if file_part.startswith("/") else path.parent
                resolved = (base / file_part.lstrip("/")).resolve()
                if not resolved.exists():
                    problems.append(f"{where}: no such file")
                    continue
            else:
                resolved = path
            if not anchor:
                continue
            if resolved.suffix.lower() == ".md":
                if anchor not in anchors(resolved):
                    problems.append(f"{where}: no heading with anchor #{anchor}")
            elif not re.fullmatch(r"L\d+(-L\d+)?", anchor):
                problems.append(f"{where}: #{anchor} in a file that is not markdown")
    return problems


# ------------------------------------------------------------------------------------------- the repo's docs
@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_anchors_resolve(path):
    assert link_problems(path) == []


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unfilled_placeholders(path):
    found = [f"{path.relative_to(ROOT)}:{n}: {m.group(0)!r}"
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             for m in PLACEHOLDER.finditer(line)]
    assert found == []


def test_readme_is_a_front_door():
    n_lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n_lines <= README_MAX_LINES, f"README.md has {n_lines} lines; move depth into docs/"


def test_docs_pages_exist_and_open_with_a_summary():
    pages = sorted((ROOT / "docs").glob("*.md"))
    assert pages, "docs/ has no pages"
    for page in pages:
        lines = page.read_text(encoding="utf-8").splitlines()
        assert lines and lines[0].startswith("# "), f"{page.name}: must start with a '# ' title"
        body = [line for line in lines[1:] if line.strip()]
        assert body and not body[0].startswith(("#", "|", "```", "*", "-", "!")), \
            f"{page.name}: the title must be followed by a summary paragraph"


def test_ci_commands_are_the_documented_ones():
    """Each command under a '# --- the README's ... command' marker in .ci/run is written out in the docs."""
    ci = ROOT / ".ci" / "run"
    if not ci.exists():
        pytest.skip(".ci/run not in this checkout")
    lines = ci.read_text(encoding="utf-8").splitlines()
    commands = []
    for i, line in enumerate(lines):
        if re.match(r"#\s*---.*README.*command", line):
            following = next((x.strip() for x in lines[i + 1:] if x.strip() and not x.startswith("#")), None)
            if following:
                commands.append(following)
    assert commands, ".ci/run has no marked README command"
    docs = "\n".join(p.read_text(encoding="utf-8") for p in doc_files())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert commands[0] in readme, f"README.md must show .ci/run's test command verbatim: {commands[0]}"
    for command in commands[1:]:
        assert command in docs, f"the docs must show .ci/run's command verbatim: {command}"


# ------------------------------------------------------------------------------------------- the checker itself
@pytest.mark.parametrize("heading, expected", [
    ("Scaling up", "scaling-up"),
    ("Which teacher?", "which-teacher"),
    ("Outputs (`reports/`)", "outputs-reports"),
    ("Multi-process fine-tuning (accelerate)", "multi-process-fine-tuning-accelerate"),
    ("Interrupted runs and determinism", "interrupted-runs-and-determinism"),
    ("select_run and `toy_alt`", "select_run-and-toy_alt"),
    ("See [the docs](docs/x.md)", "see-the-docs"),
])
def test_slug_follows_github(heading, expected):
    assert slug(heading) == expected


def test_checker_catches_broken_links(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## Real heading\n\n## Real heading\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "# R\n\n## Here\n\n"
        "[ok](docs/a.md) [ok](docs/a.md#real-heading) [ok](docs/a.md#real-heading-1) [ok](#here)\n"
        "[web](https://example.org/x#y) `[in code](nowhere.md)`\n\n"
        "```\n[in a fence](nowhere.md)\n# not a heading\n```\n\n"
        "[gone](docs/missing.md) [bad anchor](docs/a.md#nope) ![img](figures/none.png) [self](#not-a-heading)\n",
        encoding="utf-8")
    problems = link_problems(page)
    assert len(problems) == 4, problems
    assert any("docs/missing.md: no such file" in p for p in problems)
    assert any("#nope" in p for p in problems)
    assert any("figures/none.png" in p for p in problems)
    assert any("#not-a-heading" in p for p in problems)


@pytest.mark.parametrize("text", ["about «VLLMCI» min", "TODO: fill", "TBD", "XXX"])
def test_checker_catches_placeholders(text):
    assert PLACEHOLDER.search(text)
