"""Split segments into chunks sized for the embedder, each embedded with its heading.

Sentences and paragraph lines are packed greedily; a chunk never crosses a segment, so it
never straddles a PDF page or a section. The budget includes the heading line that
`embedding_text` puts in front of the chunk. Token counts are taken once per sentence and
summed (exact for WordPiece, where tokens never span whitespace).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from engine.types import Chunk, Segment

CountTokens = Callable[[str], int]

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+(?=[A-Z0-9\"'(\[])")
_MAX_HEADER_CHARS = 160
_MIN_BUDGET = 16
# WordPiece reads a word over 100 characters as one [UNK] token, so a 5 MB word once made
# a 5 MB chunk of "one token": words longer than this are cut into pieces this long before
# counting (real documents' long words, such as PDF contents lines glued together, run to
# about 700 characters and stay whole; _Counter counts them by their length).
_MAX_WORD_CHARS = 1000
# A sentence longer than this is counted in groups of whole words of at most _GROUP_CHARS
# characters, not whole and then halved: one 5 MB line took 10-24 s and 2.7 GB that way.
_LONG_SENTENCE_CHARS = 2000
_GROUP_CHARS = 256
_CHARS_PER_TOKEN = 10  # at most, in any text worth embedding (English: about 4.5)
# A PDF fragment this short (a screenshot caption like "Step 7" under a bookmark) joins its
# neighbour on the same page: alone, its embedding would be little but its heading.
_FRAGMENT_WORDS = 6


@dataclass(frozen=True)
class _Unit:
    text: str
    tokens: int
    starts_line: bool  # a new paragraph/line in the segment, not a continuing sentence


def embedding_text(chunk: Chunk, title: str | None = None) -> str:
    """The text to embed: the document title (when it adds something), the section, the chunk."""
    section = chunk.section
    if section and section.casefold() in chunk.text.split("\n", 1)[0].casefold():
        section = None  # the chunk already starts with its heading line
    header = _header(section, title)
    return f"{header}\n{chunk.text}" if header else chunk.text


def _header(section: str | None, title: str | None) -> str:
    parts = []
    if title and not (section and title.casefold() in section.casefold()):
        parts.append(title)
    if section and section.casefold() != (title or "").casefold():
        parts.append(section)
    return " — ".join(parts)[:_MAX_HEADER_CHARS]


def chunk_segments(
    segments: Iterable[Segment],
    count_tokens: CountTokens,
    max_tokens: int = 200,
    overlap: int = 40,
    title: str | None = None,
) -> list[Chunk]:
    """Chunks of at most `max_tokens` tokens, counting the header `embedding_text` adds.

    Consecutive chunks of a segment share about `overlap` tokens of whole sentences.
    Pass the same `title` that will be given to `embedding_text`.
    """
    base = count_tokens("")  # special tokens ([CLS], [SEP]) counted once per text
    counter = _Counter(count_tokens, base)
    header_cost: dict[str | None, int] = {}
    chunks: list[Chunk] = []
    for segment in merge_fragments(list(segments)):
        if segment.section not in header_cost:
            header = _header(segment.section, title)
            header_cost[segment.section] = counter(header + "\n") if header else 0
        budget = max(_MIN_BUDGET, max_tokens - base - header_cost[segment.section])
        for text in _pack(_units(segment.text, counter, budget), budget, overlap):
            if any(ch.isalnum() for ch in text):
                chunks.append(Chunk(text, segment.page, segment.section, len(chunks)))
    return chunks


def merge_fragments(segments: list[Segment]) -> list[Segment]:
    """Fold few-word PDF segments into the previous (else next) segment of the same page."""
    out: list[Segment] = []
    pending: Segment | None = None  # a fragment that opened its page, waiting for the next
    for segment in segments:
        if pending is not None and pending.page == segment.page:
            segment = Segment(f"{pending.text}\n{segment.text}", segment.page, segment.section)
        elif pending is not None:
            out.append(pending)
        pending = None
        if segment.page is None or len(segment.text.split()) >= _FRAGMENT_WORDS:
            out.append(segment)
        elif out and out[-1].page == segment.page:
            last = out[-1]
            out[-1] = Segment(f"{last.text}\n{segment.text}", last.page, last.section)
        else:
            pending = segment
    if pending is not None:
        out.append(pending)
    return out


class _Counter:
    """Token counts without the tokenizer's special tokens, memoised per text."""

    def __init__(self, count_tokens: CountTokens, base: int) -> None:
        self._count = count_tokens
        self._base = base
        self._cache: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        if text not in self._cache:
            tokens = self._count(text) - self._base
            # A word the vocabulary cannot spell is one [UNK] however long it is: count
            # such text by its length, so no chunk grows past ~_CHARS_PER_TOKEN x budget.
            self._cache[text] = max(0, tokens, len(text) // _CHARS_PER_TOKEN)
        return self._cache[text]


def split_sentences(line: str) -> list[str]:
    """Split one paragraph line into sentences (keeps abbreviations like 'e.g. x' together)."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(line):
        sentences.append(line[start : match.end()].strip())
        start = match.end()
    sentences.append(line[start:].strip())
    return [s for s in sentences if s]


def _units(text: str, counter: _Counter, budget: int) -> list[_Unit]:
    units: list[_Unit] = []
    for line in text.split("\n"):
        first = True
        for sentence in split_sentences(" ".join(line.split())):
            for piece, tokens in _fit(sentence, counter, budget):
                units.append(_Unit(piece, tokens, first))
                first = False
    return units


def _fit(text: str, counter: _Counter, budget: int) -> list[tuple[str, int]]:
    """(piece, tokens) of at most `budget` tokens each, split on words; over-long words are
    cut first. Work and memory stay linear in the length of the text."""
    pieces: list[tuple[str, int]] = []
    for group in _groups(text):
        pieces.extend(_halve(group, counter, budget))
    return pieces


def _groups(text: str) -> list[str]:
    """`text` whole when it is an ordinary sentence, else runs of its words of at most
    _GROUP_CHARS characters, with words over _MAX_WORD_CHARS cut into pieces."""
    short = len(text) <= _LONG_SENTENCE_CHARS
    if short and all(len(word) <= _MAX_WORD_CHARS for word in text.split()):
        return [text]
    groups: list[str] = []
    current: list[str] = []
    size = 0
    for word in text.split():
        for start in range(0, len(word), _MAX_WORD_CHARS):
            piece = word[start : start + _MAX_WORD_CHARS]
            if current and size + len(piece) > _GROUP_CHARS:
                groups.append(" ".join(current))
                current, size = [], 0
            current.append(piece)
            size += len(piece) + 1
    if current:
        groups.append(" ".join(current))
    return groups


def _halve(text: str, counter: _Counter, budget: int) -> list[tuple[str, int]]:
    """Split a text longer than the budget on words (or characters, for one word)."""
    tokens = counter(text)
    if tokens <= budget:
        return [(text, tokens)]
    words = text.split()
    if len(words) > 1:
        half = len(words) // 2
        left, right = " ".join(words[:half]), " ".join(words[half:])
    else:
        half = len(text) // 2
        left, right = text[:half], text[half:]
    return _halve(left, counter, budget) + _halve(right, counter, budget)


def _pack(units: list[_Unit], budget: int, overlap: int) -> list[str]:
    """Greedy packing; each new chunk starts with the previous one's last sentences."""
    texts: list[str] = []
    current: list[_Unit] = []
    size = 0
    fresh = False  # whether `current` holds any unit not already emitted
    for unit in units:
        if current and fresh and size + unit.tokens > budget:
            texts.append(_join(current))
            current = _tail(current, overlap, budget - unit.tokens)
            size = sum(u.tokens for u in current)
        current.append(unit)
        size += unit.tokens
        fresh = True
    if current and fresh:
        texts.append(_join(current))
    return texts


def _tail(units: list[_Unit], overlap: int, room: int) -> list[_Unit]:
    """The trailing whole units worth at most `overlap` tokens (and fitting in `room`)."""
    tail: list[_Unit] = []
    total = 0
    for unit in reversed(units):
        if total + unit.tokens > min(overlap, room):
            break
        tail.insert(0, unit)
        total += unit.tokens
    return tail


def _join(units: list[_Unit]) -> str:
    parts = [units[0].text]
    for unit in units[1:]:
        parts.append(("\n" if unit.starts_line else " ") + unit.text)
    return "".join(parts)
