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
