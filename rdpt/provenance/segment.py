"""Split a response into sentences ("actions") as character spans of the original text.

Every splitter in the registry returns spans that rebuild the text exactly, so the scorer can feed
``text[:start]`` as context and ``text[start:end]`` as the sentence without losing a character::

    python -c "from rdpt.provenance.segment import split; t='We add. So 3.5 + 1 = 4.5.'; \\
        print([t[a:b] for a, b in split(t)])"

Guarantees, whatever the method (enforced once, in :func:`segment`, not by each splitter):

- ``''.join(text[a:b] for a, b in spans) == text``; spans are contiguous and non-empty;
- whitespace belongs to a span: trailing whitespace and line breaks go with the sentence before them,
  leading whitespace of the text with the first sentence;
- no span boundary falls inside math (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``, ``\\boxed{...}``);
- a piece with no letter or digit (``"..."``, ``"---"``, an emoji) merges into the sentence before it
  (into the first sentence when it opens the text), since a model cannot be said to "choose" it alone;
- empty or whitespace-only text gives ``[]``: the response has no sentence, and callers record it as
  such (``n_sentences = 0``) rather than scoring an empty action.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable

import pandas as pd

from rdpt import RdptError
from rdpt.io.artifacts import SCHEMAS, read_table, write_table
from rdpt.params import Params

# name -> splitter; a splitter returns the offsets where sentences start (its own opinion); the shared
# post-processing in `split` turns those into spans with the reconstruction guarantee.
Splitter = Callable[[str], list[int]]
SEGMENTERS: dict[str, Splitter] = {}


def register_segmenter(name: str) -> Callable[[Splitter], Splitter]:
    def add(fn: Splitter) -> Splitter:
        if name in SEGMENTERS:
            raise ValueError(f"segmenter {name!r} registered twice")
        SEGMENTERS[name] = fn
        return fn

    return add


def split(text: str, method: str = "regex") -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text``; see the module docstring."""
    if method not in SEGMENTERS:
        raise RdptError(f"unknown segmentation method {method!r} (known: {', '.join(sorted(SEGMENTERS))})")
    if not text.strip():
        return []
    # No splitter may cut inside math: a library splitter sees "3. 5" in \boxed{} as two sentences.
    math = _protected(text)
    starts = [s for s in SEGMENTERS[method](text) if not _inside(s, math, lo_inclusive=False)]
    return _spans_from_starts(text, starts)


def sentences(text: str, method: str = "regex") -> list[str]:
    """The sentence strings of ``text`` (``''.join`` of them is ``text``, unless it is blank)."""
    return [text[a:b] for a, b in split(text, method)]


def _has_content(piece: str) -> bool:
    return any(ch.isalnum() for ch in piece)


def _spans_from_starts(text: str, starts: list[int]) -> list[tuple[int, int]]:
    """Cut ``text`` at ``starts``, then merge content-free pieces, so the guarantees hold for any input."""
    cuts = sorted({s for s in starts if 0 < s < len(text)})
    bounds = [0, *cuts, len(text)]
    spans: list[list[int]] = []
    pending_start: int | None = None  # content-free pieces seen before the first real sentence
    for a, b in itertools.pairwise(bounds):
        if _has_content(text[a:b]):
            spans.append([a if pending_start is None else pending_start, b])
            pending_start = None
        elif spans:
            spans[-1][1] = b
        elif pending_start is None:
            pending_start = a
    if not spans:  # non-blank but without any letter or digit: one sentence
        return [(0, len(text))]
    return [(a, b) for a, b in spans]


def _locate(text: str, pieces: list[str]) -> list[int]:
    """Start offsets of ``pieces`` found in order in ``text``.

    Library splitters may normalise whitespace or drop characters; each piece is stripped and searched
    from the end of the previous match, and one that cannot be found is skipped (its characters then
    join the neighbouring sentence) rather than guessed.
    """
    starts, cursor = [], 0
    for piece in pieces:
        needle = piece.strip()
        if not needle:
            continue
        found = text.find(needle, cursor)
        if found < 0:
            continue
        starts.append(found)
        cursor = found + len(needle)
    return starts


# ---------------------------------------------------------------------------------------------- regex
# Words after which a period does not end a sentence (compared case-insensitively, without the final
# period). "etc." does sometimes end a sentence; splitting there is the rarer need in reasoning text.
ABBREVIATIONS = (
    "e.g",
    "i.e",
    "etc",
    "vs",
    "cf",
    "approx",
    "resp",
    "al",
    "dr",
    "mr",
    "mrs",
    "ms",
    "prof",
    "fig",
    "figs",
    "eq",
    "eqs",
    "st",
    "jr",
    "sr",
)
_ABBREV_BEFORE = re.compile(r"(?:^|[^\w.])(?:" + "|".join(re.escape(a) for a in ABBREVIATIONS) + r")$", re.IGNORECASE)

# A sentence ends after . ! ? (possibly repeated, possibly followed by closing quotes/brackets or markdown
# emphasis) when whitespace follows; CJK full stops end it with or without whitespace. The cut falls after
# the whitespace, which therefore stays with the sentence that ends.
_TERMINAL = re.compile(r"[.!?]+[\"'”’)\]*_]*\s+|[。！？]+\s*")
_PUNCT_RUN = re.compile(r"[.!?]+")
# A line break (with surrounding blanks, so blank lines and indentation stay with the line before) ends a
# sentence even without punctuation: reasoning traces put equations and list items on their own lines.
_LINE_BREAK = re.compile(r"[^\S\n\r\u2028\u2029]*[\n\r\u2028\u2029]\s*")
# A list marker ("1.", "a.", "**2.**", "- 3.") at the start of a line is not a sentence: it stays with its
# item, so "1. Compute x." is one sentence, not "1." + "Compute x.".
_LIST_MARKER = re.compile(r"\s*[*_#>\-]*\s*\(?(?:\d{1,3}|[A-Za-z])")

# Math that must never be cut: display and inline LaTeX, and \boxed{...}/\fbox{...} (brace-balanced).
_MATH_OPEN = re.compile(r"(?<!\\)\$\$|\\\[|\\\(|(?<!\\)\$(?=[^\s$])|\\(?:boxed|fbox)\s*\{")
_INLINE_CLOSE = re.compile(r"[^$\n]*?(?<=[^\s\\])\$(?!\d)")


def _protected(text: str) -> list[tuple[int, int]]:
    """Half-open intervals of closed math environments; an unclosed opener protects nothing."""
    out, pos = [], 0
    while (m := _MATH_OPEN.search(text, pos)) is not None:
        opener, start = m.group(), m.start()
        if opener == "$$":
            close = text.find("$$", m.end())
            end = close + 2 if close >= 0 else -1
        elif opener in (r"\[", r"\("):
            close = text.find(r"\]" if opener == r"\[" else r"\)", m.end())
            end = close + 2 if close >= 0 else -1
        elif opener == "$":
            # inline math closes on the same line (pandoc's rule: no blank just inside either dollar,
            # no digit right after the closing one), so "costs $5. Then $6." holds no math
            close = _INLINE_CLOSE.match(text, m.end())
            end = close.end() if close else -1
        else:
            end = _close_brace(text, m.end())
        if end < 0:
            pos = start + 1
        else:
            out.append((start, end))
            pos = end
    return out


def _close_brace(text: str, pos: int) -> int:
    """Offset just after the brace closing the one opened right before ``pos``; -1 if never closed."""
    depth, i = 1, pos
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2  # an escaped brace \{ \} does not count
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def _inside(pos: int, intervals: list[tuple[int, int]], lo_inclusive: bool = True) -> bool:
    """Whether ``pos`` lies in one of the sorted, disjoint ``intervals`` (binary search: texts are long)."""
    i = bisect.bisect_right(intervals, (pos, float("inf"))) - 1
    if i < 0:
        return False
    a, b = intervals[i]
    return (a <= pos if lo_inclusive else a < pos) and pos < b


@register_segmenter("regex")
def _regex_starts(text: str) -> list[int]:
    math = _protected(text)
    starts = []
    for m in _TERMINAL.finditer(text):
        pos = m.start()
        if _inside(pos, math):
            continue
        run = _PUNCT_RUN.match(text, pos)
        if run is not None and run.group() == ".":  # a lone period may end an abbreviation or a marker
            # 12 characters hold the longest abbreviation and the character before it
            if _ABBREV_BEFORE.search(text[max(0, pos - 12) : pos]):
                continue
            line_start = max(text.rfind("\n", 0, pos), text.rfind("\r", 0, pos)) + 1
            if _LIST_MARKER.fullmatch(text, line_start, pos):
                continue
        starts.append(m.end())
    starts += [m.end() for m in _LINE_BREAK.finditer(text) if not _inside(m.start(), math)]
    return starts


# ---------------------------------------------------------------------------------------------- pysbd
@register_segmenter("pysbd")
def _pysbd_starts(text: str) -> list[int]:
    import pysbd  # imported here: a slow import that only this method needs

    # pysbd crashes on some control characters (it uses them as placeholders internally, e.g. "\x1f0"):
    # mask them with spaces, which keeps every offset. clean=False keeps newlines, so pieces can be
    # found back in the (masked) text.
    masked = _CONTROL.sub(" ", text)
    return _locate(masked, pysbd.Segmenter(language="en", clean=False).segment(masked))


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# ----------------------------------------------------------------------------------------------- nltk
@register_segmenter("nltk")
def _nltk_starts(text: str) -> list[int]:
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    # The trained English punkt model is a separate download; an untrained tokenizer runs offline and gives
    # the same answer on every machine. It is told the abbreviations the regex splitter knows.
    tokenizer = PunktSentenceTokenizer()
    tokenizer._params.abbrev_types.update(ABBREVIATIONS)
    return [a for a, _ in tokenizer.span_tokenize(text)]


def segment(params: Params, generations_path: str, out: str, empty_out: str) -> dict:
    """The segment stage: each response -> sentences (character spans that reconstruct it exactly)::

        python stages/segment.py --generations data/generations/distilled.jsonl --out data/sentences.parquet \
            --empty-out data/empty_responses.parquet
    """
    df = read_table(generations_path, "generations")
    rows, empty = [], []
    for rid, bench, text in zip(df["response_id"], df["benchmark"], df["text"]):
        spans = split(str(text), params.segment.method)
        if not spans:
            empty.append({"response_id": rid, "benchmark": bench})
        for k, (start, end) in enumerate(spans):
            rows.append({"response_id": rid, "benchmark": bench, "sentence_idx": k, "start": start, "end": end,
                         "text": text[start:end]})
    columns = list(SCHEMAS["sentences"])
    write_table(out, pd.DataFrame(rows, columns=columns), "sentences")
    write_table(empty_out, pd.DataFrame(empty, columns=["response_id", "benchmark"]), "empty_responses")
    return {"n_responses": len(df), "n_sentences": len(rows), "n_empty": len(empty)}
