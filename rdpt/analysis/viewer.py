"""Provenance viewer: one self-contained HTML page per benchmark showing every traced response.

Each response is drawn as its exact text, sentence by sentence, every sentence on its class colour (the
same colours as the figures, blended over white like their bands); hovering a sentence shows pT, pS, pD.
The page has the question, gold and extracted answer and a correct/incorrect badge per response, and
filters by outcome, class and text. The data is embedded as JSON and drawn by inline JavaScript: no
server, no network (a Content-Security-Policy forbids any load), and the same inputs give the same bytes::

    python stages/viewer.py --classified data/classified.parquet --graded data/graded.parquet \
        --generations data/generations/distilled.jsonl --out reports/viewer
    python -m webbrowser "file://$PWD/reports/viewer/toy_easy.html"

Filters live in the URL fragment (``toy_easy.html#outcome=incorrect&cls=Boosted&q=check&page=2``), so a
view can be bookmarked, and the browser test preselects one.

The page's HTML, CSS and JavaScript are package data in ``viewer_assets/`` (a jinja2 template and the two
files it inlines); this module only prepares the data and writes the pages.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from rdpt import RdptError
from rdpt.analysis.figures import BAND_ALPHA, CLASS_COLORS, MODEL_LINES
from rdpt.generation.grade import extract_answer
from rdpt.io.artifacts import atomic_path, read_table
from rdpt.provenance.rules import CLASSES, UNSCORED

VIEW_CLASSES = (*CLASSES, UNSCORED)  # index = class code in the embedded data
READINGS = {
    "Shared": "every model writes it alike: |pT−pS|, |pT−pD|, |pS−pD| ≤ α",
    "Teacher": "learned from the teacher: pT − pS > β",
    "Student": "kept from the student: pS − pT > β",
    "Boosted": "pT ≈ pS, but the distilled model departs from both",
    UNSCORED: "no token under some model: not classified, not in the shares",
}
PROBS = ("p_teacher", "p_student", "p_distilled")  # stored per sentence in this order
SENTENCE_COLUMNS = ("response_id", "sentence_idx", "start", "end", "text", *PROBS, "cls")
PAGE_SIZE = 20  # responses drawn at once: a page of hundreds of long traces would stall the browser
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def tint(color: str, alpha: float = BAND_ALPHA) -> str:
    """``color`` at ``alpha`` over white, as an opaque ``#rrggbb`` (what the figures' bands look like)."""
    rgb = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{round(255 - alpha * (255 - c)):02x}" for c in rgb)


def _p(value) -> float | None:
    return None if pd.isna(value) else round(float(value), 3)


def viewer_records(sentences: pd.DataFrame, generations: pd.DataFrame, correct: dict[str, bool]) -> dict:
    """benchmark -> the viewer's record of each traced response, in generation order.

    A record holds the response cut into ``parts`` ``[text, j]`` that concatenate to the response text
    (``j`` is the sentence's position in ``sentences``, -1 for text outside every sentence) and, per
    sentence, ``[class code, pT, pS, pD]`` rounded to 3 decimals (None when unscored).
    """
    missing = [c for c in SENTENCE_COLUMNS if c not in sentences.columns]
    if missing:
        raise RdptError(f"missing column(s) {', '.join(missing)}")
    unknown = sorted(set(sentences["cls"]) - set(VIEW_CLASSES))
    if unknown:
        raise RdptError(f"unknown class(es) {unknown}")
    stray = sorted(set(sentences["response_id"]) - set(generations["response_id"]))
    if stray:
        raise RdptError(f"response {stray[0]!r} is not among the traced generations")
    groups = {rid: g.sort_values("sentence_idx") for rid, g in sentences.groupby("response_id", sort=False)}
    out: dict[str, list[dict]] = {}
    for row in generations.itertuples(index=False):
        rid, text = str(row.response_id), str(row.text)
        if rid not in correct:
            raise RdptError(f"response {rid!r} has no grade")
        parts, cut = [], 0
        group = groups.get(rid)
        rows = group.itertuples(index=False) if group is not None else ()
        codes = []
        for j, s in enumerate(rows):
            start, end = int(s.start), int(s.end)
            if not cut <= start <= end <= len(text) or text[start:end] != s.text:
                raise RdptError(f"response {rid!r}: sentence {s.sentence_idx} does not match its text")
            if start > cut:
                parts.append([text[cut:start], -1])
            parts.append([text[start:end], j])
            codes.append([VIEW_CLASSES.index(s.cls), *(_p(getattr(s, c)) for c in PROBS)])
            cut = end
        if cut < len(text):
            parts.append([text[cut:], -1])
        out.setdefault(str(row.benchmark), []).append({
            "id": rid, "question": str(row.question), "gold": str(row.answer), "answer": extract_answer(text),
            "correct": bool(correct[rid]), "finish": str(row.finish_reason), "n_tokens": int(row.n_tokens),
            "parts": parts, "sentences": codes,
        })
    return out


def _script_json(payload) -> str:
    # Inside <script> only "</script" or "<!--" could end or derail the block; escaping every <, > and &
    # as JSON \u escapes rules out both whatever the responses contain, and JSON.parse reads them back.
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(benchmark: str, records: list[dict], benchmarks: list[str]) -> str:
    """The self-contained HTML page of one benchmark (``benchmarks`` are linked from its header)."""
    payload = {
        "benchmark": benchmark,
        "benchmarks": benchmarks,
        "page_size": PAGE_SIZE,
        "classes": [{"name": c, "color": CLASS_COLORS[c], "tint": tint(CLASS_COLORS[c]), "reading": READINGS[c]}
                    for c in VIEW_CLASSES],
        # pT, pS, pD in the tooltip, coloured like their lines in the action-split figure
        "models": [{"label": f"p{name[0].upper()}", "name": name, "color": color}
                   for name, color in (MODEL_LINES[c] for c in PROBS)],
        "responses": records,
    }
    # css, js and data are already safe where they land (trusted files; JSON escaped by _script_json):
    # autoescaping them would turn the JSON's quotes into &#34; and JSON.parse would fail
    css, js, template = _assets()
    return template.render(title=benchmark, css=css, js=js, data=Markup(_script_json(payload)))


def write_viewers(records: dict[str, list[dict]], out_dir: str | Path) -> list[Path]:
    """Write ``<benchmark>.html`` for each benchmark into ``out_dir`` (atomically); drop stale pages."""
    out = Path(out_dir)
    for name in records:
        if not _SAFE_NAME.fullmatch(name):
            raise RdptError(f"benchmark {name!r}: not usable as a file name (letters, digits, . _ - only)")
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(records)
    for stale in out.glob("*.html"):
        if stale.stem not in records:
            stale.unlink()
    paths = []
    for name in names:
        path = out / f"{name}.html"
        with atomic_path(path) as tmp:
            tmp.write_text(render_page(name, records[name], names), encoding="utf-8")
        paths.append(path)
    return paths


@cache
def _assets() -> tuple[Markup, Markup, jinja2.Template]:
    # read once per process through importlib.resources, so the assets are found in a wheel or an editable
    # install alike; keep_trailing_newline keeps the page's last newline (jinja2 drops it by default)
    folder = files("rdpt.analysis") / "viewer_assets"
    css, js, page = (
        (folder / name).read_text(encoding="utf-8") for name in ("viewer.css", "viewer.js", "page.html.j2"))
    env = jinja2.Environment(autoescape=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    return Markup(css), Markup(js), env.from_string(page)


def viewer(classified_path: str, graded_path: str, generations_path: str, out_dir: str) -> list[Path]:
    """One self-contained HTML provenance viewer per benchmark (``<out_dir>/<benchmark>.html``)."""
    sents = read_table(classified_path, "classified")
    graded = read_table(graded_path, "graded")
    gens = read_table(generations_path, "generations")
    for column in ("start", "end", "text"):  # carried from the sentences table by classify
        if column not in sents.columns:
            raise RdptError(f"{classified_path}: missing column {column!r} (rerun classify)")
    traced = graded[graded["model"] == "distilled"]
    correct = dict(zip(traced["response_id"].astype(str), traced["correct"].astype(bool)))
    ungraded = sorted(set(gens["response_id"].astype(str)) - set(correct))
    if ungraded:
        raise RdptError(f"{graded_path}: no grade for distilled response {ungraded[0]!r} (rerun evaluate)")
    try:
        records = viewer_records(sents, gens, correct)
    except RdptError as err:
        raise RdptError(f"{classified_path}: {err} (rerun the stages: dvc repro)") from None
    return write_viewers(records, out_dir)
