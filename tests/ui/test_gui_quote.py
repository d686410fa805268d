"""The reader's quote in the window: first in the answer, marked in its source's card and
in the reader; and the answer the documents do not cover.

The shipped reader is not in every checkout, so `Engine.ask` replays a recorded answer
(sources, quote, text) through the real engine thread, bridge and window.
"""
# ruff: noqa: F811 - the window fixtures are imported from test_gui_app

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from engine.answer.events import Answer, AnswerFinished, SourcesFound, TokenReceived
from engine.answer.modes import MODES
from engine.answer.prompting import NOT_COVERED
from engine.core import Engine
from engine.reader.rank import Quote
from engine.types import SearchResult, Timings
from tests.ui.test_gui_app import app, open_window  # noqa: F401

pytestmark = pytest.mark.gui

QUESTION = "Which port should I forward for Minetest?"
PASSAGE = (
    "If your FreedomBox is behind a router, you will need to set up port forwarding on "
    "your router. You should forward the following ports for Minetest:\nUDP 30000"
)
MINETEST_MD = (
    "# Minetest\n\nMinetest is a block sandbox.\n\n## Port Forwarding\n\n"
    "If your FreedomBox is behind a router, you will need to set up port forwarding on your "
    "router. You should forward the following ports for Minetest:\n\n- UDP 30000\n\n"
    "## Mods\n\nMods go in the mods folder.\n"
)


def replay(answer: Answer, quote: Quote | None):
    """An `Engine.ask` that gives `answer` as the engine streams one."""

    def ask(self, question, mode="rag", options=None, *, stop=None):
        yield SourcesFound(answer.sources, quote)
        yield TokenReceived(answer.answer)
        yield AnswerFinished(answer)

    return ask


def documents(folder: Path) -> tuple[list[SearchResult], Quote]:
    """Two real documents, their passages as sources, and a quote from the first."""
    folder.mkdir()
    minetest = folder / "minetest.md"
    minetest.write_text(MINETEST_MD, encoding="utf-8")
    backups = folder / "backups.txt"
    backups.write_text("Backups run every night and are kept for a month.\n", encoding="utf-8")
    sources = [
        SearchResult(1, "minetest.md", str(minetest), None, "Port Forwarding", 0.8, PASSAGE,
                     11, "default", rerank=0.78),
        SearchResult(2, "backups.txt", str(backups), None, None, 0.4,
                     "Backups run every night and are kept for a month.", 12, "default",
                     rerank=0.31),
    ]  # fmt: skip
    start = PASSAGE.index("You should")
    quote = Quote(11, start, len(PASSAGE), PASSAGE[start:], 0.72, "minetest.md",
                  str(minetest), None, "Port Forwarding", source=1)  # fmt: skip
    return sources, quote


def shown(label) -> str:
    """A rich-text label's text as the user reads it."""
    return html.unescape(re.sub(r"<[^>]+>", "", label.text()))


def last_card(window):
    return window.chat.items.itemAt(window.chat.items.count() - 2).widget()


def test_an_answer_opens_with_its_quote_marked_in_the_card_and_the_reader(
    open_window, qtbot, tmp_path, monkeypatch
):
    from ui.pdf_view import HIGHLIGHT, QUOTE_HIGHLIGHT
    from ui.sources import QUOTE_STYLE

    sources, quote = documents(tmp_path / "docs")
    answer = Answer(QUESTION, "rag", "Forward UDP 30000 [1].", sources, Timings(), quote=quote,
                    prompt=[{"role": "user", "content": QUESTION}])  # fmt: skip
    monkeypatch.setattr(Engine, "ask", replay(answer, quote))
    window = open_window(tmp_path / "data")
    window.resize(1700, 900)
    with qtbot.waitSignal(window.chat.answer_finished, timeout=30_000):
        window.chat.ask(QUESTION, "rag")
    card = last_card(window)
    block = card.quote_block
    assert block.isVisibleTo(window)
    assert shown(block.text) == "“You should forward the following ports for Minetest: UDP 30000”"
    assert shown(block.label).startswith('— minetest.md, "Port Forwarding" · source [1]')
    # The quote comes first, then the sources, then the generated answer.
    assert block.y() < card.sources.y() < card.body.y()
    first, second = (c.passage.text() for c in card.sources.cards)
    assert f'<span style="{QUOTE_STYLE}">You' in first and "UDP 30000</span>" in first
    assert QUOTE_STYLE not in second

    qtbot.mouseClick(block, Qt.MouseButton.LeftButton)
    reader = window.reader
    assert reader.isVisible() and reader.stack.currentWidget() is reader.text_view
    passage, sentence = reader.text_view.extraSelections()
    assert passage.format.background().color() == HIGHLIGHT
    assert sentence.format.background().color() == QUOTE_HIGHLIGHT
    assert passage.cursor.selectedText().startswith("If your FreedomBox")
    marked = sentence.cursor.selectedText()  # the sentence, and the list item it leads to
    assert marked.startswith("You should forward") and marked.endswith("UDP 30000")
    assert reader.text_view.textCursor().position() == sentence.cursor.selectionStart()

    # A click on its card marks it too, from the passage.
    qtbot.mouseClick(card.sources.cards[0], Qt.MouseButton.LeftButton)
    assert len(reader.text_view.extraSelections()) == 2
    qtbot.mouseClick(card.sources.cards[1], Qt.MouseButton.LeftButton)
    assert len(reader.text_view.extraSelections()) == 1  # no quote in that one

    # The conversation, opened again, keeps its quote.
    window.close()
    again = open_window(tmp_path / "data")
    again.chat.load_conversation(again.chat.history.conversations()[0].id)
    QApplication.processEvents()  # a widget added to a shown layout is shown from the loop
    restored = last_card(again)
    assert restored.quote_block.isVisibleTo(again)
    assert restored.quote_block.text.text() == block.text.text()
    assert QUOTE_STYLE in restored.sources.cards[0].passage.text()


def test_an_answer_the_documents_do_not_cover_lists_the_nearest_passages(
    open_window, qtbot, tmp_path, monkeypatch
):
    sources, _quote = documents(tmp_path / "docs")
    answer = Answer(QUESTION, "hybrid", NOT_COVERED, sources, Timings(), not_covered=True)
    monkeypatch.setattr(Engine, "ask", replay(answer, None))
    window = open_window(tmp_path / "data")
    with qtbot.waitSignal(window.chat.answer_finished, timeout=30_000):
        window.chat.ask(QUESTION, "rag")
    card = last_card(window)
    QApplication.processEvents()
    assert card.body.toPlainText().strip() == NOT_COVERED
    assert not card.quote_block.isVisibleTo(window)
    assert card.sources_title.text() == "Nearest passages"
    assert card.body.y() < card.sources_title.y() < card.sources.y()  # said first
    assert [c.numbered for c in card.sources.cards] == [False, False]  # not cited
    assert "tiny base model" not in card.meta.text()

    window.close()
    again = open_window(tmp_path / "data")
    again.chat.load_conversation(again.chat.history.conversations()[0].id)
    QApplication.processEvents()  # a widget added to a shown layout is shown from the loop
    restored = last_card(again)
    assert restored.sources_title.text() == "Nearest passages"
    assert not restored.quote_block.isVisibleTo(again)


def test_a_quote_above_a_don_t_know_is_shown_as_the_nearest_passage(
    open_window, qtbot, tmp_path, monkeypatch
):
    """The model found no answer under the quote: the quote stays (it may well be what the
    user wants to read) but no longer reads as the answer, and stays so when reopened."""
    from dataclasses import replace

    from ui.sources import NEAREST_NOTE

    sources, quote = documents(tmp_path / "docs")
    nearest = replace(quote, nearest=True)
    answer = Answer(QUESTION, "hybrid", "The documents do not say.", sources, Timings(),
                    quote=nearest)  # fmt: skip

    def ask(self, question, mode="rag", options=None, *, stop=None):
        yield SourcesFound(sources, quote)  # as streamed: not yet known
        yield TokenReceived(answer.answer)
        yield AnswerFinished(answer)

    monkeypatch.setattr(Engine, "ask", ask)
    window = open_window(tmp_path / "data")
    with qtbot.waitSignal(window.chat.answer_finished, timeout=30_000):
        window.chat.ask(QUESTION, "hybrid")
    card = last_card(window)
    assert card.quote_block.isVisibleTo(window)
    assert shown(card.quote_block.label).startswith(NEAREST_NOTE)

    window.close()
    again = open_window(tmp_path / "data")
    again.chat.load_conversation(again.chat.history.conversations()[0].id)
    QApplication.processEvents()
    assert shown(last_card(again).quote_block.label).startswith(NEAREST_NOTE)


def test_the_reader_marks_the_quoted_sentence_over_a_pdf_passage(open_window, qtbot, tmp_path):
    from tests.factory import write_pdf
    from ui.sources import QuotedSource

    filler = [f"Filler line {i} of the page." for i in range(20)]
    cited = [
        "The pump must be primed before the first start.",
        "Open the bleed screw until water comes out,",
        "then close it and run the pump for two minutes.",
    ]
    pages = [filler, filler[:10] + cited + filler[:5], filler, filler]
    pdf = write_pdf(tmp_path / "pump-manual.pdf", pages)
    text = " ".join(cited)
    start = text.index("Open the bleed")
    source = SearchResult(1, pdf.name, str(pdf), 2, None, 0.9, text, 5, "default")
    quote = Quote(5, start, len(text), text[start:], 0.8, pdf.name, str(pdf), 2, None, 1)
    window = open_window(tmp_path / "data")
    window.resize(1700, 900)
    window.open_source(QuotedSource.of(source, quote, at_quote=True))
    view = window.reader.pdf_view
    qtbot.waitUntil(lambda: bool(view.quote_marks.get(1)), timeout=5_000)
    passage_lines = sorted({round(p.boundingRect().top()) for p in view.marks[1]})
    quote_lines = sorted({round(p.boundingRect().top()) for p in view.quote_marks[1]})
    assert len(passage_lines) == 3 and quote_lines == passage_lines[1:]  # its two lines

    QApplication.processEvents()
    image = view.viewport().grab().toImage()
    page = view.page_rects()[1]
    scale = page.width() / window.reader.pdf.pagePointSize(1).width()

    def colour(box):
        """The painted colour a little inside a marked box's left end."""
        x = page.left() + (box.left() + 3) * scale - view.horizontalScrollBar().value()
        y = page.top() + box.center().y() * scale - view.verticalScrollBar().value()
        return image.pixelColor(int(x), int(y))

    first_line = min((p.boundingRect() for p in view.marks[1]), key=lambda b: b.top())
    passage = colour(first_line)
    sentence = colour(view.quote_marks[1][0].boundingRect())
    assert passage.blue() < passage.red() - 30  # amber over the white page
    assert sentence.green() < passage.green() - 20  # the quote: orange, over the amber


def test_compare_opens_the_retrieval_modes_with_their_quote(
    open_window, qtbot, tmp_path, monkeypatch
):
    from ui.pdf_view import QUOTE_HIGHLIGHT

    sources, quote = documents(tmp_path / "docs")
    answer = Answer(QUESTION, "rag", "Forward UDP 30000 [1].", sources, Timings(), quote=quote)
    recorded = replay(answer, quote)

    def ask(self, question, mode="rag", options=None, *, stop=None):
        if MODES[mode].retrieves:
            yield from recorded(self, question, mode, options, stop=stop)
            return
        yield SourcesFound([], None)
        yield TokenReceived("No sources here.")
        yield AnswerFinished(Answer(question, mode, "No sources here.", [], Timings()))

    monkeypatch.setattr(Engine, "ask", ask)
    window = open_window(tmp_path / "data")
    window.resize(1700, 900)
    view = window.compare
    window.tabs.setCurrentWidget(view)
    view.question.setPlainText(QUESTION)
    with qtbot.waitSignal(view.comparison_finished, timeout=30_000):
        view.compare()
    rag, base = view.columns["rag"], view.columns["base"]
    assert rag.quote_block.isVisibleTo(window) and not base.quote_block.isVisibleTo(window)
    assert shown(rag.quote_block.text) == (
        "“You should forward the following ports for Minetest: UDP 30000”"
    )
    assert rag.quote_block.y() < rag.body.y()  # the quote first, then the model's answer
    with qtbot.waitSignal(view.source_opened, timeout=5_000):
        qtbot.mouseClick(rag.quote_block, Qt.MouseButton.LeftButton)
    reader = window.reader
    assert reader.isVisible()
    selections = reader.text_view.extraSelections()
    assert selections[-1].format.background().color() == QUOTE_HIGHLIGHT
    assert selections[-1].cursor.selectedText().startswith("You should forward")
    qtbot.wait(300)
    window.compare.grab().save(str(tmp_path / "compare.png"))
