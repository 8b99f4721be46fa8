"""The HTML provenance viewer: its data, its page, and what a real browser (headless Chromium) draws."""

import json
import math
import re
from fnmatch import fnmatch
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path

import pandas as pd
import pytest
from browser import dump_dom, find_chromium, screenshot

from rdpt import RdptError
from rdpt.analysis.figures import CLASS_COLORS
from rdpt.analysis.viewer import VIEW_CLASSES, render_page, tint, viewer, viewer_records

NAN = float("nan")
# (response_id, benchmark, gold, correct, finish_reason, pieces); a piece is (text, class, (pT, pS, pD)) or a
# bare string outside every sentence. Texts hold what breaks naive HTML: markup, "</script>", &, <, LaTeX,
# characters outside the BMP (two UTF-16 units in the browser, one code point in Python).
RESPONSES = [
    ("alpha/q1/0", "alpha", "7", True, "stop", [
        "  ",
        ("First <b>bold</b> & 1 < 2.\n", "Teacher", (0.9, 0.2, 0.8)),
        ("Then $\\frac{1}{2}$ </script><script>alert(1)</script> <!-- ok.\n", "Boosted", (0.31234, 0.3, 0.7)),
        ("The answer is \\boxed{7}.", "Shared", (0.5, 0.5, 0.5)),
        "\n",
    ]),
    ("alpha/q1/1", "alpha", "7", False, "length", [
        ("Let \U0001d465 = 3 \U0001f600.\n", "Student", (0.1, 0.6, 0.55)),
        ("So \U0001d465 + 1 = 5.\n", "Unscored", (NAN, NAN, NAN)),
        ("The answer is \\boxed{5}.", "Teacher", (0.8, 0.1, 0.9)),
    ]),
    ("alpha/q2/0", "alpha", "3", False, "stop", []),
    ("beta/q9/0", "beta", "4", True, "stop", [("The answer is \\boxed{4}.", "Boosted", (0.2, 0.2, 0.9))]),
]


def _text(pieces):
    return "".join(p if isinstance(p, str) else p[0] for p in pieces)


def _frames():
    gens, sents, graded = [], [], []
    for rid, bench, gold, correct, finish, pieces in RESPONSES:
        text = _text(pieces)
        gens.append({"response_id": rid, "benchmark": bench, "question_id": rid.rsplit("/", 1)[0], "sample_idx": 0,
                     "question": f"Question of {rid} with <tags> & more?", "answer": gold, "text": text,
                     "finish_reason": finish, "n_tokens": len(text)})
        graded.append({"model": "distilled", "response_id": rid, "benchmark": bench, "question_id": rid,
                       "correct": correct, "finish_reason": finish, "n_tokens": len(text),
                       "replacement_char": "\ufffd" in text})
        start, k = 0, 0
        for p in pieces:
            piece = p if isinstance(p, str) else p[0]
            if not isinstance(p, str):
                pt, ps, pd_ = p[2]
                sents.append({"response_id": rid, "benchmark": bench, "sentence_idx": k, "start": start,
                              "end": start + len(piece), "text": piece, "p_teacher": pt, "p_student": ps,
                              "p_distilled": pd_, "cls": p[1]})
                k += 1
            start += len(piece)
    return pd.DataFrame(sents), pd.DataFrame(gens), pd.DataFrame(graded)


def _records():
    sents, gens, graded = _frames()
    return viewer_records(sents, gens, dict(zip(graded["response_id"], graded["correct"])))


def test_records_rebuild_each_response_exactly():
    records = _records()
    assert list(records) == ["alpha", "beta"]
    assert [r["id"] for r in records["alpha"]] == ["alpha/q1/0", "alpha/q1/1", "alpha/q2/0"]
    for (rid, _, gold, correct, finish, pieces), rec in zip(RESPONSES, records["alpha"] + records["beta"]):
        assert "".join(text for text, _ in rec["parts"]) == _text(pieces)
        assert (rec["id"], rec["gold"], rec["correct"], rec["finish"]) == (rid, gold, correct, finish)
        sentences = [p for p in pieces if not isinstance(p, str)]
        assert [VIEW_CLASSES[s[0]] for s in rec["sentences"]] == [p[1] for p in sentences]
        assert [text for text, j in rec["parts"] if j >= 0] == [p[0] for p in sentences]
    first = records["alpha"][0]
    assert first["parts"][0] == ["  ", -1] and first["parts"][-1] == ["\n", -1]  # text outside sentences kept
    assert first["sentences"][1] == [VIEW_CLASSES.index("Boosted"), 0.312, 0.3, 0.7]  # 3 decimals
    assert first["answer"] == "7" and records["alpha"][1]["answer"] == "5"
    assert records["alpha"][1]["sentences"][1][1:] == [None, None, None]  # unscored: no probabilities
    assert records["alpha"][2]["parts"] == [] and records["alpha"][2]["answer"] is None


def test_page_embeds_data_safely_and_deterministically():
    records = _records()
    page = render_page("alpha", records["alpha"], ["alpha", "beta"])
    assert page == render_page("alpha", records["alpha"], ["alpha", "beta"])  # no timestamp, no randomness
    # "</script>" and "<!--" in a response cannot end or derail the data block: only the page's own two
    # script elements close, and the embedded JSON reads back as the records
    assert page.count("</script>") == 2 and "<!--" not in page
    block = re.search(r'<script type="application/json" id="rdpt-data">(.*?)</script>', page, re.DOTALL).group(1)
    data = json.loads(block)
    assert data["responses"] == json.loads(json.dumps(records["alpha"]))
    assert [c["name"] for c in data["classes"]] == list(VIEW_CLASSES)
    assert data["classes"][1] == {"name": "Teacher", "color": CLASS_COLORS["Teacher"],
                                  "tint": tint(CLASS_COLORS["Teacher"]), "reading": data["classes"][1]["reading"]}
    # self-contained: nothing is loaded from anywhere, and the CSP forbids it anyway
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(""", page)
    assert "default-src 'none'" in page


def test_page_inlines_its_package_data_assets():
    # the page is rendered from files shipped as package data: they must be inlined whole (the page loads
    # nothing), the title autoescaped, no template syntax left over, and pyproject must ship every asset
    folder = files("rdpt.analysis") / "viewer_assets"
    page = render_page("a<b>&c", [], ["a<b>&c"])
    for name in ("viewer.css", "viewer.js"):
        assert f">\n{(folder / name).read_text(encoding='utf-8')}</" in page
    assert "<title>a&lt;b&gt;&amp;c · rdpt provenance viewer</title>" in page and "a<b>" not in page
    assert not re.search(r"\{\{|\{%|\{#", page) and page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    # read the table by hand: tomllib is 3.11+, rdpt supports 3.10
    toml = (Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    table = re.search(r"^\[tool\.setuptools\.package-data\]\n(?:#.*\n)*rdpt = (\[.*\])$", toml, re.MULTILINE)
    shipped = json.loads(table.group(1))
    names = {p.name for p in folder.iterdir()}
    assert names >= {"page.html.j2", "viewer.css", "viewer.js"}
    assert all(any(fnmatch(f"analysis/viewer_assets/{n}", g) for g in shipped) for n in names), (names, shipped)


def test_tint_is_the_figures_band_over_white():
    assert tint("#de8f05", 0.35) == "#f3d8a8"  # 255 - 0.35 * (255 - c) per channel: 243, 216, 168
    assert tint("#000000", 1.0) == "#000000" and tint("#123456", 0.0) == "#ffffff"


def _write_inputs(folder, sents, gens, graded):
    paths = {"classified": folder / "classified.parquet", "graded": folder / "graded.parquet",
             "generations": folder / "distilled.jsonl"}
    sents.to_parquet(paths["classified"])
    graded.to_parquet(paths["graded"])
    gens.to_json(paths["generations"], orient="records", lines=True, force_ascii=False)
    return {k: str(v) for k, v in paths.items()}


def test_stage_writes_one_page_per_benchmark(tmp_path):
    paths = _write_inputs(tmp_path, *_frames())
    out = tmp_path / "viewer"
    out.mkdir()
    (out / "gone.html").write_text("a benchmark no longer in the data")
    (out / "notes.txt").write_text("kept")
    written = viewer(paths["classified"], paths["graded"], paths["generations"], str(out))
    assert [p.name for p in written] == ["alpha.html", "beta.html"]
    assert sorted(p.name for p in out.iterdir()) == ["alpha.html", "beta.html", "notes.txt"]
    first = (out / "alpha.html").read_bytes()
    viewer(paths["classified"], paths["graded"], paths["generations"], str(out))
    assert (out / "alpha.html").read_bytes() == first
    assert 'href="' not in (out / "beta.html").read_text()  # benchmarks are linked by the page's script


@pytest.mark.parametrize("case, file, message", [
    ("text", "classified", r"response 'alpha/q1/0': sentence 1 does not match its text"),
    ("grade", "graded", r"no grade for distilled response 'beta/q9/0'"),
    ("stray", "classified", r"response 'zeta/q/0' is not among the traced generations"),
    ("cls", "classified", r"unknown class\(es\) \['Other'\]"),
])
def test_stale_inputs_are_user_errors(tmp_path, case, file, message):
    sents, gens, graded = _frames()
    if case == "text":
        sents.loc[1, "text"] = "something else"
    elif case == "grade":
        graded = graded[graded["response_id"] != "beta/q9/0"]
    elif case == "stray":
        sents.loc[0, "response_id"] = "zeta/q/0"
    else:
        sents.loc[0, "cls"] = "Other"
    paths = _write_inputs(tmp_path, sents, gens, graded)
    with pytest.raises(RdptError, match=re.escape(paths[file]) + ": .*" + message):
        viewer(paths["classified"], paths["graded"], paths["generations"], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ in a real browser
chromium = pytest.mark.skipif(find_chromium() is None, reason="chromium not installed: apt-get install chromium")


class _Cards(HTMLParser):
    """Per rendered card (data-id): its badge, the response element's text, and every sentence span."""

    def __init__(self):
        super().__init__()
        self.cards, self.chips, self._card, self._depth, self._span = {}, {}, None, 0, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "article":
            self._card = {"correct": a["data-correct"], "text": "", "spans": []}
            self.cards[a["data-id"]] = self._card
        elif tag == "label" and "chip" in a.get("class", ""):
            self.chips[a["data-cls"]] = "off" not in a["class"].split()
        elif tag == "div" and a.get("class", "").split()[0:1] == ["resp"]:
            self._depth = 1
        elif self._depth and tag == "span":
            self._depth += 1
            self._span = {**a, "text": ""}
            self._card["spans"].append(self._span)

    def handle_endtag(self, tag):
        if self._depth and tag in ("div", "span"):
            self._depth -= 1
            self._span = None

    def handle_data(self, data):
        if self._depth:
            self._card["text"] += data
            if self._span is not None:
                self._span["text"] += data


def _render(tmp_path, fragment=""):
    page = tmp_path / "alpha.html"
    page.write_text(render_page("alpha", _records()["alpha"], ["alpha", "beta"]), encoding="utf-8")
    parser = _Cards()
    parser.feed(dump_dom(page, fragment))
    return parser


def _p(value):
    return "—" if math.isnan(value) else f"{value:.3f}"


@chromium
def test_viewer_renders_every_sentence_in_chromium(tmp_path):
    view = _render(tmp_path)
    assert list(view.cards) == ["alpha/q1/0", "alpha/q1/1", "alpha/q2/0"]
    for rid, _, _, correct, _, pieces in RESPONSES[:2]:
        card = view.cards[rid]
        assert card["correct"] == str(correct).lower()
        assert card["text"] == _text(pieces)  # whitespace, markup, "</script>", astral characters: all intact
        sentences = [p for p in pieces if not isinstance(p, str)]
        assert len(card["spans"]) == len(sentences)
        for k, (span, (text, cls, probs)) in enumerate(zip(card["spans"], sentences)):
            assert (span["class"], span["data-cls"], span["data-k"], span["text"]) == ("s", cls, str(k), text)
            assert span["style"] == f"background-color: {tint(CLASS_COLORS[cls])}; border-bottom: 2px solid " \
                                    f"{CLASS_COLORS[cls]}"
            assert span["data-tip"] == f"{cls} · pT {_p(probs[0])} · pS {_p(probs[1])} · pD {_p(probs[2])}"
    assert view.cards["alpha/q2/0"]["text"] == "(empty response)"
    assert view.chips == {c: True for c in VIEW_CLASSES}


@chromium
def test_viewer_filters_from_the_url_in_chromium(tmp_path):
    view = _render(tmp_path, "outcome=incorrect&cls=Teacher")
    assert list(view.cards) == ["alpha/q1/1"]  # incorrect, and holds a Teacher sentence (alpha/q2/0 has none)
    spans = view.cards["alpha/q1/1"]["spans"]
    assert [s["data-cls"] for s in spans] == ["Student", "Unscored", "Teacher"]
    assert [s["class"] for s in spans] == ["s off", "s off", "s"]  # only the selected class is coloured
    assert "style" not in spans[0]
    assert spans[2]["style"].startswith(f"background-color: {tint(CLASS_COLORS['Teacher'])};")
    assert view.chips == {c: c == "Teacher" for c in VIEW_CLASSES}
    assert list(_render(tmp_path, "q=%3C%2Fscript%3E").cards) == ["alpha/q1/0"]  # text search


@chromium
def test_viewer_colours_show_in_a_screenshot(tmp_path):
    from PIL import Image

    page = tmp_path / "alpha.html"
    page.write_text(render_page("alpha", _records()["alpha"], ["alpha"]), encoding="utf-8")

    def pixels(fragment):
        shot = screenshot(page, tmp_path / "shot.png", fragment, 1000, 900)
        counts = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)

        def near(rgb, hex_):  # within 2 of the colour #rrggbb on every channel (anti-aliasing)
            return all(abs(a - int(hex_[i:i + 2], 16)) <= 2 for a, i in zip(rgb, (1, 3, 5)))

        return {c: sum(n for n, rgb in counts if near(rgb, tint(CLASS_COLORS[c]))) for c in VIEW_CLASSES[:4]}

    shown = pixels("")
    assert all(n > 1500 for n in shown.values()), shown  # each class's sentences are painted in its tint
    only_teacher = pixels("cls=Teacher")
    assert only_teacher["Teacher"] > 1500
    # the other classes' tints are left only in their legend swatches (10 x 10 pixels each)
    assert all(only_teacher[c] < 200 for c in ("Shared", "Student", "Boosted")), only_teacher
