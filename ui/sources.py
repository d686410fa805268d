"""Source cards: a passage with its document, page or section, score and highlighted words.

Shared by the chat (an answer's sources) and the search tab (ranked passages).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QMouseEvent, QResizeEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from engine.types import SearchResult

PASSAGE_CHARS = 420
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


def highlight(text: str, query: str, limit: int = PASSAGE_CHARS) -> str:
    """HTML for a passage, cut near `limit` characters, with the query's words marked."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[:limit].rsplit(" ", 1)[0] + " …"
    escaped = html.escape(flat)
    terms = query_terms(query)
    if not terms:
        return escaped
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, terms)) + r")", re.IGNORECASE)
    return pattern.sub(r'<span style="background:#fde68a;color:#1f2937">\1</span>', escaped)


def location(source: SearchResult) -> str:
    """`page 12`, `§ Backups` or "" for where in the document a passage is."""
    if source.page is not None:
        return f"page {source.page}"
    if source.section:
        return f"§ {source.section}"
    return ""


class SourceCard(QFrame):
    """One clickable passage. Signals: opened(SearchResult)."""

    opened = Signal(object)

    def __init__(
        self, number: int, source: SearchResult, query: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.source = source
        self.number = number
        self.setObjectName("sourceCard")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(f"Open {source.path}" + (f" at page {source.page}" if source.page else ""))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(4)
        layout.addLayout(self._header())
        passage = WrapLabel(highlight(source.text, query))
        passage.setObjectName("passage")
        passage.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(passage)

    def _header(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setSpacing(8)
        badge = QLabel(f"[{self.number}]")
        badge.setObjectName("badge")
        name = QLabel(f"<b>{html.escape(self.source.document)}</b>")
        where = QLabel(html.escape(location(self.source)))
        where.setObjectName("muted")
        score = QLabel(self.source.score_label())
        score.setObjectName("score")
        score.setToolTip(
            f"Results are ordered by relevance: the vector and keyword searches' ranks "
            f"combined (1.00: first in both).\nSimilarity to the question: "
            f"{self.source.score:.2f} (cosine; the relevance cutoff uses this)."
        )
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


class SourceList(QWidget):
    """A column of source cards. Signals: source_opened(SearchResult)."""

    source_opened = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(6)
        self.cards: list[SourceCard] = []

    def set_sources(self, sources: Sequence[SearchResult], query: str) -> None:
        for card in self.cards:
            card.deleteLater()
        self.cards = []
        for number, source in enumerate(sources, start=1):
            card = SourceCard(number, source, query, self)
            card.opened.connect(self.source_opened)
            self._layout.addWidget(card)
            self.cards.append(card)

    def open_number(self, number: int) -> None:
        """Open source [number], as a click on its card does (citation links use this)."""
        if 1 <= number <= len(self.cards):
            for card in self.cards:
                card.set_selected(card.number == number)
            self.source_opened.emit(self.cards[number - 1].source)


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
            self.setFixedHeight(super().heightForWidth(width))
