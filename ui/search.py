"""The search tab: ranked passages without the model; useful on any laptop."""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.index.retrieval import METHODS
from ui.bridge import Bridge
from ui.sources import SourceList

DEBOUNCE_MS = 300
LABELS = {"hybrid": "Hybrid", "vector": "Meaning", "keyword": "Keywords"}  # by retrieval.METHODS


class SearchView(QWidget):
    """Type a query, see ranked passages.

    Signals: source_opened(SearchResult), searched(query, results shown).
    """

    source_opened = Signal(object)
    searched = Signal(str, list)

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.collection = "default"
        self._pending = ""
        self._build()
        self._debounce = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._debounce.timeout.connect(self.run_search)

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.query = QLineEdit(self)
        self.query.setPlaceholderText("Search your documents by meaning and keywords…")
        self.query.setClearButtonEnabled(True)
        self.query.textChanged.connect(self._on_text_changed)
        self.query.returnPressed.connect(self.run_search)
        self.method = QComboBox(self)
        for method in METHODS:
            self.method.addItem(LABELS[method], method)
        self.method.currentIndexChanged.connect(self.run_search)
        self.k = QSpinBox(self, minimum=1, maximum=50, value=10, prefix="top ")
        self.k.valueChanged.connect(self.run_search)
        row.addWidget(self.query, 1)
        row.addWidget(self.method)
        row.addWidget(self.k)
        layout.addLayout(row)
        self.summary = QLabel("Search works without the language model: fast on any laptop.")
        self.summary.setObjectName("muted")
        layout.addWidget(self.summary)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        column = QWidget()
        inner = QVBoxLayout(column)
        self.results = SourceList(column)
        self.results.source_opened.connect(self.source_opened)
        inner.addWidget(self.results)
        inner.addStretch(1)
        scroll.setWidget(column)
        layout.addWidget(scroll, 1)

    def focus_query(self) -> None:
        self.query.setFocus()
        self.query.selectAll()

    @Slot(str)
    def _on_text_changed(self, _text: str) -> None:
        self._debounce.start()

    @Slot()
    def run_search(self) -> None:
        text = self.query.text().strip()
        if not text:
            self.results.set_sources([], "")
            return
        self._pending = text
        self.summary.setText(self.bridge.waiting_note() or "Searching…")
        self.bridge.search(
            text,
            self.k.value(),
            self.collection,
            self.method.currentData(),
            done=lambda results: self._on_search_finished(text, results),
            failed=self._on_failed,
        )

    def _on_search_finished(self, query: str, results: list) -> None:
        if query != self._pending:
            return  # an older query answered late
        self.results.set_sources(results, query)
        count = len(results)
        order = " · in the reader's order" if count and results[0].rerank is not None else ""
        self.summary.setText(
            f"{count} passage{'s' if count != 1 else ''} in “{self.collection}”{order}"
            if count
            else f"Nothing in “{self.collection}” matches “{query}”."
        )
        self.searched.emit(query, results)

    def _on_failed(self, message: str) -> None:
        self.summary.setText(f"Search failed: {message}")
