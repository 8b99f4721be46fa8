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
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd

from rdpt import RdptError
from rdpt.artifacts import atomic_path
from rdpt.classify import CLASSES, UNSCORED
from rdpt.grade import extract_answer
from rdpt.report import BAND_ALPHA, CLASS_COLORS, MODEL_LINES

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
    # the data goes in last, so nothing a response contains is ever taken for a placeholder
    return (_PAGE.replace("__TITLE__", html.escape(benchmark))
            .replace("__CSS__", _CSS).replace("__JS__", _JS).replace("__DATA__", _script_json(payload)))


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


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; \
script-src 'unsafe-inline'">
<title>__TITLE__ · rdpt provenance viewer</title>
<style>__CSS__</style>
</head>
<body>
<header class="top"><div class="wrap">
  <div class="titlebar">
    <h1><span class="brand">rdpt</span> provenance viewer <span class="bench">__TITLE__</span></h1>
    <nav id="benchmarks" aria-label="benchmarks"></nav>
  </div>
  <p class="summary" id="summary"></p>
</div></header>
<section class="controls"><div class="wrap">
  <div class="row">
    <div class="seg" id="outcome" role="group" aria-label="outcome">
      <button type="button" data-outcome="all">All</button>
      <button type="button" data-outcome="correct">Correct</button>
      <button type="button" data-outcome="incorrect">Incorrect</button>
    </div>
    <input type="search" id="search" placeholder="Search question, response or id" aria-label="search">
    <div class="pager" id="pager-top"></div>
  </div>
  <div class="legend" id="legend"></div>
</div></section>
<main class="wrap" id="list"></main>
<div class="wrap"><div class="pager bottom" id="pager-bottom"></div></div>
<div class="tip" id="tip" hidden></div>
<noscript><p class="wrap">This viewer draws the responses with JavaScript; please enable it.</p></noscript>
<script type="application/json" id="rdpt-data">__DATA__</script>
<script>__JS__</script>
</body>
</html>
"""

_CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa; --ok: #1a7f37; --bad: #cf222e;
  --warn: #9a6700; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: var(--bg);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Liberation Sans", Arial, sans-serif; }
.wrap { max-width: 1200px; margin: 0 auto; padding-left: 24px; padding-right: 24px; }
header.top { background: #fff; border-bottom: 1px solid var(--line); }
header.top .wrap { padding-top: 16px; padding-bottom: 12px; }
.titlebar { display: flex; align-items: baseline; justify-content: space-between; gap: 16px; flex-wrap: wrap; }
h1 { margin: 0; font-size: 20px; font-weight: 600; letter-spacing: -0.01em; }
h1 .brand { font-family: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace;
  background: var(--fg); color: #fff; border-radius: 5px; padding: 1px 7px; margin-right: 4px; font-size: 17px; }
h1 .bench { color: var(--accent); margin-left: 6px; }
nav a, nav span { margin-left: 12px; color: var(--accent); text-decoration: none; font-size: 13px; }
nav span { color: var(--fg); font-weight: 600; }
nav a:hover { text-decoration: underline; }
.summary { margin: 6px 0 0; color: var(--muted); }
.summary b { color: var(--fg); font-weight: 600; }
.controls { position: sticky; top: 0; z-index: 5; background: rgba(255, 255, 255, 0.97);
  border-bottom: 1px solid var(--line); box-shadow: 0 1px 4px rgba(31, 35, 40, 0.05); }
.controls .wrap { padding-top: 10px; padding-bottom: 10px; }
.row { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; }
.seg { display: inline-flex; border: 1px solid var(--line); border-radius: 6px; overflow: hidden; }
.seg button { font: inherit; border: 0; background: #fff; padding: 5px 12px; cursor: pointer; color: var(--fg); }
.seg button + button { border-left: 1px solid var(--line); }
.seg button.on { background: var(--fg); color: #fff; }
#search { font: inherit; flex: 1 1 260px; min-width: 180px; padding: 5px 10px; border: 1px solid var(--line);
  border-radius: 6px; }
#search:focus { outline: 2px solid var(--accent); outline-offset: -1px; }
.pager { display: flex; align-items: center; gap: 8px; color: var(--muted); white-space: nowrap; }
.pager button { font: inherit; border: 1px solid var(--line); background: #fff; border-radius: 6px; padding: 3px 10px;
  cursor: pointer; }
.pager button:disabled { color: #b0b8c1; cursor: default; }
.pager.bottom { justify-content: flex-end; padding: 4px 0 28px; }
.legend { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 8px; margin-top: 10px; font-size: 13px; }
.legend .label { color: var(--muted); margin-right: 4px; }
.chip { display: inline-flex; align-items: center; gap: 6px; padding: 2px 9px 2px 6px; border: 1px solid var(--line);
  border-radius: 999px; background: #fff; cursor: pointer; user-select: none; }
.chip input { margin: 0; accent-color: var(--fg); }
.chip .sw { width: 14px; height: 14px; border-radius: 3px; border: 2px solid; }
.chip .name { font-weight: 600; }
.chip .share { color: var(--muted); font-variant-numeric: tabular-nums; }
.chip.off { opacity: 0.55; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; margin: 16px 0; padding: 14px 18px 16px; }
.card-head { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; }
.rid { font-family: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px;
  font-weight: 600; }
.badge { font-size: 12px; font-weight: 600; border-radius: 999px; padding: 1px 9px; border: 1px solid; }
.badge.ok { color: var(--ok); background: #dafbe1; border-color: #aceebb; }
.badge.bad { color: var(--bad); background: #ffebe9; border-color: #ffcecb; }
.badge.warn { color: var(--warn); background: #fff8c5; border-color: #f2e08a; }
.meta { color: var(--muted); font-size: 13px; }
.mix { display: inline-flex; width: 140px; height: 8px; border-radius: 4px; overflow: hidden; background: #eaeef2;
  margin-left: auto; }
.mix i { display: block; height: 100%; }
.qa { display: grid; grid-template-columns: 72px 1fr; gap: 4px 12px; margin: 10px 0 12px; }
.qa dt { color: var(--muted); font-size: 13px; padding-top: 1px; }
.qa dd { margin: 0; }
.qa code { font-family: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-size: 13px; background: var(--bg); border: 1px solid var(--line); border-radius: 4px; padding: 0 6px; }
.qa .answers { white-space: pre; }
.qa .none { color: var(--muted); font-style: italic; }
.resp { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 15px; line-height: 1.8; padding: 10px 14px;
  border: 1px solid var(--line); border-radius: 6px; background: #fff; margin: 0; }
.resp.empty { color: var(--muted); font-style: italic; }
.s { border-radius: 3px; padding: 2px 0; -webkit-box-decoration-break: clone; box-decoration-break: clone; }
.s.off { color: #8c959f; }
.s:hover { outline: 1.5px solid rgba(31, 35, 40, 0.6); }
.nothing { color: var(--muted); text-align: center; padding: 48px 0; }
.tip { position: fixed; z-index: 10; pointer-events: none; background: #fff; border: 1px solid var(--line);
  border-radius: 8px; box-shadow: 0 8px 24px rgba(31, 35, 40, 0.16); padding: 9px 12px; font-size: 13px;
  min-width: 230px; max-width: 320px; }
.tip .head { display: flex; align-items: center; gap: 7px; font-weight: 600; margin-bottom: 6px; }
.tip .sw { width: 12px; height: 12px; border-radius: 3px; }
.tip .pr { display: grid; grid-template-columns: 20px 58px 1fr 42px; align-items: center; gap: 6px; }
.tip .model { color: var(--muted); font-size: 12px; }
.tip .bar { height: 7px; background: #eaeef2; border-radius: 4px; overflow: hidden; }
.tip .bar i { display: block; height: 100%; }
.tip .val { text-align: right; font-variant-numeric: tabular-nums; font-family: ui-monospace, "DejaVu Sans Mono",
  Menlo, Consolas, monospace; }
.tip .why { color: var(--muted); margin-top: 6px; font-size: 12px; }
"""

_JS = r"""
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("rdpt-data").textContent);
  const CLS = data.classes, RESP = data.responses, PAGE = data.page_size;
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const fmt = (p) => (p === null ? "—" : p.toFixed(3));
  const pct = (x) => (100 * x).toFixed(1) + "%";
  const num = (n) => n.toLocaleString("en-US");

  for (const r of RESP) {
    r.counts = CLS.map(() => 0);
    for (const s of r.sentences) r.counts[s[0]]++;
    r.haystack = (r.id + "\n" + r.question + "\n" + r.parts.map((p) => p[0]).join("")).toLowerCase();
  }
  // classes that occur in this benchmark: only they get a filter chip
  const present = CLS.map((c, i) => RESP.some((r) => r.counts[i] > 0));
  const names = CLS.filter((c, i) => present[i]).map((c) => c.name);
  const state = { outcome: "all", classes: new Set(names), q: "", page: 1 };
  const allOn = () => names.every((n) => state.classes.has(n));

  function readHash() {
    const h = new URLSearchParams(location.hash.replace(/^#/, ""));
    const o = h.get("outcome");
    if (o === "all" || o === "correct" || o === "incorrect") state.outcome = o;
    if (h.has("cls")) state.classes = new Set(h.get("cls").split(",").filter((n) => names.includes(n)));
    state.q = h.get("q") || "";
    const p = parseInt(h.get("page"), 10);
    state.page = p > 0 ? p : 1;
  }
  function writeHash() {
    const h = new URLSearchParams();
    if (state.outcome !== "all") h.set("outcome", state.outcome);
    if (!allOn()) h.set("cls", names.filter((n) => state.classes.has(n)).join(","));
    if (state.q) h.set("q", state.q);
    if (state.page > 1) h.set("page", String(state.page));
    const s = h.toString().replace(/%2C/g, ",");
    try {
      history.replaceState(null, "", s ? "#" + s : location.pathname + location.search);
    } catch (e) { /* some browsers refuse history on file:// pages: the view still works */ }
  }

  const byOutcomeAndText = (r) =>
    (state.outcome === "all" || r.correct === (state.outcome === "correct")) &&
    (!state.q || r.haystack.includes(state.q.toLowerCase()));
  const byClass = (r) => allOn() || CLS.some((c, i) => state.classes.has(c.name) && r.counts[i] > 0);

  function header() {
    const nav = $("benchmarks");
    for (const b of data.benchmarks) {
      if (b === data.benchmark) { nav.append(el("span", "", b)); continue; }
      const a = el("a", "", b);
      a.href = encodeURIComponent(b) + ".html";
      nav.append(a);
    }
    const n = RESP.length, ok = RESP.filter((r) => r.correct).length;
    const sent = RESP.reduce((t, r) => t + r.sentences.length, 0);
    const unscored = RESP.reduce((t, r) => t + r.counts[CLS.length - 1], 0);
    const sum = $("summary");
    const bits = [[num(n), " traced responses of the distilled model · "], [n ? pct(ok / n) : "—", " correct · "],
                  [num(sent), " sentences" + (unscored ? " (" + num(unscored) + " unscored)" : "")]];
    for (const [b, t] of bits) { sum.append(el("b", "", String(b)), t); }
    sum.append(" · hover a sentence for pT, pS, pD; the view is kept in the URL.");
  }

  function legend(pool) {
    const box = $("legend");
    box.replaceChildren();
    const totals = CLS.map((c, i) => pool.reduce((t, r) => t + r.counts[i], 0));
    const scored = totals.slice(0, CLS.length - 1).reduce((a, b) => a + b, 0);
    const subset = state.outcome === "all" ? "" : state.outcome + " ";
    box.append(el("span", "label", "Classes in " + num(pool.length) + " " + subset + "responses:"));
    CLS.forEach((c, i) => {
      if (!present[i]) return;
      const on = state.classes.has(c.name);
      const chip = el("label", "chip" + (on ? "" : " off"));
      chip.title = c.name + ": " + c.reading + " (share of the scored sentences · count; click to filter)";
      chip.dataset.cls = c.name;
      const box2 = el("input");
      box2.type = "checkbox";
      box2.checked = on;
      box2.addEventListener("change", () => {
        if (box2.checked) state.classes.add(c.name); else state.classes.delete(c.name);
        state.page = 1;
        render();
      });
      const sw = el("span", "sw");
      sw.style.background = c.tint;
      sw.style.borderColor = c.color;
      const share = c.name === "Unscored" ? num(totals[i])
        : (scored ? pct(totals[i] / scored) : "—") + " · " + num(totals[i]);
      chip.append(box2, sw, el("span", "name", c.name), el("span", "share", share));
      box.append(chip);
    });
  }

  function pager(id, total, pages) {
    const box = $(id);
    box.replaceChildren();
    if (!total) return;
    const first = (state.page - 1) * PAGE + 1, last = Math.min(total, state.page * PAGE);
    const prev = el("button", "", "‹ Prev"), next = el("button", "", "Next ›");
    prev.type = next.type = "button";
    prev.disabled = state.page <= 1;
    next.disabled = state.page >= pages;
    prev.addEventListener("click", () => { state.page--; render(true); });
    next.addEventListener("click", () => { state.page++; render(true); });
    box.append(el("span", "count", num(first) + "–" + num(last) + " of " + num(total)), prev,
               el("span", "", "page " + state.page + " / " + pages), next);
  }

  function card(r) {
    const art = el("article", "card");
    art.dataset.id = r.id;
    art.dataset.correct = String(r.correct);
    const head = el("div", "card-head");
    head.append(el("span", "rid", r.id),
                el("span", "badge " + (r.correct ? "ok" : "bad"), r.correct ? "✓ correct" : "✗ incorrect"));
    if (r.finish !== "stop") head.append(el("span", "badge warn", r.finish === "length" ? "truncated" : r.finish));
    head.append(el("span", "meta", r.sentences.length + " sentences · " + r.n_tokens + " tokens"));
    const mix = el("span", "mix");
    const n = r.sentences.length;
    mix.title = CLS.map((c, i) => (r.counts[i] ? c.name + " " + r.counts[i] : "")).filter(Boolean).join(" · ");
    CLS.forEach((c, i) => {
      if (!r.counts[i]) return;
      const seg = el("i");
      seg.style.width = (100 * r.counts[i] / n) + "%";
      seg.style.background = c.color;
      mix.append(seg);
    });
    head.append(mix);
    const qa = el("dl", "qa");
    const answer = r.answer === null ? el("span", "none", "none found") : el("code", "extracted", r.answer);
    const answers = el("dd", "answers");
    answers.append("gold ", el("code", "gold", r.gold), "   extracted ", answer);
    qa.append(el("dt", "", "Question"), el("dd", "question", r.question), el("dt", "", "Answer"), answers);
    const resp = el("div", "resp");
    if (!r.parts.length) { resp.classList.add("empty"); resp.textContent = "(empty response)"; }
    for (const [text, j] of r.parts) {
      if (j < 0) { resp.append(text); continue; }
      const s = r.sentences[j], c = CLS[s[0]];
      const span = el("span", "s", text);
      span.dataset.cls = c.name;
      span.dataset.k = String(j);
      span.dataset.tip = c.name + " · pT " + fmt(s[1]) + " · pS " + fmt(s[2]) + " · pD " + fmt(s[3]);
      // tint as in the figures' bands; the full colour underneath tells close hues (Teacher, Boosted) apart
      if (state.classes.has(c.name)) {
        span.setAttribute("style", `background-color: ${c.tint}; border-bottom: 2px solid ${c.color}`);
      } else {
        span.classList.add("off");
      }
      resp.append(span);
    }
    art.append(head, qa, resp);
    art._r = r;
    return art;
  }

  function render(scroll) {
    const pool = RESP.filter(byOutcomeAndText);
    const shown = pool.filter(byClass);
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    state.page = Math.min(Math.max(1, state.page), pages);
    for (const b of document.querySelectorAll("#outcome button")) {
      b.classList.toggle("on", b.dataset.outcome === state.outcome);
    }
    legend(pool);
    pager("pager-top", shown.length, pages);
    pager("pager-bottom", shown.length, pages);
    const list = $("list");
    list.replaceChildren(...shown.slice((state.page - 1) * PAGE, state.page * PAGE).map(card));
    if (!shown.length) list.append(el("p", "nothing", "No response matches these filters."));
    writeHash();
    if (scroll) window.scrollTo(0, 0);
  }

  // one tooltip for every sentence, filled on hover (pT, pS, pD as bars and 3-decimal values)
  const tip = $("tip");
  function showTip(span, ev) {
    const r = span.closest(".card")._r, j = Number(span.dataset.k), s = r.sentences[j], c = CLS[s[0]];
    tip.replaceChildren();
    const head = el("div", "head");
    const sw = el("span", "sw");
    sw.style.background = c.color;
    head.append(sw, el("span", "", c.name), el("span", "meta", "sentence " + j));
    tip.append(head);
    data.models.forEach((m, i) => {
      const p = s[i + 1], row = el("div", "pr"), bar = el("div", "bar"), fill = el("i");
      fill.style.width = (p === null ? 0 : 100 * p) + "%";
      fill.style.background = m.color;
      bar.append(fill);
      const label = el("span", "", m.label);
      label.title = m.name;
      row.append(label, el("span", "model", m.name), bar, el("span", "val", fmt(p)));
      tip.append(row);
    });
    tip.append(el("div", "why", c.reading));
    tip.hidden = false;
    moveTip(ev);
  }
  function moveTip(ev) {
    const w = tip.offsetWidth, h = tip.offsetHeight;
    let x = ev.clientX + 14, y = ev.clientY + 18;
    if (x + w > window.innerWidth - 8) x = Math.max(8, ev.clientX - w - 14);
    if (y + h > window.innerHeight - 8) y = Math.max(8, ev.clientY - h - 18);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  const list = $("list");
  list.addEventListener("mouseover", (ev) => {
    const span = ev.target.closest ? ev.target.closest(".s") : null;
    if (span) showTip(span, ev); else tip.hidden = true;
  });
  list.addEventListener("mousemove", (ev) => { if (!tip.hidden) moveTip(ev); });
  list.addEventListener("mouseleave", () => { tip.hidden = true; });

  for (const b of document.querySelectorAll("#outcome button")) {
    b.addEventListener("click", () => { state.outcome = b.dataset.outcome; state.page = 1; render(); });
  }
  let timer = 0;
  $("search").addEventListener("input", (ev) => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.q = ev.target.value.trim(); state.page = 1; render(); }, 150);
  });
  window.addEventListener("hashchange", () => { readHash(); $("search").value = state.q; render(); });

  readHash();
  $("search").value = state.q;
  header();
  render();
})();
"""
