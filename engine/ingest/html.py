"""HTML to segments with the stdlib parser: one segment per heading, chrome left out."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser

from engine.types import Segment, UserError

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
_COMMENT_CLOSE = re.compile(r"--\s*>")  # what html.parser ends a comment at
_SECTION_CLOSE = re.compile(r"]\s*>")  # and a <![CDATA[ ... ]]> or <![if ...]> section
# A marked section with another keyword makes the parser raise AssertionError.
_BAD_SECTION = re.compile(
    r"<!\[(?!(?:cdata|rcdata|temp|ignore|include|if|else|endif)(?![-.\w]))", re.IGNORECASE
)
# CPU seconds (of the parsing thread: a busy machine does not count) a parse may take
# before the file is skipped, on top of PARSE_SECONDS_PER_MB.
PARSE_SECONDS = 5.0
PARSE_SECONDS_PER_MB = 5.0


class ParseTimeoutError(UserError):
    """The parser ran past its time budget (hostile or pathological markup)."""


def sniff_charset(raw: bytes) -> str | None:
    """The charset a document declares in a <meta> tag near its start, if any."""
    match = _META_CHARSET.search(raw[:4096])
    return match.group(1).decode("ascii").lower() if match else None


def extract_html(text: str, budget_s: float | None = None) -> list[Segment]:
    """Segments of an HTML document: text before the first heading, then one per heading.

    Raises ParseTimeoutError when parsing takes longer than `budget_s` (default: by size).
    """
    if budget_s is None:
        budget_s = PARSE_SECONDS + PARSE_SECONDS_PER_MB * len(text) / 1e6
    parser = _Extractor(time.thread_time() + budget_s)
    try:
        parser.feed(defuse(text))
        parser.close()
    except AssertionError as exc:  # html.parser's way to give up on markup (3.10+)
        raise UserError(f"markup the HTML parser cannot read ({exc})") from exc
    parser.flush()
    title = parser.title_text()
    return [
        Segment(text=body, section=section if section is not None else title)
        for section, body in parser.segments
        if any(ch.isalnum() for ch in body)
    ]


def defuse(text: str) -> str:
    """Escape every `<` that opens a construct never closed later in the text.

    CPython's html.parser (before 3.13.6/3.14, CVE-2025-6069) scans to the end of the
    text for the terminator of each such opening and then moves on by one character:
    1 MB of `</` took minutes. Escaped, the `<` is plain text, which is what the parser
    would have made of it, and every remaining scan ends where the parser then resumes.
    """
    text = _escape_after(text, _last_start(_COMMENT_CLOSE, text) - 3, "<!--")
    text = _escape_after(text, _last_start(_SECTION_CLOSE, text) - 2, "<![")
    text = _BAD_SECTION.sub("&lt;![", text)
    return _escape_after(text, text.rfind(">"), "<")


def _last_start(pattern: re.Pattern[str], text: str) -> int:
    last = -1
    for match in pattern.finditer(text):
        last = match.start()
    return last


def _escape_after(text: str, cut: int, opening: str) -> str:
    """`opening` as `&lt;...` wherever it starts at or after index `cut`."""
    cut = max(cut, 0)
    tail = text[cut:]
    if opening not in tail:
        return text
    return text[:cut] + tail.replace(opening, "&lt;" + opening[1:])


def _is_chrome(tag: str, attrs: list[tuple[str, str | None]]) -> bool:
    if tag in SKIP_TAGS:
        return True
    values = dict(attrs)
    classes = (values.get("class") or "").split()
    return values.get("role") == "navigation" or "toc" in classes


class _Extractor(HTMLParser):
    """Collects (section, text) pairs; block structure becomes line breaks."""

    def __init__(self, deadline: float = float("inf")) -> None:
        super().__init__(convert_charrefs=True)
        self._deadline = deadline
        self._calls = 0
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

    def _check_time(self) -> None:
        self._calls += 1
        if not self._calls % 64 and time.thread_time() > self._deadline:  # ~1 us a check
            raise ParseTimeoutError("parsing took too long (hostile or broken markup?)")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check_time()
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
        self._check_time()
        if self._skip is not None:
            name, depth = self._skip
            if tag == name:
                self._skip = (name, depth - 1) if depth > 1 else None
            return
        if tag == "title":
            self._title = None
        elif tag in HEADINGS and self._heading is not None:
            # Sphinx ends every heading with a "¶" permalink: not part of the title.
            heading = " ".join("".join(self._heading).split()).rstrip("¶").rstrip()
            self._section = heading or self._section
            self._heading = None
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self._parts.append("\n")
        elif tag in ("td", "th"):
            self._cells = max(0, self._cells - 1)
        elif tag in BLOCK_TAGS:
            self._parts.append(" " if self._cells else "\n")

    def handle_data(self, data: str) -> None:
        self._check_time()
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
