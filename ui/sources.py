"""Source cards: a passage with its document, page or section, score and highlighted words,
and the quote block: the reader's sentence that opens an answer, marked in its source's card.

Shared by the chat (an answer's sources) and the search tab (ranked passages).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QMouseEvent, QResizeEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from engine.reader.rank import Quote
from engine.types import SearchResult

PASSAGE_CHARS = 420
QUOTE_LEAD = 80  # characters kept before a quote that lies past the card's cut
QUOTE_STYLE = "background:#fdba74;color:#1f2937"  # the quoted sentence: orange, not yellow
TERM_STYLE = "background:#fde68a;color:#1f2937"  # the question's words
# Private-use characters mark the quote's ends while the passage is flattened and cut.
QUOTE_START, QUOTE_END = "\ue000", "\ue001"
_STOP = frozenset(
    [
        "the",
        "and",
        "for",
        "are",
        "was",
        "were",
        "with",
        "that",
        "this",
        "what",
        "when",
        "where",
        "which",
        "who",
        "how",
        "why",
        "does",
        "did",
        "have",
        "has",
        "had",
        "from",
        "into",
        "your",
        "you",
        "our",
        "can",
        "not",
        "but",
        "all",
        "any",
        "its",
        "their",
        "there",
        "then",
        "than",
    ]
)


def query_terms(query: str) -> list[str]:
    """Words of a query worth highlighting: 3+ letters, not common stopwords."""
    words = {w.lower() for w in re.findall(r"\w{3,}", query)}
    return sorted(words - _STOP, key=len, reverse=True)


def highlight(
    text: str, query: str, limit: int = PASSAGE_CHARS, span: tuple[int, int] | None = None
) -> str:
    """HTML for a passage, cut near `limit` characters, with the query's words marked and
    the quote (`span`, character offsets into `text`) marked in its own colour."""
    if span is not None:
        start, end = span
        text = f"{text[:start]}{QUOTE_START}{text[start:end]}{QUOTE_END}{text[end:]}"
    escaped = html.escape(_cut(" ".join(text.split()), limit))
    terms = query_terms(query)
    if terms:
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, terms)) + r")", re.IGNORECASE)
        escaped = pattern.sub(rf'<span style="{TERM_STYLE}">\1</span>', escaped)
    marked = escaped.replace(QUOTE_START, f'<span style="{QUOTE_STYLE}">')
    return marked.replace(QUOTE_END, "</span>")


def _cut(flat: str, limit: int) -> str:
    """`flat` cut at a space near `limit` characters, keeping a marked quote whole: when
    it ends past the cut, the text starts a little before it instead."""
    if len(flat) <= limit:
        return flat
    start, stop = flat.find(QUOTE_START), flat.find(QUOTE_END) + 1
    begin = 0
    if stop > limit:
        begin = flat.rfind(" ", 0, max(start - QUOTE_LEAD, 0)) + 1
    end = max(begin + limit, stop)
    if end < len(flat):
        space = flat.rfind(" ", stop, end)
        end = space if space > 0 else end
    head, tail = ("… " if begin else ""), (" …" if end < len(flat) else "")
    return head + flat[begin:end] + tail


def quote_span(source: SearchResult, quote: Quote) -> tuple[int, int] | None:
    """Where `quote` is in `source.text`: its own offsets, else where its text is found."""
    if source.text[quote.start : quote.end] == quote.text:
        return quote.start, quote.end
    found = source.text.find(quote.text)
    return None if found < 0 or not quote.text else (found, found + len(quote.text))


def holds_quote(number: int, source: SearchResult, quote: Quote | None) -> bool:
    """Whether source [number] is the one `quote` was taken from."""
    if quote is None:
        return False
    if quote.source:
        return quote.source == number
    return bool(quote.chunk_id) and source.chunk_id == quote.chunk_id


@dataclass
class QuotedSource(SearchResult):
    """A source with the answer's quote in it: its card and the reader mark the sentence."""

    quote: Quote | None = None
    at_quote: bool = False  # opened from the quote: the reader shows the sentence first

    @classmethod
    def of(cls, source: SearchResult, quote: Quote, at_quote: bool = False) -> QuotedSource:
        fields = {k: v for k, v in vars(source).items() if k not in ("quote", "at_quote")}
        return cls(**fields, quote=quote, at_quote=at_quote)

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data.pop("quote")
        data.pop("at_quote")
        return data


def score_help(source: SearchResult) -> str:
    """What the number beside a result means."""
    cosine = (
        f"Similarity to the question: {source.score:.2f} (cosine; the relevance cutoff uses this)."
    )
    if source.rerank is not None:
        return (
            f"Results are ordered by the reader: how well the passage answers the question "
            f"({source.rerank:.2f}, its cosine with the question).\n{cosine}"
        )
    return (
        f"Results are ordered by relevance: the vector and keyword searches' ranks "
        f"combined (1.00: first in both).\n{cosine}"
    )


def location(source: SearchResult) -> str:
    """`page 12`, `§ Backups` or "" for where in the document a passage is."""
    if source.page is not None:
        return f"page {source.page}"
    if source.section:
        return f"§ {source.section}"
    return ""


class SourceCard(QFrame):
    """One clickable passage; a source holding the answer's quote (a `QuotedSource`)
    marks the quoted sentence. Signals: opened(SearchResult)."""

    opened = Signal(object)

    def __init__(
        self,
        number: int,
        source: SearchResult,
        query: str,
        parent: QWidget | None = None,
        numbered: bool = True,
    ) -> None:
        super().__init__(parent)
        self.source = source
        self.number = number
        self.numbered = numbered
        self.setObjectName("sourceCard")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(f"Open {source.path}" + (f" at page {source.page}" if source.page else ""))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(4)
        layout.addLayout(self._header())
        quote = source.quote if isinstance(source, QuotedSource) else None
        span = quote_span(source, quote) if quote is not None else None
        self.passage = WrapLabel(highlight(source.text, query, span=span))
        self.passage.setObjectName("passage")
        self.passage.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.passage)
        if span is not None:
            self.setToolTip(self.toolTip() + ", with the quoted sentence marked")

    def _header(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setSpacing(8)
        badge = QLabel(f"[{self.number}]" if self.numbered else "·")
        badge.setObjectName("badge")
        name = QLabel(f"<b>{html.escape(self.source.document)}</b>")
        where = QLabel(html.escape(location(self.source)))
        where.setObjectName("muted")
        score = QLabel(self.source.score_label())
        score.setObjectName("score")
        score.setToolTip(score_help(self.source))
        for widget in (badge, name, where):
            row.addWidget(widget)
        row.addStretch(1)
        row.addWidget(score)
        return row

    def set_selected(self, selected: bool) -> None:
        self.setProperty("selected", selected)
        self.style().unpolish(self)
        self.style().polish(self)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            self.opened.emit(self.source)
        super().mouseReleaseEvent(event)


BULLETS = "•◦▪‣–-*"
QUOTE_SHEET = """
QFrame#quoteBlock { background: #fff7ed; border: 1px solid #fed7aa; border-left: 4px solid #f97316;
    border-radius: 8px; }
QFrame#quoteBlock:hover { background: #ffedd5; }
QLabel#quoteText { color: #1f2937; font-size: 14px; font-style: italic; }
QLabel#quoteLabel { color: #9a3412; }
"""


# Under a quote the model found no answer in (the answer is a don't-know).
NEAREST_NOTE = "The nearest passage: the model found no answer in it."


def quote_html(text: str) -> str:
    """The quoted sentence in quotation marks, one paragraph: its line breaks are the
    page's, except before a list item."""
    out = ""
    for line in filter(None, (" ".join(line.split()) for line in text.splitlines())):
        gap = "<br>" if line[0] in BULLETS else " "
        out += (gap if out else "") + html.escape(line)
    return f"“{out}”"


def source_of(quote: Quote) -> SearchResult:
    """A source for a quote whose passage is not at hand: the sentence is the passage."""
    return SearchResult(0, quote.document, quote.path, quote.page, quote.section,
                        quote.score, quote.text, quote.chunk_id)  # fmt: skip


class QuoteBlock(QFrame):
    """The reader's quote that opens an answer: the sentence, then where it is; a click
    opens it in the reader. Signals: opened()."""

    opened = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("quoteBlock")
        self.setStyleSheet(QUOTE_SHEET)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(4)
        self.text = WrapLabel("", self)
        self.text.setObjectName("quoteText")
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.label = QLabel("", self)
        self.label.setObjectName("quoteLabel")
        self.label.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.text)
        layout.addWidget(self.label)

    def set_quote(self, quote: Quote) -> None:
        self.text.setText(quote_html(quote.text))
        cited = f" · source [{quote.source}]" if quote.source else ""
        nearest = (
            f'<span style="color:#64748b">{html.escape(NEAREST_NOTE)}</span><br>'
            if quote.nearest else ""
        )  # fmt: skip
        where = html.escape(quote.label())
        self.label.setText(
            f'{nearest}— <span style="text-decoration:underline">{where}</span>'
            f'<span style="color:#64748b">{cited} · reader {quote.score:.2f}</span>'
        )
        self.setToolTip(f"Open {quote.label()} with the sentence marked")

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            self.opened.emit()
        super().mouseReleaseEvent(event)


class SourceList(QWidget):
    """A column of source cards. Signals: source_opened(SearchResult)."""

    source_opened = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(6)
        self.cards: list[SourceCard] = []

    def set_sources(
        self,
        sources: Sequence[SearchResult],
        query: str,
        quote: Quote | None = None,
        numbered: bool = True,
    ) -> None:
        """Cards for `sources`, numbered as given (the order the model read them in, which
        its citations follow) and shown best first whatever that order (the grounding
        adapter reads the best one last); the one `quote` comes from marks it. Unnumbered:
        passages shown for reference (the nearest ones), not cited."""
        for card in self.cards:
            card.deleteLater()
        self.cards = []
        given = list(enumerate(sources, start=1))
        for number, source in sorted(given, key=lambda item: item[1].rank):
            if quote is not None and holds_quote(number, source, quote):
                source = QuotedSource.of(source, quote)
            card = SourceCard(number, source, query, self, numbered)
            card.opened.connect(self.source_opened)
            self._layout.addWidget(card)
            self.cards.append(card)

    def quoted_source(self) -> QuotedSource | None:
        """The source that holds the quote, as its card shows it."""
        return next((c.source for c in self.cards if isinstance(c.source, QuotedSource)), None)

    def open_number(self, number: int) -> None:
        """Open source [number], as a click on its card does (citation links use this)."""
        wanted = next((card for card in self.cards if card.number == number), None)
        if wanted is not None:
            for card in self.cards:
                card.set_selected(card is wanted)
            self.source_opened.emit(wanted.source)


class WrapLabel(QLabel):
    """A word-wrapped label that fixes its own height when its width changes.

    A plain word-wrapped QLabel asks the layout for height-for-width, so every relayout of
    a long transcript re-measures every passage; this one measures once per width.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self._measured_width = -1

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt override
        return False

    def setText(self, text: str) -> None:  # noqa: N802 - Qt override
        super().setText(text)
        self._measured_width = -1
        self._fit()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(80, self.height())

    def _fit(self) -> None:
        width = self.width()
        if width != self._measured_width and width > 0:
            self._measured_width = width
            self.setMinimumHeight(0)  # QLabel measures no less than its minimum height
            self.setFixedHeight(max(0, super().heightForWidth(width)))  # empty: -1
