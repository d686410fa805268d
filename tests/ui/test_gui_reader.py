"""The reader on its own (issue 24): zoom keeps the reader's place and the marks on the
text, the page label stays true, and an HTML page neither widens what holds it nor
leaves itself when a link is clicked. Real QtPdf rendering of PDFs made in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, QUrl
from PySide6.QtGui import QImage, QWheelEvent
from PySide6.QtWidgets import QApplication

from engine.types import SearchResult
from tests.factory import write_pdf

pytestmark = pytest.mark.gui

CITED = [
    "The pump must be primed before the first start.",
    "Open the bleed screw until water comes out,",
    "then close it and run the pump for two minutes.",
]


@pytest.fixture
def reader(qtbot):
    from ui.pdf_view import ReaderPanel

    panel = ReaderPanel()
    qtbot.addWidget(panel)
    panel.resize(700, 800)
    panel.show()
    return panel


@pytest.fixture
def manual(tmp_path: Path) -> SearchResult:
    """A 67-page PDF citing three lines of page 47, as the issue's report had it."""
    filler = [f"Filler line {i} of the page, with some words." for i in range(40)]
    pages = [filler] * 46 + [filler[:20] + CITED + filler[:10]] + [filler] * 20
    pdf = write_pdf(tmp_path / "pump-manual.pdf", pages)
    return SearchResult(1, pdf.name, str(pdf), 47, None, 0.9, " ".join(CITED), 1, "default")


def settle(qtbot, reader) -> QImage:
    """Let the pages render at the current zoom; the viewport as painted."""
    view = reader.pdf_view
    qtbot.wait(300)
    qtbot.waitUntil(lambda: view.viewport().grab().toImage().pixelColor(5, 5).isValid())
    return view.viewport().grab().toImage()


def ink_rows(image: QImage, line: QRectF, pitch: float) -> tuple[int, int] | None:
    """The first and last pixel rows of the line of text (grey to black ink, not the
    amber or orange marks) that overlaps `line` most, looked for across its columns
    within a line's pitch above and below it."""
    top = max(0, int(line.top() - pitch))
    bottom = min(image.height(), int(line.bottom() + pitch))
    columns = range(max(0, int(line.left())), min(image.width(), int(line.right())), 2)
    rows = [
        y
        for y in range(top, bottom)
        if any(max(image.pixelColor(x, y).getRgb()[:3]) < 200 for x in columns)
    ]
    runs: list[list[int]] = []  # rows of ink, split where a blank row falls between lines
    for y in rows:
        if runs and y - runs[-1][-1] <= 1:
            runs[-1].append(y)
        else:
            runs.append([y])
    if not runs:
        return None

    def overlap(run: list[int]) -> float:
        return min(run[-1] + 1, line.bottom()) - max(run[0], line.top())

    best = max(runs, key=overlap)
    return best[0], best[-1]


def assert_marks_on_text(reader, image: QImage) -> None:
    """Every marked line in view lies on its line of text: the ink's middle within a
    quarter of the line's height of the mark's middle."""
    view = reader.pdf_view
    shown = [r for r in view.mark_rects() if QRectF(image.rect()).contains(r.center())]
    assert shown, f"no marked line in view at {reader.zoom_label.text()}"
    pitch = 14 * view.scale(next(iter(view.marks)))  # the PDFs' lines are 14 points apart
    for line in shown:
        ink = ink_rows(image, line, pitch)
        assert ink is not None, f"a mark over no text at {reader.zoom_label.text()}"
        middle = (ink[0] + ink[1] + 1) / 2
        assert abs(middle - line.center().y()) <= max(1.5, line.height() / 4), (
            reader.zoom_label.text(),
            ink,
            line,
        )


def open_settled(qtbot, reader, source: SearchResult) -> None:
    """Open `source` and wait for the pages' layout to settle (the scroll bar comes)."""
    from ui.pdf_view import SETTLE_MS

    assert reader.open_source(source)
    qtbot.waitUntil(lambda: reader.zoom_label.text().endswith("(fit)"), timeout=5_000)
    qtbot.wait(SETTLE_MS + 100)


def first_line(reader) -> QRectF:
    return min(reader.pdf_view.mark_rects(), key=lambda r: r.top())


def in_view(reader) -> bool:
    line, viewport = first_line(reader), reader.pdf_view.viewport().rect()
    return line.top() >= 0 and line.bottom() <= viewport.height() and line.left() >= 0


def test_zoom_keeps_the_cited_passage_in_view_marked_and_the_page_label_true(reader, manual, qtbot):
    open_settled(qtbot, reader, manual)
    assert reader.page_label.full_text == "page 47 of 67" and reader.current_page() == 46
    seen = []
    for button in [reader.zoom_in_button] * 3 + [reader.zoom_out_button] * 6:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        image = settle(qtbot, reader)
        seen.append(reader.zoom_label.text())
        assert in_view(reader), (reader.zoom_label.text(), first_line(reader))
        assert reader.page_label.full_text == "page 47 of 67", reader.zoom_label.text()
        assert_marks_on_text(reader, image)
    assert seen[2] == "146%" and seen[-1] == "49%"  # three steps in, six out, from 85%


def test_ctrl_wheel_zooms_about_the_cursor(reader, manual, qtbot):
    open_settled(qtbot, reader, manual)
    view = reader.pdf_view
    line = first_line(reader)
    at = QPointF(line.center().x(), line.center().y() + 60)  # a point under the cursor
    before = view.anchor(at)
    wheel = QWheelEvent(
        at, view.viewport().mapToGlobal(at), QPoint(0, 0), QPoint(0, 120),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.ControlModifier,
        Qt.ScrollPhase.NoScrollPhase, False,
    )  # fmt: skip
    QApplication.sendEvent(view.viewport(), wheel)
    settle(qtbot, reader)
    assert reader.zoom_label.text() == "102%"
    after = view.anchor(at)
    assert after[0] == before[0] == 46  # the same page under the cursor
    assert abs(after[1].y() - before[1].y()) < 1.5  # the same line (points), not page 39


def test_scrolling_and_the_page_buttons_keep_the_page_label_true(reader, manual, qtbot):
    open_settled(qtbot, reader, manual)
    view = reader.pdf_view
    view.verticalScrollBar().setValue(int(view.page_rects()[9].top()))
    assert reader.page_label.full_text == "page 10 of 67"
    qtbot.mouseClick(reader.next_button, Qt.MouseButton.LeftButton)
    assert reader.page_label.full_text == "page 11 of 67"
    assert view.page_rects()[10].top() == view.verticalScrollBar().value()
    reader.set_zoom(0.59)  # the zoom the issue saw the marks off the lines at
    qtbot.mouseClick(reader.prev_button, Qt.MouseButton.LeftButton)
    assert reader.page_label.full_text == "page 10 of 67"


def test_the_quote_and_the_passage_stay_on_their_lines_at_every_zoom(reader, tmp_path, qtbot):
    from engine.reader.rank import Quote
    from ui.sources import QuotedSource

    filler = [f"Filler line {i} of the page." for i in range(30)]
    pdf = write_pdf(tmp_path / "pump.pdf", [filler, filler[:12] + CITED + filler[:5], filler])
    text = " ".join(CITED)
    start = text.index("Open the bleed")
    source = SearchResult(1, pdf.name, str(pdf), 2, None, 0.9, text, 5, "default")
    quote = Quote(5, start, len(text), text[start:], 0.8, pdf.name, str(pdf), 2, None, 1)
    reader.open_source(QuotedSource.of(source, quote, at_quote=True))
    view = reader.pdf_view
    qtbot.waitUntil(lambda: bool(view.quote_marks.get(1)), timeout=5_000)
    for factor in (None, 0.59, 0.75, 1.3, 2.0):
        reader.set_zoom(factor)
        image = settle(qtbot, reader)
        assert_marks_on_text(reader, image)
        passage = {round(r.top()) for r in view.mark_rects()}
        quoted = sorted(round(r.top()) for r in view.mark_rects(quote=True))
        assert len(passage) == 3 and quoted == sorted(passage)[1:]  # its own two lines
        line = view.mark_rects(quote=True)[0]
        spot = image.pixelColor(int(line.left()) + 2, int(line.center().y()))
        if QRectF(image.rect()).contains(line.center()):
            assert spot.blue() < spot.red() - 60 and spot.green() < 200  # orange, over amber


WIDE = (
    "<html><body><h1 id='top'>Kettle</h1><p><a href='#care'>Care</a> · "
    "<a href='https://example.org/kettles'>Kettles online</a> · "
    "<a href='other.html'>Other page</a></p><p>" + "x" * 4000 + "</p><table><tr>"
    + "".join(f"<td>column{i}_{'y' * 30}</td>" for i in range(40))
    + "</tr></table>" + "<p>Filler paragraph.</p>" * 200
    + "<h2 id='care'>Care</h2><p>Descale the kettle with vinegar.</p></body></html>"
)  # fmt: skip


def test_an_html_page_moves_within_itself_and_shows_outside_links(reader, tmp_path, qtbot):
    page = tmp_path / "kettle.html"
    page.write_text(WIDE, encoding="utf-8")
    source = SearchResult(1, page.name, str(page), None, "Kettle › " + "Care " * 60, 0.9, "Kettle")
    assert reader.open_source(source)
    assert reader.minimumSizeHint().width() < 400  # a long section name, a wide table
    assert reader.sizeHint().width() < 800
    view = reader.text_view
    bar = view.verticalScrollBar()
    bar.setValue(0)
    text = view.toPlainText()
    view.anchorClicked.emit(QUrl("#care"))  # what a click on the link sends
    assert bar.value() > bar.maximum() // 2  # moved down to "Care", near the end
    assert view.toPlainText() == text and not reader.link_bar.isVisibleTo(reader)
    for url in ("https://example.org/kettles", "other.html"):
        view.anchorClicked.emit(QUrl(url))
        assert view.toPlainText() == text  # the page stays: nothing was loaded
        assert reader.link_bar.isVisibleTo(reader)
    assert reader.link.toLocalFile() == str(tmp_path / "other.html")
    assert "other.html" in reader.link_label.toolTip()
    view.anchorClicked.emit(QUrl(page.as_uri() + "#top"))  # its own file: within it
    assert bar.value() < 50  # back at the top
