"""The chat tab: ask, watch the answer stream in, stop it, open its sources.

Sources come first in each answer card, opened by the reader's quote (the sentence that
answers, with its document and page): with the bundled base model they are the part worth
reading, and they arrive before the first token anyway. Where the reader finds no sentence
that answers, the card says so and lists the nearest passages; nothing is generated.
"""

from __future__ import annotations

import dataclasses
import html
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QResizeEvent, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
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

from engine.answer.events import Answer, AskOptions
from engine.answer.followup import Turn, turns_of
from engine.answer.modes import MODES, RETRIEVING, preferred
from engine.answer.prompting import NOT_COVERED
from engine.history import History, Message
from engine.reader.rank import Quote
from engine.types import SearchResult
from ui.bridge import Bridge
from ui.feedback import FeedbackBar
from ui.history_view import HistoryWrites, Saving
from ui.offline_text import OfflineTextBrowser
from ui.runner import Request
from ui.sources import QuoteBlock, QuotedSource, SourceList, WrapLabel, source_of

LORA_HINT = "Load a LoRA adapter (Adapter… in the toolbar) to use this mode"
SOURCES_NOTE = "The sources above are what your documents actually say."
BASE_MODEL_NOTE = (
    "The bundled Gemma 3 270M is a tiny base model: its answer is a demo of the pipeline. "
    + SOURCES_NOTE  # said only under an answer that shows sources
)


def welcome_text(
    documents: int, passages: int, collection: str, model: str, adapter: str, remote: bool = False
) -> str:
    """The empty chat's card, saying where things stand: what is indexed, what answers
    (and, with a model server, that the questions go to it)."""
    answers = f"Answers come from <b>{html.escape(model)}</b>"
    answers += f" with <b>{html.escape(adapter)}</b>." if adapter else "."
    if remote:
        answers = answers[:-1] + ", a model server (Models… to disconnect)."
    stays = (
        "Your questions and the passages found go to that server."
        if remote
        else "Nothing leaves this computer."
    )
    if documents == 0:
        return (
            "<h2>Chat with your documents</h2>"
            f"<p>Nothing is indexed in “{html.escape(collection)}” yet.</p>"
            "<p>1. <b>Add documents</b>: PDFs, text, Markdown or HTML "
            "(<b>Ctrl+O</b>, or drop files on the window).</p>"
            "<p>2. <b>Ask a question</b> below (<b>Ctrl+Enter</b>). Every answer lists the "
            "pages it comes from; click one to open it.</p>"
            f"<p>{answers} {stays}</p>"
        )
    return (
        "<h2>Ask your documents</h2>"
        f"<p>✓ <b>{documents:,} document{'s' if documents != 1 else ''}</b> indexed in "
        f"“{html.escape(collection)}” ({passages:,} passages). Ask a question below "
        "(<b>Ctrl+Enter</b>); every answer lists the pages it comes from.</p>"
        f"<p>{answers} <b>Search</b> (Ctrl+F) finds passages without the model; "
        f"<b>Compare</b> shows the answer modes side by side. {stays}</p>"
    )


RENDER_MS = 40  # streamed Markdown is re-rendered at most this often
_CITATION = re.compile(r"\[(\d{1,2})\](?!\()")


def link_citations(markdown: str) -> str:
    """Turn `[n]` into a `cite:n` link, leaving real Markdown links alone."""
    return _CITATION.sub(r"[[\1]](cite:\1)", markdown)


def timing_text(timings: dict) -> str:
    if not timings.get("tokens"):
        return ""
    return (
        f"{timings.get('total_s', 0):.1f} s · first token {timings.get('first_token_s', 0):.2f} s"
        f" · {timings.get('tokens_per_s', 0):.1f} tokens/s"
    )


def saved_quote(data: dict[str, Any] | None) -> Quote | None:
    """A quote as history keeps it (`Quote.to_json()`); None when there is none or it
    does not read as one."""
    if not data:
        return None
    names = {f.name for f in dataclasses.fields(Quote)}
    try:
        return Quote(**{"chunk_id": 0, **{k: v for k, v in data.items() if k in names}})
    except TypeError:
        return None


class MarkdownView(OfflineTextBrowser):
    """Read-only Markdown that grows to fit its text, so a streamed answer relays out the
    transcript only when it gains a line, not on every token. Signals: link_activated(str).
    """

    link_activated = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("answerBody")
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setOpenLinks(False)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.anchorClicked.connect(lambda url: self.link_activated.emit(url.toString()))
        self.set_markdown("…")

    def set_markdown(self, text: str) -> None:
        self.setMarkdown(text)
        self._fit()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        """Height to the laid-out text; changed (a relayout) only when a line is added."""
        self.document().setTextWidth(self.viewport().width())
        height = math.ceil(self.document().size().height()) + 2 * self.frameWidth()
        if height != self.height():
            self.setFixedHeight(height)


class AnswerCard(QFrame):
    """One answer: the reader's quote, its sources, then the (streaming) Markdown text.
    Signals: source_opened(SearchResult)."""

    source_opened = Signal(object)

    def __init__(self, mode: str, note: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("answerCard")
        self.text = ""
        self.quote: Quote | None = None
        self._shown: tuple[list[SearchResult], str] = ([], "")  # the sources, the question
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 12)
        self.quote_block = QuoteBlock(self)
        self.quote_block.opened.connect(self._on_quote_opened)
        self.quote_block.hide()
        self.sources_title = QLabel("From your documents")
        self.sources_title.setObjectName("sectionTitle")
        self.sources = SourceList(self)
        self.sources.source_opened.connect(self.source_opened)
        self.answer_title = QLabel(f"Answer · {mode.upper()}")
        self.answer_title.setObjectName("sectionTitle")
        self.body = MarkdownView(self)
        self.body.link_activated.connect(self._on_link_activated)
        self.note = note
        self.meta = WrapLabel(self._note())
        self.meta.setObjectName("muted")
        for widget in (
            self.quote_block, self.sources_title, self.sources, self.answer_title, self.body,
            self.meta,
        ):  # fmt: skip
            layout.addWidget(widget)
        self.sources_title.hide()
        self.feedback: FeedbackBar | None = None
        self._render = QTimer(self, singleShot=True, interval=RENDER_MS)
        self._render.timeout.connect(self._on_render_due)

    def set_sources(
        self, sources: Sequence[SearchResult], query: str, quote: Quote | None = None
    ) -> None:
        """Show the sources; a quote opens the answer and is marked in its source's card."""
        self.quote = quote
        self._shown = (list(sources), query)
        self.sources.set_sources(sources, query, quote)
        if quote is not None:
            self.quote_block.set_quote(quote)
        self.quote_block.setVisible(quote is not None)
        self.meta.setText(self._note())  # before the answer ends: the note alone
        self.sources_title.setVisible(bool(sources))
        if not sources and self.answer_title.text().endswith(("RAG", "HYBRID")):
            self.sources_title.setText("No passage in your documents matched this question")
            self.sources_title.show()

    def append(self, piece: str) -> None:
        self.text += piece
        if not self._render.isActive():
            self._render.start()

    def finish(self, text: str, cancelled: bool, timings: dict) -> None:
        self.text = text
        self._render.stop()
        self._on_render_due()
        stamp = " · ".join(filter(None, [timing_text(timings), "stopped" if cancelled else ""]))
        if stamp:
            self.meta.setText(f"{stamp}\n{self._note()}".strip())
        if not text:
            self.body.set_markdown(
                "*(stopped before the first word)*" if cancelled else "*(no answer)*"
            )

    def _note(self) -> str:
        """The card's note; its line about the sources only when there are sources shown."""
        if self._shown[0]:
            return self.note
        return self.note.replace(SOURCES_NOTE, "").strip()

    def show_not_covered(self) -> None:
        """The reader found no sentence that answers: the card says so, then lists the
        passages nearest the question, unnumbered, as what was looked at, not cited."""
        sources, query = self._shown
        self.sources.set_sources(sources, query, numbered=False)
        self.sources_title.setText("Nearest passages")
        self.sources_title.setVisible(bool(sources))
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        for widget in (self.sources_title, self.sources):  # below the sentence that says so
            layout.removeWidget(widget)
            layout.insertWidget(layout.indexOf(self.meta), widget)
        self.note = ""
        self.meta.setText("")

    def add_feedback(
        self,
        writes: HistoryWrites,
        message: Message,
        question: str = "",
        data_dir: Path | None = None,
    ) -> None:
        """Thumbs, "Edit answer" and "Add to test set" for a stored answer with its prompt."""
        if message.prompt and message.content and self.feedback is None:
            self.feedback = FeedbackBar(writes, message, self, question, data_dir)
            layout = self.layout()
            assert layout is not None  # the card's own, set when it was built
            layout.addWidget(self.feedback)

    @Slot()
    def _on_render_due(self) -> None:
        self.body.set_markdown(link_citations(self.text) or "…")

    @Slot()
    def _on_quote_opened(self) -> None:
        """Open the quote's source in the reader, at the sentence."""
        if self.quote is None:
            return
        held = self.sources.quoted_source()
        source = held if held is not None else source_of(self.quote)
        self.source_opened.emit(QuotedSource.of(source, self.quote, at_quote=True))

    @Slot(str)
    def _on_link_activated(self, link: str) -> None:
        if link.startswith("cite:"):
            self.sources.open_number(int(link[5:]))


class ChatView(QWidget):
    """Question box, mode selector and the transcript of the open conversation.

    Signals: conversation_changed(int), busy_changed(bool), source_opened(SearchResult),
    token_shown(str), answer_finished(Answer).
    """

    conversation_changed = Signal(int)
    busy_changed = Signal(bool)
    source_opened = Signal(object)
    token_shown = Signal(str)
    answer_finished = Signal(object)

    def __init__(self, bridge: Bridge, history: History, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.history = history  # read here; written through `writes` (the history lane)
        self.writes = HistoryWrites(bridge.runner, bridge.failure("Could not save the chat"))
        self.conversation_id: int | None = None
        self._saving: Saving | None = None  # where the answer under way is saved
        self.collection = "default"
        self.max_tokens: int | None = None  # None: the settings' value
        self.model_note = BASE_MODEL_NOTE
        self.busy = False
        self._card: AnswerCard | None = None
        self._question = ""
        self._request: Request | None = None
        self._build()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.scroll_area = QScrollArea(self)
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.column = QWidget()
        self.column.setObjectName("transcript")
        self.items = QVBoxLayout(self.column)
        self.items.setContentsMargins(16, 16, 16, 16)
        self.items.setSpacing(12)
        self.empty = QLabel(welcome_text(0, 0, "default", "the bundled model", ""))
        self.empty.setObjectName("emptyHint")
        self.empty.setWordWrap(True)
        self.items.addWidget(self.empty)
        self.items.addStretch(1)
        self.scroll_area.setWidget(self.column)
        self.scroll_area.verticalScrollBar().rangeChanged.connect(self._on_range_changed)
        layout.addWidget(self.scroll_area, 1)
        layout.addWidget(self._input_bar())

    def _input_bar(self) -> QWidget:
        bar = QFrame(self)
        bar.setObjectName("inputBar")
        row = QHBoxLayout(bar)
        self.mode = QComboBox(bar)
        # "Hybrid · grounded answers" arrives with the status: grow to show it whole.
        self.mode.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        for mode in MODES.values():
            self.mode.addItem(mode.label, mode.name)
        self.mode.setCurrentIndex(self.mode.findData(preferred(adapter=False)))
        self.mode.setToolTip(
            "Base: the model alone. RAG: answers from your documents. LoRA: the model with "
            "its adapter. Hybrid: both (the default when an adapter is there)."
        )
        self._default: str | None = None  # the engine's default mode, once it was chosen
        self.set_lora_available(False)
        self.input = QPlainTextEdit(bar)
        self.input.setPlaceholderText("Ask about your documents…  (Ctrl+Enter to send)")
        self.input.setFixedHeight(64)
        self.send_button = QPushButton("Send", bar)
        self.send_button.setObjectName("primary")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop", bar)
        self.stop_button.setToolTip("Stop the answer (Esc)")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.hide()
        row.addWidget(self.mode)
        row.addWidget(self.input, 1)
        row.addWidget(self.send_button)
        row.addWidget(self.stop_button)
        return bar

    def set_lora_available(self, available: bool, label: str | None = None) -> None:
        """Grey out LoRA and Hybrid until an adapter is loaded; name the adapter in them."""
        hint = None if available else LORA_HINT
        self.set_modes({m.name: hint if m.adapter else None for m in MODES.values()}, label)

    def set_modes(
        self,
        reasons: dict[str, str | None],
        label: str | None = None,
        default: str | None = None,
    ) -> None:
        """Grey out the modes that cannot run now, with the reason as their tooltip, and
        name the adapter in the adapter modes.

        Each time the engine's `default` mode (`Status.default_mode`) changes, it becomes
        the mode: with the bundled model that is Hybrid with Quire's grounding adapter, the
        answers the app is meant to give.
        """
        model = self.mode.model()
        assert isinstance(model, QStandardItemModel)
        for row, mode in enumerate(MODES.values()):
            reason = reasons.get(mode.name)
            item = model.item(row)
            item.setEnabled(reason is None)
            item.setToolTip(reason or "")
            named = mode.adapter and reason is None and label
            self.mode.setItemText(row, f"{mode.label} · {label}" if named else mode.label)
        fallback = default or preferred(adapter=False)
        if reasons.get(self.mode.currentData()) is not None:
            usable = [m for m in (fallback, *RETRIEVING, *MODES) if reasons.get(m) is None]
            self.mode.setCurrentIndex(self.mode.findData(usable[0] if usable else fallback))
        elif default is not None and default != self._default and reasons.get(default) is None:
            self.mode.setCurrentIndex(self.mode.findData(default))
        if default is not None:
            self._default = default

    # -- asking ----------------------------------------------------------------------

    @Slot()
    def send(self) -> None:
        question = self.input.toPlainText().strip()
        if not question or self.busy:
            return
        self.input.clear()
        self.ask(question, self.mode.currentData())

    def ask(self, question: str, mode: str) -> None:
        """Ask in the conversation on screen: a later question is a follow-up, searched
        with the one before it and answered with the recent turns."""
        turns: list[Turn] = []
        if self.conversation_id is not None:
            turns = turns_of(self.history.messages(self.conversation_id))
        saving = self._saving = Saving(self.conversation_id)
        self.writes.save_question(saving, question, lambda cid: self._on_question_saved(saving))
        self._add_question(question)
        self._question = question
        self._card = self._add_card(mode)
        waiting = self.bridge.waiting_note()
        if waiting:  # the engine is indexing: say so instead of a silent "…"
            self._card.body.set_markdown(f"*{waiting}*")
        self._set_busy(True)
        options = AskOptions(
            collection=self.collection, max_tokens=self.max_tokens, turns=turns or None
        )
        self._request = self.bridge.ask(
            question,
            mode,
            options,
            sources=self._on_sources_found,
            token=self._on_token_received,
            done=self._on_answer_finished,
            failed=self._on_failed,
        )

    @Slot()
    def stop(self) -> None:
        if self.busy and self._request is not None:
            self._request.stop()

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.send_button.setVisible(not busy)
        self.stop_button.setVisible(busy)
        self.busy_changed.emit(busy)

    def _on_sources_found(self, sources: list, quote: Quote | None = None) -> None:
        if self._card is not None:
            self._card.set_sources(sources, self._question, quote)

    @Slot(str)
    def _on_token_received(self, piece: str) -> None:
        if self._card is not None:
            self._card.append(piece)
        self.token_shown.emit(piece)

    @Slot(object)
    def _on_answer_finished(self, answer: Answer) -> None:
        card, self._card = self._card, None
        timings = vars(answer.timings).copy()
        if card is not None:
            card.finish(answer.answer, answer.cancelled, timings)
            if answer.quote is not None and answer.quote.nearest:
                card.quote_block.set_quote(answer.quote)
            if answer.not_covered:
                card.show_not_covered()
        saving = self._saving
        if saving is None:  # another conversation is on screen now: the answer is not kept
            self._answered(answer)
            return
        message = Message(
            "assistant", answer.answer, answer.mode, answer.sources, timings, answer.cancelled,
            prompt=answer.prompt or None, quote=answer.quote.to_json() if answer.quote else None,
        )  # fmt: skip
        self.writes.save_answer(
            saving, message, lambda saved: self._on_answer_saved(answer, card, saving, saved)
        )

    def _on_question_saved(self, saving: Saving) -> None:
        if saving is self._saving and saving.id is not None:
            self.conversation_id = saving.id
            self.conversation_changed.emit(saving.id)

    def _on_answer_saved(
        self, answer: Answer, card: AnswerCard | None, saving: Saving, saved: Message | None
    ) -> None:
        """The answer is in the history (`saved`), or could not be (None, said already)."""
        if saved is not None and saving is self._saving and saving.id is not None:
            if card is not None:
                card.add_feedback(self.writes, saved, self._question, self.history.path.parent)
            self.conversation_changed.emit(saving.id)
        self._answered(answer)

    def _answered(self, answer: Answer) -> None:
        """The answer is shown and kept: the next question may come."""
        self._request = None
        self._set_busy(False)
        self.answer_finished.emit(answer)

    def _on_failed(self, message: str) -> None:
        self._request = None
        if self._card is None:
            self._set_busy(False)
            return
        card, self._card = self._card, None
        card.finish("", False, {})
        card.body.set_markdown(f"**Could not answer:** {html.escape(message)}")
        card.setProperty("error", True)
        self._set_busy(False)

    # -- the transcript ------------------------------------------------------------

    def set_welcome(self, text: str) -> None:
        """The card shown while the conversation is empty."""
        self.empty.setText(text)

    def clear(self) -> None:
        while self.items.count() > 2:  # the empty hint and the stretch stay
            item = self.items.takeAt(1)
            if item is not None and (widget := item.widget()):
                widget.deleteLater()
        self.empty.show()

    def new_conversation(self) -> None:
        if self.busy:
            self.stop()
        self.conversation_id, self._saving = None, None
        self.clear()
        self.input.setFocus()

    def load_conversation(self, conversation_id: int) -> None:
        """Show a stored conversation (sources and all) and continue it."""
        self.clear()
        self.conversation_id, self._saving = conversation_id, None
        question = ""
        for message in self.history.messages(conversation_id):
            if message.role == "user":
                question = message.content
                self._add_question(question)
                continue
            card = self._add_card(message.mode or "rag")
            card.set_sources(message.sources, question, saved_quote(message.quote))
            card.finish(message.content, message.cancelled, message.timings)
            if message.content == NOT_COVERED and message.sources:
                card.show_not_covered()
            card.add_feedback(self.writes, message, question, self.history.path.parent)

    def _add_question(self, text: str) -> None:
        self.empty.hide()
        bubble = WrapLabel(html.escape(text).replace("\n", "<br>"))
        bubble.setObjectName("question")
        bubble.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.items.insertWidget(self.items.count() - 1, bubble)

    def _add_card(self, mode: str) -> AnswerCard:
        note = "" if MODES[mode].adapter else self.model_note  # the base model answers
        card = AnswerCard(mode, note, self.column)
        card.source_opened.connect(self.source_opened)
        self.items.insertWidget(self.items.count() - 1, card)
        return card

    @Slot(int, int)
    def _on_range_changed(self, _low: int, high: int) -> None:
        if self.busy or self._card is None:
            self.scroll_area.verticalScrollBar().setValue(high)
