"""The window's fit and keyboard (issue 24): an HTML source never widens the window, the
question box has the keyboard, the thumbs are the app's own icons, the Edit answer dialog
wraps, the Models window's "Why" is whole, and a session prints no "Negative sizes"."""
# ruff: noqa: F811 - the window fixtures are imported from test_gui_app

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QRect, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from engine.types import SearchResult
from tests.factory import write_pdf
from tests.ui.test_gui_app import app, open_window  # noqa: F401

pytestmark = pytest.mark.gui

ANSWER = (
    "Open the bleed screw until water comes out, then close it and run the pump for two "
    "minutes; prime it again after a long stop. "
) * 4


def wide_page(tmp_path):
    page = tmp_path / "kettle.html"
    page.write_text(
        "<html><body><h1>Kettle</h1><p>" + "x" * 5000 + "</p><table><tr>"
        + "".join(f"<td>column{i}_{'y' * 30}</td>" for i in range(60))
        + "</tr></table><p>Descale the kettle with vinegar.</p></body></html>",
        encoding="utf-8",
    )  # fmt: skip
    section = "Kettle › Care and cleaning › " + "A very long section heading " * 8
    return SearchResult(1, page.name, str(page), None, section, 0.9, "Descale the kettle")


def stored_answer(data_dir) -> int:
    """A conversation with one answer, stored as the chat stores it."""
    from engine.history import History, Message

    history = History(data_dir)
    conversation = history.create("Pumps")
    history.add(conversation, Message("user", "How do I prime the pump?"))
    prompt = [{"role": "user", "content": "How do I prime the pump?"}]
    history.add(conversation, Message("assistant", ANSWER, mode="rag", prompt=prompt))
    history.close()
    return conversation


def test_an_html_source_does_not_widen_the_window(open_window, tmp_path):
    window = open_window(tmp_path / "data")
    window.resize(1480, 880)
    QApplication.processEvents()
    window.open_source(wide_page(tmp_path))
    QApplication.processEvents()
    assert window.reader.isVisible()
    assert window.width() == 1480  # it grew to 1680 before
    assert window.minimumSizeHint().width() <= 1280  # and can shrink to 1280
    window.resize(1280, 800)
    QApplication.processEvents()
    assert window.width() == 1280


def test_the_question_box_has_the_keyboard_at_start_and_after_ctrl_1(open_window, tmp_path):
    window = open_window(tmp_path / "data")
    question = window.chat.input
    assert QApplication.focusWidget() is question
    QTest.keyClicks(QApplication.focusWidget(), "pump")
    assert question.toPlainText() == "pump"
    assert window.collections.currentData() == "default"  # not "typed" into the collection
    QTest.keySequence(window, "Ctrl+2")
    assert window.tabs.currentWidget() is window.library
    QTest.keySequence(window, "Ctrl+1")
    assert window.tabs.currentWidget() is window.chat
    assert QApplication.focusWidget() is question
    window.collections.setFocus()  # a click on the Collection box, then a choice in it
    window.collections.activated.emit(window.collections.currentIndex())
    QTest.keyClicks(QApplication.focusWidget(), " priming")
    assert question.toPlainText() == "pump priming"


def test_feedback_shows_icons_and_the_edit_dialog_wraps(open_window, tmp_path, qtbot):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    conversation = stored_answer(data_dir)
    window = open_window(data_dir)
    window.chat.load_conversation(conversation)
    QApplication.processEvents()
    card = window.chat.items.itemAt(window.chat.items.count() - 2).widget()
    bar = card.feedback
    for button in (bar.up, bar.down):
        assert button.text() == ""  # no emoji, which needs an emoji font
        image = button.icon().pixmap(18, 18).toImage()
        inked = [
            (x, y) for x in range(18) for y in range(18) if image.pixelColor(x, y).alpha() > 128
        ]
        assert len(inked) > 20, "the shipped icon did not render"
    up, down = (b.icon().pixmap(18, 18).toImage() for b in (bar.up, bar.down))
    assert up != down
    dialog = bar.edit_dialog()
    qtbot.addWidget(dialog)
    dialog.show()
    QApplication.processEvents()
    assert dialog.width() >= 560 and dialog.height() >= 360
    editor = dialog.editor
    assert editor.toPlainText() == ANSWER
    assert editor.horizontalScrollBar().maximum() == 0  # wrapped, not one long line
    assert editor.document().firstBlock().layout().lineCount() >= 4
    dialog.editor.setPlainText("Prime it first.")
    assert dialog.text() == "Prime it first."


def test_the_models_window_shows_why_whole(open_window, tmp_path):
    window = open_window(tmp_path / "data")
    dialog = window.open_models()
    QApplication.processEvents()
    tree = dialog.offers
    metrics = tree.fontMetrics()
    right = tree.header().sectionViewportPosition(3) + tree.columnWidth(3)
    assert right <= tree.viewport().width()  # the column ends inside the list
    for row in range(tree.topLevelItemCount()):
        item = tree.topLevelItem(row)
        cell = tree.visualRect(tree.indexFromItem(item, 3))
        wrapped = metrics.boundingRect(
            QRect(0, 0, cell.width() - 8, 1000), Qt.TextFlag.TextWordWrap, item.text(3)
        )
        assert wrapped.height() <= cell.height(), item.text(3)  # every line of it shown
    dialog.close()


def test_a_window_session_prints_no_negative_sizes(open_window, tmp_path, qtlog):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    conversation = stored_answer(data_dir)
    pdf = write_pdf(tmp_path / "pump.pdf", [["Prime the pump before the first start."] * 30] * 3)
    window = open_window(data_dir)
    window.chat.load_conversation(conversation)
    window.open_source(SearchResult(1, pdf.name, str(pdf), 2, None, 0.9, "Prime the pump"))
    window.reader.zoom_in()
    window.reader.zoom_out()
    window.open_source(wide_page(tmp_path))
    for index in range(window.tabs.count()):
        window.tabs.setCurrentIndex(index)
        QApplication.processEvents()
    for width, height in ((700, 500), (1500, 900), (1280, 800)):
        window.resize(width, height)
        QApplication.processEvents()
    window.sidebar_action.trigger()
    window.close_reader()
    window.open_models().close()
    QApplication.processEvents()
    warnings = [r.message for r in qtlog.records if "Negative sizes" in r.message]
    assert warnings == []
