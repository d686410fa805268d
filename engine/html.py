"""HTML to segments with the stdlib parser: one segment per heading, chrome left out."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from engine.types import Segment

# Page chrome and non-text: everything inside these is dropped.
SKIP_TAGS = frozenset(
    {"script", "style", "noscript", "template", "svg", "nav", "header", "footer", "aside"}
)
HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
BLOCK_TAGS = frozenset(
    {
        "p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "table", "tr", "thead", "tbody",
        "tfoot", "caption", "blockquote", "section", "article", "main", "figure", "figcaption",
        "pre", "hr", "form", "fieldset", "details", "summary", "address", "body",
    }
)  # fmt: skip
VOID_TAGS = frozenset({"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"})
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)


def sniff_charset(raw: bytes) -> str | None:
    """The charset a document declares in a <meta> tag near its start, if any."""
    match = _META_CHARSET.search(raw[:4096])
    return match.group(1).decode("ascii").lower() if match else None


def extract_html(text: str) -> list[Segment]:
    """Segments of an HTML document: text before the first heading, then one per heading."""
    parser = _Extractor()
    parser.feed(text)
    parser.close()
    parser.flush()
    title = parser.title_text()
    return [
        Segment(text=body, section=section if section is not None else title)
        for section, body in parser.segments
        if any(ch.isalnum() for ch in body)
    ]


def _is_chrome(tag: str, attrs: list[tuple[str, str | None]]) -> bool:
    if tag in SKIP_TAGS:
        return True
    values = dict(attrs)
    classes = (values.get("class") or "").split()
    return values.get("role") == "navigation" or "toc" in classes


class _Extractor(HTMLParser):
    """Collects (section, text) pairs; block structure becomes line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.segments: list[tuple[str | None, str]] = []
        self._section: str | None = None
        self._parts: list[str] = []
        self._heading: list[str] | None = None
        self._title: list[str] | None = None
        self._title_parts: list[str] = []
        self._skip: tuple[str, int] | None = None  # (tag, nesting depth) being dropped
        self._pre = 0
        self._cells = 0  # open table cells: blocks inside a cell stay on the row's line
        self._row_has_cell = False

    def title_text(self) -> str | None:
        title = " ".join("".join(self._title_parts).split())
        return title or None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip is not None:
            name, depth = self._skip
            if tag == name and tag not in VOID_TAGS:
                self._skip = (name, depth + 1)
            return
        if tag == "title":
            self._title = self._title_parts
        elif _is_chrome(tag, attrs):
            if tag not in VOID_TAGS:
                self._skip = (tag, 1)
        elif tag in HEADINGS:
            self.flush()
            self._heading = []
        else:
            self._open_block(tag)

    def _open_block(self, tag: str) -> None:
        if tag == "pre":
            self._pre += 1
        if tag == "tr":
            self._row_has_cell = False
            self._parts.append("\n")
        elif tag in ("td", "th"):
            self._parts.append(" | " if self._row_has_cell else "")
            self._row_has_cell = True
            self._cells += 1
        elif tag == "li":
            self._parts.append("\n- ")
        elif tag in BLOCK_TAGS:
            self._parts.append(" " if self._cells else "\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skip is not None:
            name, depth = self._skip
            if tag == name:
                self._skip = (name, depth - 1) if depth > 1 else None
            return
        if tag == "title":
            self._title = None
        elif tag in HEADINGS and self._heading is not None:
            self._section = " ".join("".join(self._heading).split()) or self._section
            self._heading = None
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self._parts.append("\n")
        elif tag in ("td", "th"):
            self._cells = max(0, self._cells - 1)
        elif tag in BLOCK_TAGS:
            self._parts.append(" " if self._cells else "\n")

    def handle_data(self, data: str) -> None:
        if self._skip is not None:
            return
        if self._title is not None:
            self._title.append(data)
        elif self._heading is not None:
            self._heading.append(data)
        elif self._pre:
            self._parts.append(data)
        else:
            self._parts.append(re.sub(r"\s+", " ", data))

    def flush(self) -> None:
        """Close the current segment."""
        lines = (" ".join(line.split()) for line in "".join(self._parts).split("\n"))
        body = "\n".join(line for line in lines if line and line != "-")
        if body:
            self.segments.append((self._section, body))
        self._parts = []
