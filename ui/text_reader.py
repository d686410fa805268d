"""The reader's text documents: an HTML page, Markdown, plain text, or the text Quire read
from a Word, OpenDocument or EPUB file, scrolled to the cited passage with the passage
(and, over it, the quoted sentence) marked.

It never widens the window (a long unbreakable line or a wide table scrolls inside it)
and never leaves the document: a link within it moves there, any other link is shown by
the reader, not followed.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QSizePolicy, QTextEdit, QWidget

from engine.ingest.loaders import load
from engine.ingest.office import OFFICE_SUFFIXES
from engine.reader.rank import Quote
from engine.types import SearchResult, UserError
from ui.offline_text import OfflineTextBrowser
from ui.sources import QuotedSource

MAX_TEXT_BYTES = 4_000_000
HIGHLIGHT = QColor("#fde68a")
QUOTE_HIGHLIGHT = QColor("#fdba74")  # the quoted sentence in a text document, over the passage


class DocumentBrowser(OfflineTextBrowser):
    """One text document, marked at the cited passage. Signals (from OfflineTextBrowser):
    outside_link_clicked(QUrl)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Its size hint follows the document: a wide table must not widen the window.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Expanding)
        self.setMinimumWidth(120)

    def show_document(self, path: Path, source: SearchResult) -> str | None:
        """Show `path` at `source`'s passage; the reason when it cannot be read."""
        try:
            raw = path.read_bytes()[:MAX_TEXT_BYTES].decode("utf-8", errors="replace")
        except OSError as exc:
            return f"{path.name}: {exc.strerror or exc}"
        self.base_url = QUrl.fromLocalFile(str(path))
        suffix = path.suffix.lower()
        if suffix in OFFICE_SUFFIXES:  # a zip file: show the text Quire read from it
            raw, suffix = as_markdown(path), ".md"
        if suffix in (".html", ".htm"):
            self.setHtml(raw)
        elif suffix in (".md", ".markdown"):
            self.setMarkdown(raw)
        else:
            self.setPlainText(raw)
        passage = self.find_text(source.text)
        quote = _quote_of(source)
        after = passage.selectionStart() if passage is not None else 0
        sentence = self.find_text(quote.text, after) if quote is not None else None
        marks = ((passage, HIGHLIGHT), (sentence, QUOTE_HIGHLIGHT))  # the quote on top
        self.setExtraSelections(
            [_selection(found, colour) for found, colour in marks if found is not None]
        )
        at_quote = isinstance(source, QuotedSource) and source.at_quote
        self.scroll_to(sentence if sentence is not None and at_quote else passage)
        return None

    def find_text(self, text: str, after: int = 0) -> QTextCursor | None:
        """`text` (a passage or the quote) in the document, from position `after` on.

        It is matched in the document's raw text, whose positions are the cursor's:
        QTextDocument.find stops at the end of a paragraph, and a passage (or a sentence
        that leads to a list) often runs across several.
        """
        document = self.document()
        span = passage_span(document.toRawText(), text, after)
        if span is None:
            return None
        cursor = QTextCursor(document)
        cursor.setPosition(span[0])
        cursor.setPosition(span[0] + span[1], QTextCursor.MoveMode.KeepAnchor)
        return cursor

    def scroll_to(self, found: QTextCursor | None) -> None:
        """Scroll to show `found` whole where it fits, its start first."""
        if found is None:
            return
        for position in (found.selectionEnd(), found.selectionStart()):
            cursor = QTextCursor(self.document())
            cursor.setPosition(position)
            self.setTextCursor(cursor)
            self.ensureCursorVisible()


def passage_span(page_text: str, passage: str, after: int = 0) -> tuple[int, int] | None:
    """(start, length) of `passage` in a page's text, from character `after` on: its first
    words to its last words, whatever the spacing and hyphenation between them; None when
    it is not there."""
    words = re.findall(r"\w+", passage)
    if not words:
        return None
    gap = r"[\W_]+"
    head = re.compile(gap.join(map(re.escape, words[:6])), re.IGNORECASE)
    start = head.search(page_text, after)
    if start is None:
        return None
    tail = re.compile(gap.join(map(re.escape, words[-4:])), re.IGNORECASE)
    ends = [m.end() for m in tail.finditer(page_text, start.start())]
    end = ends[0] if ends else start.end()
    return start.start(), end - start.start()


def as_markdown(path: Path) -> str:
    """A Word, OpenDocument or EPUB file's text as Quire reads it, its sections as headings."""
    try:
        segments = load(path)
    except UserError as exc:
        return f"*{exc}*"
    parts: list[str] = []
    section = None
    for segment in segments:
        if segment.section and segment.section != section:
            parts.append(f"## {segment.section}")
            section = segment.section
        parts.append(segment.text)
    return "\n\n".join(parts)[:MAX_TEXT_BYTES]


def _quote_of(source: SearchResult) -> Quote | None:
    return source.quote if isinstance(source, QuotedSource) else None


def _selection(cursor: QTextCursor, colour: QColor) -> QTextEdit.ExtraSelection:
    """An extra selection that paints `cursor`'s text's background in `colour`."""
    selection = QTextEdit.ExtraSelection()
    selection.cursor = cursor
    fmt = QTextCharFormat()
    fmt.setBackground(colour)
    selection.format = fmt
    return selection
