"""The reader: a cited PDF at its page (QtPdf), or a text document at the passage.

The system viewer is always one click away, and the fallback when QtPdf cannot open a file.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import (
    QEvent,
    QObject,
    QPointF,
    QRectF,
    Qt,
    QTimer,
    QUrl,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QColor,
    QDesktopServices,
    QGuiApplication,
    QKeySequence,
    QPainter,
    QPaintEvent,
    QPolygonF,
    QResizeEvent,
    QShortcut,
    QTextCharFormat,
    QTextCursor,
    QTransform,
    QWheelEvent,
)
from PySide6.QtPdf import QPdfDocument
from PySide6.QtPdfWidgets import QPdfView
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from engine.ingest.loaders import load
from engine.ingest.office import OFFICE_SUFFIXES
from engine.reader.rank import Quote
from engine.types import SearchResult, UserError
from ui.offline_text import OfflineTextBrowser
from ui.sources import QuotedSource, location

MAX_TEXT_BYTES = 4_000_000
HIGHLIGHT = QColor("#fde68a")
QUOTE_HIGHLIGHT = QColor("#fdba74")  # the quoted sentence in a text document, over the passage
MARK = QColor(250, 204, 21, 110)  # the cited passage over a PDF page: translucent amber
QUOTE_MARK = QColor(234, 88, 12, 90)  # the quoted sentence, over the passage: orange
ZOOM_STEP = 1.2
SETTLE_MS = 400  # after opening, the pages' layout settles: keep the mark in view till then
ZOOM_RANGE = (0.25, 6.0)


class PassagePdfView(QPdfView):
    """A QPdfView that marks the cited passage (and, over it in its own colour, the
    quoted sentence): every line of it, from the PDF's own character boxes, at any zoom
    and scroll position.

    QPdfView does not say where it put each page; `page_rects` works it out from the
    properties it exposes, as Qt's QPdfViewPrivate::calculateDocumentLayout does: pages
    stacked below each other with `pageSpacing`, centred, inside `documentMargins`, sized
    by the zoom mode.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.marks: dict[int, list[QPolygonF]] = {}  # page -> polygons in PDF points
        self.quote_marks: dict[int, list[QPolygonF]] = {}  # the quoted sentence's lines

    def set_marks(
        self, marks: dict[int, list[QPolygonF]], quote: dict[int, list[QPolygonF]] | None = None
    ) -> None:
        self.marks = marks
        self.quote_marks = quote or {}
        self.viewport().update()

    def page_rects(self) -> dict[int, QRectF]:
        """Each page's rectangle in document coordinates (viewport + scroll offsets)."""
        document = self.document()
        if document is None or document.status() != QPdfDocument.Status.Ready:
            return {}
        screen = QGuiApplication.primaryScreen()
        resolution = (screen.logicalDotsPerInch() if screen else 72.0) / 72.0
        margins, viewport = self.documentMargins(), self.viewport().size()
        sizes = {}
        for page in range(document.pageCount()):
            points = document.pagePointSize(page)
            # Rounded as Qt rounds (QSizeF::toSize, QSize *= factor): truncating instead
            # puts the marks a pixel off per page, a line or two by page 20.
            width, height = (
                _qround(points.width() * resolution),
                _qround(points.height() * resolution),
            )
            if self.zoomMode() == QPdfView.ZoomMode.Custom:
                zoom = resolution * self.zoomFactor()
                width, height = _qround(points.width() * zoom), _qround(points.height() * zoom)
            elif self.zoomMode() == QPdfView.ZoomMode.FitToWidth and width > 0:
                factor = (viewport.width() - margins.left() - margins.right()) / width
                width, height = _qround(width * factor), _qround(height * factor)
            sizes[page] = (width, height)
        total = max((w for w, _ in sizes.values()), default=0) + margins.left() + margins.right()
        rects, top = {}, margins.top()
        for page, (width, height) in sizes.items():
            left = (max(total, viewport.width()) - width) // 2
            rects[page] = QRectF(left, top, width, height)
            top += height + self.pageSpacing()
        return rects

    def mark_top(self, page: int, quote: bool = False) -> float | None:
        """Document y of the first marked line on `page` (of the quote's, with `quote`),
        to scroll it into view."""
        rect = self.page_rects().get(page)
        polygons = (self.quote_marks if quote else self.marks).get(page)
        document = self.document()
        if rect is None or not polygons or document is None:
            return None
        scale = rect.width() / max(1.0, document.pagePointSize(page).width())
        return rect.top() + min(p.boundingRect().top() for p in polygons) * scale

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        super().paintEvent(event)
        if not self.marks and not self.quote_marks or self.document() is None:
            return
        painter = QPainter(self.viewport())
        painter.translate(-self.horizontalScrollBar().value(), -self.verticalScrollBar().value())
        painter.setPen(Qt.PenStyle.NoPen)
        rects = self.page_rects()
        self._paint(painter, rects, self.marks, MARK)
        self._paint(painter, rects, self.quote_marks, QUOTE_MARK)  # over the passage
        painter.end()

    def _paint(
        self,
        painter: QPainter,
        rects: dict[int, QRectF],
        marks: dict[int, list[QPolygonF]],
        colour: QColor,
    ) -> None:
        document = self.document()
        painter.setBrush(colour)
        for page, polygons in marks.items():
            rect = rects.get(page)
            if rect is None:
                continue
            scale = rect.width() / max(1.0, document.pagePointSize(page).width())
            to_view = QTransform().translate(rect.left(), rect.top()).scale(scale, scale)
            for polygon in polygons:
                painter.drawPolygon(to_view.map(polygon))


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


class ReaderPanel(QWidget):
    """Shows one source. Signals: closed(), failed(str)."""

    closed = Signal()
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source: SearchResult | None = None
        self.pdf = QPdfDocument(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._toolbar())
        self.stack = QStackedWidget(self)
        self.pdf_view = PassagePdfView(self.stack)
        self.pdf_view.setDocument(self.pdf)
        self.pdf_view.setPageMode(QPdfView.PageMode.MultiPage)
        self.pdf_view.setZoomMode(QPdfView.ZoomMode.FitToWidth)
        self.pdf_view.viewport().installEventFilter(self)
        self._target = (0, False)  # the page and whether the quote (not the passage) is shown
        self._settling = QTimer(self, singleShot=True, interval=SETTLE_MS)
        self.pdf_view.verticalScrollBar().rangeChanged.connect(self._on_range_changed)
        self.text_view = OfflineTextBrowser(self.stack)  # loads no image a page names
        self.text_view.setOpenExternalLinks(False)
        self.stack.addWidget(self.pdf_view)
        self.stack.addWidget(self.text_view)
        layout.addWidget(self.stack, 1)
        for keys, slot in (
            ((QKeySequence.StandardKey.ZoomIn, "Ctrl+="), self.zoom_in),
            ((QKeySequence.StandardKey.ZoomOut,), self.zoom_out),
            (("Ctrl+0",), self.fit_width),
        ):
            for key in keys:
                shortcut = QShortcut(QKeySequence(key), self)
                shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                shortcut.activated.connect(slot)

    # -- zoom ------------------------------------------------------------------------------

    def zoom(self) -> float:
        """The current zoom as a factor of the page's size at 100%."""
        view = self.pdf_view
        if view.zoomMode() == QPdfView.ZoomMode.Custom:
            return view.zoomFactor()
        rects = view.page_rects()
        page = self.current_page()
        if page not in rects or self.pdf.pageCount() == 0:
            return 1.0
        screen = QGuiApplication.primaryScreen()
        resolution = (screen.logicalDotsPerInch() if screen else 72.0) / 72.0
        return rects[page].width() / (self.pdf.pagePointSize(page).width() * resolution)

    def set_zoom(self, factor: float) -> None:
        if self.stack.currentWidget() is self.text_view:
            return
        page = self.current_page()
        factor = min(max(factor, ZOOM_RANGE[0]), ZOOM_RANGE[1])
        self.pdf_view.setZoomMode(QPdfView.ZoomMode.Custom)
        self.pdf_view.setZoomFactor(factor)
        self.go_to_page(page)
        self._show_zoom()

    @Slot()
    def zoom_in(self) -> None:
        if self.stack.currentWidget() is self.text_view:
            self.text_view.zoomIn(1)
        else:
            self.set_zoom(self.zoom() * ZOOM_STEP)

    @Slot()
    def zoom_out(self) -> None:
        if self.stack.currentWidget() is self.text_view:
            self.text_view.zoomOut(1)
        else:
            self.set_zoom(self.zoom() / ZOOM_STEP)

    @Slot()
    def fit_width(self) -> None:
        page = self.current_page()
        self.pdf_view.setZoomMode(QPdfView.ZoomMode.FitToWidth)
        self.go_to_page(page)
        QTimer.singleShot(0, self._show_zoom)

    def _show_zoom(self) -> None:
        fit = self.pdf_view.zoomMode() == QPdfView.ZoomMode.FitToWidth
        self.zoom_label.setText(f"{round(self.zoom() * 100)}%" + (" (fit)" if fit else ""))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        """Ctrl+wheel over the page zooms, as in every reader."""
        if (
            watched is self.pdf_view.viewport()
            and event.type() == QEvent.Type.Wheel
            and isinstance(event, QWheelEvent)
            and event.modifiers() & Qt.KeyboardModifier.ControlModifier
        ):
            (self.zoom_in if event.angleDelta().y() > 0 else self.zoom_out)()
            return True
        return super().eventFilter(watched, event)

    def _toolbar(self) -> QWidget:
        bar = QWidget(self)
        bar.setObjectName("readerBar")
        rows = QVBoxLayout(bar)
        rows.setContentsMargins(8, 4, 8, 4)
        rows.setSpacing(2)
        top, row = QHBoxLayout(), QHBoxLayout()  # the document's name gets a line of its own
        rows.addLayout(top)
        rows.addLayout(row)
        self.title = ElidedLabel(bar)
        self.title.setObjectName("readerTitle")
        self.title.setMinimumWidth(60)  # a long file name must not widen the window
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        top.addWidget(self.title, 1)
        self.page_label = QLabel("", bar)
        self.page_label.setObjectName("muted")
        row.addWidget(self.page_label)
        row.addStretch(1)
        self.prev_button = QPushButton("◀", bar)
        self.prev_button.setToolTip("Previous page")
        self.prev_button.clicked.connect(lambda: self.go_to_page(self.current_page() - 1))
        self.next_button = QPushButton("▶", bar)
        self.next_button.setToolTip("Next page")
        self.next_button.clicked.connect(lambda: self.go_to_page(self.current_page() + 1))
        self.zoom_out_button = QPushButton("−", bar)
        self.zoom_out_button.setToolTip("Zoom out (Ctrl+minus, Ctrl+wheel)")
        self.zoom_out_button.clicked.connect(self.zoom_out)
        self.zoom_label = QLabel("", bar)
        self.zoom_label.setObjectName("muted")
        self.zoom_in_button = QPushButton("+", bar)
        self.zoom_in_button.setToolTip("Zoom in (Ctrl+plus, Ctrl+wheel)")
        self.zoom_in_button.clicked.connect(self.zoom_in)
        fit = QPushButton("Fit", bar)
        fit.setToolTip("Fit the page to the width (Ctrl+0)")
        fit.clicked.connect(self.fit_width)
        for widget in (self.zoom_out_button, self.zoom_label, self.zoom_in_button, fit):
            row.addWidget(widget)
        external = QPushButton("System viewer", bar)
        external.setToolTip("Open the document in the system's viewer")
        external.clicked.connect(self.open_external)
        close = QPushButton("✕", bar)
        close.setToolTip("Close the reader")
        close.clicked.connect(self.closed)
        for button in (
            self.prev_button,
            self.next_button,
            self.zoom_out_button,
            self.zoom_in_button,
            close,
        ):
            button.setFixedWidth(34)
        for widget in (self.prev_button, self.next_button, external):
            row.addWidget(widget)
        top.addWidget(close)
        return bar

    def open_source(self, source: SearchResult) -> bool:
        """Show `source`: a PDF at its page, a text file at its passage, with the quoted
        sentence marked when it holds the answer's quote. False on failure."""
        self.source = source
        path = Path(source.path)
        if not path.is_file():
            self.failed.emit(f"{path} is gone: it was moved or deleted since it was indexed.")
            return False
        if path.suffix.lower() == ".pdf":
            return self._open_pdf(path, source)
        return self._open_text(path, source)

    def _open_pdf(self, path: Path, source: SearchResult) -> bool:
        if self.pdf.status() != QPdfDocument.Status.Ready or self._loaded != path:
            self.pdf.close()
            error = self.pdf.load(str(path))
            if error != QPdfDocument.Error.None_:
                self.failed.emit(f"{path.name}: the built-in viewer cannot open it ({error.name}).")
                return self.open_external()
            self._loaded = path
        self.stack.setCurrentWidget(self.pdf_view)
        page = (source.page or 1) - 1
        text = self.pdf.getAllText(page).text() if 0 <= page < self.pdf.pageCount() else ""
        span = passage_span(text, source.text)
        quote = _quote_of(source)
        within = passage_span(text, quote.text, span[0] if span else 0) if quote else None
        self.pdf_view.set_marks(self._marks(page, span), self._marks(page, within))
        self.go_to_page(page)
        at_quote = within is not None and _at_quote(source)
        # A view that was hidden has no geometry yet: jump again once it is laid out.
        self._target = (page, at_quote)
        self._settling.start()
        QTimer.singleShot(0, lambda: self._show_passage(page, at_quote))
        return True

    def _marks(self, page: int, span: tuple[int, int] | None) -> dict[int, list[QPolygonF]]:
        """The lines of `span` of the page's text, as the PDF's own text boxes (in points)."""
        if span is None:
            return {}
        selection = self.pdf.getSelectionAtIndex(page, *span)
        return {page: list(selection.bounds())} if selection.isValid() else {}

    @Slot(int, int)
    def _on_range_changed(self, _low: int, _high: int) -> None:
        """The pages were laid out again (the view's first show, its scroll bar coming):
        shortly after opening, scroll back to the mark."""
        if self._settling.isActive():
            self._show_passage(*self._target)

    def _show_passage(self, page: int, at_quote: bool = False) -> None:
        """The page, scrolled so the passage's (or the quote's) first line is near the top."""
        self.go_to_page(page)
        top = self.pdf_view.mark_top(page, at_quote)
        if top is not None:
            self.pdf_view.verticalScrollBar().setValue(max(0, int(top) - 48))
        self._show_zoom()

    _loaded: Path | None = None

    def _open_text(self, path: Path, source: SearchResult) -> bool:
        try:
            raw = path.read_bytes()[:MAX_TEXT_BYTES].decode("utf-8", errors="replace")
        except OSError as exc:
            self.failed.emit(f"{path.name}: {exc.strerror or exc}")
            return False
        self._loaded = None
        suffix = path.suffix.lower()
        if suffix in OFFICE_SUFFIXES:  # a zip file: show the text Quire read from it
            raw = _as_markdown(path)
            suffix = ".md"
        if suffix in (".html", ".htm"):
            self.text_view.setHtml(raw)
        elif suffix in (".md", ".markdown"):
            self.text_view.setMarkdown(raw)
        else:
            self.text_view.setPlainText(raw)
        self.stack.setCurrentWidget(self.text_view)
        self._show_title(source, pages=0)
        passage = self._find(source.text)
        quote = _quote_of(source)
        after = passage.selectionStart() if passage is not None else 0
        sentence = self._find(quote.text, after) if quote is not None else None
        marks = ((passage, HIGHLIGHT), (sentence, QUOTE_HIGHLIGHT))  # the quote on top
        self.text_view.setExtraSelections(
            [_selection(found, colour) for found, colour in marks if found is not None]
        )
        self._scroll_to(sentence if sentence is not None and _at_quote(source) else passage)
        return True

    def _find(self, text: str, after: int = 0) -> QTextCursor | None:
        """`text` (a passage or the quote) in the text view, from position `after` on.

        It is matched in the document's raw text, whose positions are the cursor's:
        QTextDocument.find stops at the end of a paragraph, and a passage (or a sentence
        that leads to a list) often runs across several.
        """
        document = self.text_view.document()
        span = passage_span(document.toRawText(), text, after)
        if span is None:
            return None
        cursor = QTextCursor(document)
        cursor.setPosition(span[0])
        cursor.setPosition(span[0] + span[1], QTextCursor.MoveMode.KeepAnchor)
        return cursor

    def _scroll_to(self, found: QTextCursor | None) -> None:
        """Scroll the text view to show `found` whole where it fits, its start first."""
        if found is None:
            return
        view = self.text_view
        for position in (found.selectionEnd(), found.selectionStart()):
            cursor = QTextCursor(view.document())
            cursor.setPosition(position)
            view.setTextCursor(cursor)
            view.ensureCursorVisible()

    def current_page(self) -> int:
        return self.pdf_view.pageNavigator().currentPage()

    def go_to_page(self, page: int) -> None:
        count = self.pdf.pageCount()
        if count <= 0:
            return
        page = max(0, min(page, count - 1))
        self.pdf_view.pageNavigator().jump(page, QPointF(), self.pdf_view.zoomFactor())
        if self.source is not None:
            self._show_title(self.source, pages=count, page=page + 1)

    def _show_title(self, source: SearchResult, pages: int, page: int | None = None) -> None:
        self.title.set_full_text(source.document)
        self.setWindowTitle(source.document)
        self.title.setToolTip(f"{source.document}\n{source.path}")
        self.page_label.setText(f"page {page} of {pages}" if pages else location(source))
        for button in (self.prev_button, self.next_button):
            button.setVisible(bool(pages))

    @Slot()
    def open_external(self) -> bool:
        """Hand the document to the system viewer."""
        if self.source is None:
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(self.source.path))


class ElidedLabel(QLabel):
    """A one-line bold label that elides its text in the middle when it does not fit."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.full_text = ""
        font = self.font()
        font.setBold(True)
        self.setFont(font)
        self.setTextFormat(Qt.TextFormat.PlainText)

    def set_full_text(self, text: str) -> None:
        self.full_text = text
        self._elide()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        metrics = self.fontMetrics()
        mode = Qt.TextElideMode.ElideMiddle
        self.setText(metrics.elidedText(self.full_text, mode, max(self.width(), 20)))


def _qround(value: float) -> int:
    """Qt's qRound: halves away from zero (Python's round() goes to the even one)."""
    return int(value + 0.5) if value >= 0 else int(value - 0.5)


def _quote_of(source: SearchResult) -> Quote | None:
    return source.quote if isinstance(source, QuotedSource) else None


def _at_quote(source: SearchResult) -> bool:
    return isinstance(source, QuotedSource) and source.at_quote


def _as_markdown(path: Path) -> str:
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


def _selection(cursor: QTextCursor, colour: QColor) -> QTextEdit.ExtraSelection:
    """An extra selection that paints `cursor`'s text's background in `colour`."""
    selection = QTextEdit.ExtraSelection()
    selection.cursor = cursor
    fmt = QTextCharFormat()
    fmt.setBackground(colour)
    selection.format = fmt
    return selection
