"""Split a passage into sentences, as character spans, for the reader to score and quote.

Manuals are not prose: PDF text wraps lines mid-sentence, lists have no full stops, and
tables run on for lines. A unit ends at a sentence's end, at a blank line, before a list
item, and after a line ending in a colon; a unit still longer than `MAX_WORDS` is cut at
its line breaks, then into word windows. Spans index the passage text unchanged, so the
quote can be marked where it stands.
"""

from __future__ import annotations

import itertools
import re

MAX_WORDS = 60  # a longer unit is cut: a quote should be read at a glance
MIN_WORDS = 3  # a shorter unit ("Note:", "Step 7") joins the next one

_END = re.compile(r"[.!?][\"')\]]*(?=\s+[\"'(\[]?[A-Z0-9])")
_BREAK = re.compile(r"\n[ \t]*\n|:[ \t]*\n|\n(?=[ \t]*(?:[-*•◦▪‣]|\d{1,2}[.)])\s)")
_WORD = re.compile(r"\S+")

Span = tuple[int, int]


def sentence_spans(text: str) -> list[Span]:
    """(start, end) of each sentence of `text`, in order, whitespace trimmed."""
    cuts = {0, len(text)}
    cuts.update(m.end() for m in _END.finditer(text))
    cuts.update(m.end() for m in _BREAK.finditer(text))
    spans = [_trim(text, a, b) for a, b in _pairs(sorted(cuts))]
    spans = [s for s in spans if s[1] > s[0]]
    out: list[Span] = []
    for span in _join_short(text, spans):
        out.extend(_cut_long(text, span))
    return out


def sentences(text: str) -> list[str]:
    """The sentences of `text` as strings (see `sentence_spans`)."""
    return [text[a:b] for a, b in sentence_spans(text)]


def _pairs(cuts: list[int]) -> list[Span]:
    return list(itertools.pairwise(cuts))


def _trim(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _words(text: str, span: Span) -> int:
    return len(_WORD.findall(text, span[0], span[1]))


def _join_short(text: str, spans: list[Span]) -> list[Span]:
    """A unit of fewer than MIN_WORDS words, or one that ends in a colon (a lead-in to a
    list or a command), joins the unit after it (the last unit joins the one before)."""
    out: list[Span] = []
    pending: Span | None = None
    for span in spans:
        if pending is not None:
            span = (pending[0], span[1])
            pending = None
        if _words(text, span) < MIN_WORDS or text[span[1] - 1] == ":":
            pending = span
            continue
        out.append(span)
    if pending is not None:
        if out:
            out[-1] = (out[-1][0], pending[1])
        else:
            out.append(pending)
    return out


def _cut_long(text: str, span: Span) -> list[Span]:
    """A unit over MAX_WORDS split at its line breaks, then into windows of words."""
    if _words(text, span) <= MAX_WORDS:
        return [span]
    start, end = span
    lines: list[Span] = []
    line_start = start
    for match in re.finditer(r"\n", text[start:end]):
        cut = start + match.start()
        lines.append(_trim(text, line_start, cut))
        line_start = cut + 1
    lines.append(_trim(text, line_start, end))
    packed: list[Span] = []
    for line in (s for s in lines if s[1] > s[0]):
        if packed and _words(text, (packed[-1][0], line[1])) <= MAX_WORDS:
            packed[-1] = (packed[-1][0], line[1])
        else:
            packed.append(line)
    out: list[Span] = []
    for piece in packed:
        out.extend(_windows(text, piece))
    return out


def _windows(text: str, span: Span) -> list[Span]:
    words = list(_WORD.finditer(text, span[0], span[1]))
    if len(words) <= MAX_WORDS:
        return [span]
    size = MAX_WORDS * 2 // 3
    return [
        (words[i].start(), words[min(i + size, len(words)) - 1].end())
        for i in range(0, len(words), size)
    ]
