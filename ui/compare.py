"""The Compare tab: one question answered in every mode, side by side, with timings.

Base | RAG | LoRA | Hybrid columns stream their answers one after the other through the
worker's Engine (`Engine.compare`); a mode that cannot run shows why, greyed out (the
adapter modes with a model server: adapters need the local model). The titles name the
adapter, and the server's model when one answers.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from engine.answer.events import Answer, AnswerFinished, AskOptions, SourcesFound, TokenReceived
from engine.answer.modes import MODES
from engine.reader.rank import Quote
from engine.types import SearchResult
from ui.bridge import Bridge
from ui.chat import RENDER_MS, MarkdownView, link_citations
from ui.runner import Request
from ui.sources import QuoteBlock, QuotedSource, source_of

LEVERS = (
    "<b>RAG</b> adds knowledge from your documents (with page citations); "
    "<b>LoRA</b> changes how the model behaves (style, format, vocabulary). "
    "Hybrid uses both. Each column shows its time to first token, speed and retrieval time."
)
NOT_YET = "Waiting for its turn…"  # asked, and another mode is answering first


def sources_html(sources: Sequence[SearchResult]) -> str:
    """Compact source links: `[n] document p.N`, one per line."""
    lines = []
    for n, source in enumerate(sources, start=1):
        where = f" p.{source.page}" if source.page else ""
        lines.append(f'<a href="src:{n}">[{n}] {html.escape(source.document)}{where}</a>')
    return "<br>".join(lines)


def metrics_text(answer: Answer) -> str:
    t = answer.timings
    parts = [
        f"first token {t.first_token_s:.2f} s",
        f"{t.tokens_per_s:.1f} tokens/s",
        f"retrieval {t.retrieval_s * 1000:.0f} ms" if MODES[answer.mode].retrieves else "",
        "stopped" if answer.cancelled else "",
    ]
    return " · ".join(p for p in parts if p)


class ModeColumn(QFrame):
    """One mode's answer (opened by the reader's quote in the retrieval modes), metrics
    and sources. Signals: source_opened(SearchResult)."""

    source_opened = Signal(object)

    def __init__(self, label: str, mode: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("answerCard")
        self.mode = mode
        self.text = ""
        self.answer: Answer | None = None
        self.sources: list[SearchResult] = []
        self.quote: Quote | None = None
        self.reason: str | None = None  # why this mode cannot run now (None: it can)
        layout = QVBoxLayout(self)
        self.title = title = QLabel(label, self)
        title.setObjectName("sectionTitle")
        self.hint = QLabel("", self)
        self.hint.setObjectName("muted")
        self.hint.setWordWrap(True)
        self.quote_block = QuoteBlock(self)
        self.quote_block.label.setWordWrap(True)  # a column is narrow: where wraps too
        self.quote_block.opened.connect(self._on_quote_opened)
        self.quote_block.hide()
        # Four equal columns whatever they hold: a long quote must not squeeze the others.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.body = MarkdownView(self)
        self.metrics = QLabel("", self)
        self.metrics.setObjectName("muted")
        self.metrics.setWordWrap(True)
        self.source_links = QLabel("", self)
        self.source_links.setWordWrap(True)
        self.source_links.linkActivated.connect(self._on_link_activated)
        self.body.link_activated.connect(self._on_link_activated)
        for widget in (title, self.hint, self.quote_block, self.body, self.metrics,
                       self.source_links):  # fmt: skip
            layout.addWidget(widget)
        layout.addStretch(1)
        self._render = QTimer(self, singleShot=True, interval=RENDER_MS)
        self._render.timeout.connect(self._on_render_due)

    def reset(self, reason: str | None, asked: bool = False) -> None:
        """Empty the column; a `reason` greys it out with that hint. Once a question is
        `asked`, a column that can run waits for its turn; before, it says nothing."""
        self.text, self.answer, self.sources, self.reason = "", None, [], reason
        self.quote = None
        self.quote_block.hide()
        self.setEnabled(reason is None)
        self.hint.setText(f"Not available: {reason}" if reason else NOT_YET if asked else "")
        self.body.set_markdown("")
        self.body.setVisible(reason is None)
        self.metrics.clear()
        self.source_links.clear()

    def set_sources(self, sources: list[SearchResult], quote: Quote | None = None) -> None:
        self.sources = list(sources)
        self.quote = quote
        if quote is not None:
            self.quote_block.set_quote(quote)
        self.quote_block.setVisible(quote is not None)
        self.hint.setText("Answering…")
        if MODES[self.mode].retrieves:
            self.source_links.setText(sources_html(sources) or "No passage matched.")

    def append(self, piece: str) -> None:
        self.text += piece
        if not self._render.isActive():
            self._render.start()

    def finish(self, answer: Answer) -> None:
        self.answer = answer
        self.text = answer.answer
        self._render.stop()
        self._on_render_due()
        self.hint.setText("")
        self.metrics.setText(metrics_text(answer))
        if answer.quote is not None and answer.quote.nearest:
            self.quote_block.set_quote(answer.quote)  # labelled the nearest passage

    @Slot()
    def _on_render_due(self) -> None:
        self.body.set_markdown(link_citations(self.text) or "…")

    @Slot()
    def _on_quote_opened(self) -> None:
        """Open the quote's source in the reader, at the sentence."""
        if self.quote is None:
            return
        chunk = self.quote.chunk_id
        source = next((s for s in self.sources if s.chunk_id == chunk), None)
        source = source if source is not None else source_of(self.quote)
        self.source_opened.emit(QuotedSource.of(source, self.quote, at_quote=True))

    @Slot(str)
    def _on_link_activated(self, link: str) -> None:
        for prefix in ("src:", "cite:"):
            if link.startswith(prefix) and link[len(prefix) :].isdigit():
                number = int(link[len(prefix) :])
                if 1 <= number <= len(self.sources):
                    self.source_opened.emit(self.sources[number - 1])


class CompareView(QWidget):
    """A question box and four mode columns.

    Signals: busy_changed(bool), comparison_finished(dict mode -> Answer),
    source_opened(SearchResult), token_shown(mode, text).
    """

    busy_changed = Signal(bool)
    comparison_finished = Signal(object)
    source_opened = Signal(object)
    token_shown = Signal(str, str)

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.collection = "default"
        self.max_tokens: int | None = None  # None: the settings' value
        self.busy = False
        self._request: Request | None = None
        self._build()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        levers = QLabel(LEVERS, self)
        levers.setObjectName("muted")
        levers.setWordWrap(True)
        layout.addWidget(levers)
        layout.addLayout(self._question_row())
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        grid = QWidget(scroll)
        grid.setObjectName("transcript")
        row = QHBoxLayout(grid)
        self.columns = {m.name: ModeColumn(m.label, m.name, grid) for m in MODES.values()}
        for column in self.columns.values():
            column.source_opened.connect(self.source_opened)
            column.reset(None)
            row.addWidget(column, 1)
        scroll.setWidget(grid)
        layout.addWidget(scroll, 1)

    def _question_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.question = QPlainTextEdit(self)
        self.question.setPlaceholderText("One question, answered in every mode… (Ctrl+Shift+Enter)")
        self.question.setFixedHeight(56)
        self.compare_button = QPushButton("Compare", self)
        self.compare_button.setObjectName("primary")
        self.compare_button.clicked.connect(self.compare)
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.hide()
        row.addWidget(self.question, 1)
        row.addWidget(self.compare_button)
        row.addWidget(self.stop_button)
        return row

    def set_modes(
        self, reasons: dict[str, str | None], adapter: str | None = None, model: str | None = None
    ) -> None:
        """Before a run: grey out the modes that cannot run now, with the reason; name the
        adapter in the adapter modes' titles, and a model server's model (`model`) in the
        others'. A column whose mode stays possible keeps its last answer."""
        if self.busy:
            return
        for mode in MODES.values():
            reason = reasons.get(mode.name)
            column = self.columns[mode.name]
            if reason != column.reason:
                column.reset(reason)
            name = adapter if mode.adapter and adapter else model
            column.title.setText(f"{mode.label} · {name}" if name and not reason else mode.label)

    @Slot()
    def compare(self) -> None:
        question = self.question.toPlainText().strip()
        if not question or self.busy:
            return
        self._set_busy(True)
        waiting = self.bridge.waiting_note()  # the engine is indexing: the question waits
        for column in self.columns.values():
            if waiting and column.reason is None:
                column.hint.setText(waiting)
        options = AskOptions(collection=self.collection, max_tokens=self.max_tokens)
        self._request = self.bridge.compare(
            question,
            options,
            started=self._on_compare_started,
            event=self._on_compare_event,
            done=self._on_compare_finished,
            failed=self._on_compare_failed,
        )

    @Slot()
    def stop(self) -> None:
        if self.busy and self._request is not None:
            self._request.stop()

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.compare_button.setVisible(not busy)
        self.stop_button.setVisible(busy)
        self.busy_changed.emit(busy)

    @Slot(object)
    def _on_compare_started(self, reasons: dict) -> None:
        for mode, column in self.columns.items():
            column.reset(reasons.get(mode), asked=True)

    def _on_compare_event(self, mode: str, event: object) -> None:
        column = self.columns[mode]
        if isinstance(event, TokenReceived):
            column.append(event.text)
            self.token_shown.emit(mode, event.text)
        elif isinstance(event, SourcesFound):
            column.set_sources(event.sources, event.quote)
        elif isinstance(event, AnswerFinished):
            column.finish(event.answer)

    def _on_compare_failed(self, message: str) -> None:
        self.bridge.on_failure(f"Could not compare: {message}")
        self._on_compare_finished()

    def _on_compare_finished(self, _result: object = None) -> None:
        self._request = None
        self._set_busy(False)
        for column in self.columns.values():
            if column.isEnabled() and column.answer is None:
                column.hint.setText("Not run (stopped or failed)")
        answers = {m: c.answer for m, c in self.columns.items() if c.answer is not None}
        self.comparison_finished.emit(answers)
