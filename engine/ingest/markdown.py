"""Markdown to segments: one per ATX or setext heading, with markup reduced to its text."""

from __future__ import annotations

import re

from engine.types import Segment

# Every pattern here runs in time linear in its line, whatever the line holds: hostile
# text (64 KB of "**a ", 1 MB of "[") made lazy `.+?` spans and `[^\]]+` scans quadratic.
# A span's content cannot run over another opening of the same kind, so each scan stops
# at the next candidate start.
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*))?$")
_ATX_CLOSE = re.compile(r"[ \t]#+$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_REF_DEF = re.compile(r"^ {0,3}\[[^\[\]]+\]:\s+\S")
_TABLE_RULE_CHARS = frozenset("|:- \t")
_LIST_ITEM = re.compile(r"^\s*([-*+]|\d{1,3}[.)])\s+")
_QUOTE = re.compile(r"^\s{0,3}(>\s?)+")
_INLINE = [
    (re.compile(r"!\[([^\[\]]*)\]\([^()]*\)"), r"\1"),  # image -> alt text
    (re.compile(r"!\[([^\[\]]*)\]\[[^\[\]]*\]"), r"\1"),
    (re.compile(r"\[([^\[\]]+)\]\([^()]*\)"), r"\1"),  # link -> its text
    (re.compile(r"\[([^\[\]]+)\]\[[^\[\]]*\]"), r"\1"),
    (re.compile(r"<(https?://[^<>\s]+)>"), r"\1"),  # autolink
    (re.compile(r"</?[A-Za-z][^<>]*>"), ""),  # inline HTML tags
    (re.compile(r"\*\*(?=\S)((?:[^*]|\*(?!\*))+?)(?<=\S)\*\*"), r"\1"),  # strong
    (re.compile(r"__(?=\S)((?:[^_]|_(?!_))+?)(?<=\S)__"), r"\1"),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])"), r"\1"),  # emphasis
    # An underscore inside a word (snake_case) is text, not the end of the emphasis.
    (re.compile(r"(?<![\w_])_(?=\S)((?:[^_]|(?<=\w)_(?=\w))+?)(?<=\S)_(?![\w_])"), r"\1"),
    (re.compile(r"~~(?=\S)((?:[^~]|~(?!~))+?)(?<=\S)~~"), r"\1"),
    (re.compile(r"(?<!`)`+([^`]+)`+"), r"\1"),  # inline code
]


def clean_inline(text: str) -> str:
    """Reduce inline Markdown (links, images, emphasis, code spans) to plain text."""
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    return text.strip()


def extract_markdown(text: str) -> list[Segment]:
    """Segments of a Markdown document: text before the first heading, then one per heading."""
    builder = _Builder()
    lines = _skip_front_matter(text.splitlines())
    fence: str | None = None
    for line in lines:
        if fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            else:
                builder.add_code(line)
            continue
        opening = _FENCE.match(line)
        if opening:
            fence = opening.group(1)
            builder.end_paragraph()
        else:
            builder.add_line(line)
    builder.flush()
    return builder.segments


def _heading_text(text: str) -> str:
    """An ATX heading's text without trailing blanks and its optional closing #s."""
    text = text.rstrip(" \t")
    closed = _ATX_CLOSE.search(text[-200:]) if text.endswith("#") else None
    return text[: len(text) - len(closed.group())] if closed else text


def _is_table_rule(line: str) -> bool:
    """A table's header rule, e.g. `| --- | :-: |`: only pipes, colons, dashes and blanks."""
    return "---" in line and _TABLE_RULE_CHARS.issuperset(line)


def _skip_front_matter(lines: list[str]) -> list[str]:
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() in ("---", "..."):
                return lines[i + 1 :]
    return lines


class _Builder:
    """Accumulates paragraphs (one output line each) under the current heading."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self._section: str | None = None
        self._lines: list[str] = []
        self._paragraph: list[str] = []

    def add_line(self, line: str) -> None:
        atx = _ATX.match(line)
        if atx:
            self.start_section(_heading_text(atx.group(2) or ""))
        elif _SETEXT.match(line) and len(self._paragraph) == 1:
            self.start_section(self._paragraph.pop())
        elif not line.strip():
            self.end_paragraph()
        elif _REF_DEF.match(line) or _is_table_rule(line) or _SETEXT.match(line):
            self.end_paragraph()  # link definitions, table rules and thematic breaks
        else:
            self._add_text(line)

    def _add_text(self, line: str) -> None:
        stripped = _QUOTE.sub("", line, count=1).strip()
        if _LIST_ITEM.match(line) or stripped.startswith("|") or line.startswith(("    ", "\t")):
            self.end_paragraph()  # list items, table rows and indented code keep their lines
        if stripped:
            self._paragraph.append(stripped)

    def add_code(self, line: str) -> None:
        if line.strip():
            self._lines.append(line.rstrip())

    def end_paragraph(self) -> None:
        if self._paragraph:
            self._lines.append(clean_inline(" ".join(self._paragraph)))
        self._paragraph = []

    def start_section(self, heading: str) -> None:
        self.flush()
        self._section = clean_inline(heading) or self._section

    def flush(self) -> None:
        """Close the current segment."""
        self.end_paragraph()
        body = "\n".join(line for line in self._lines if line.strip())
        if any(ch.isalnum() for ch in body):
            self.segments.append(Segment(text=body, section=self._section))
        self._lines = []
