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
    QRegularExpression,
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
    QTextBrowser,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from engine.types import SearchResult
from ui.sources import location

MAX_TEXT_BYTES = 4_000_000
HIGHLIGHT = QColor("#fde68a")
MARK = QColor(250, 204, 21, 110)  # the cited passage over a PDF page: translucent amber
ZOOM_STEP = 1.2
ZOOM_RANGE = (0.25, 6.0)


class PassagePdfView(QPdfView):
    """A QPdfView that marks the cited passage: every line of it, from the PDF's own
    character boxes, at any zoom and scroll position.

    QPdfView does not say where it put each page; `page_rects` works it out from the
    properties it exposes, as Qt's QPdfViewPrivate::calculateDocumentLayout does: pages
    stacked below each other with `pageSpacing`, centred, inside `documentMargins`, sized
    by the zoom mode.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.marks: dict[int, list[QPolygonF]] = {}  # page -> polygons in PDF points

    def set_marks(self, marks: dict[int, list[QPolygonF]]) -> None:
        self.marks = marks
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
            width, height = int(points.width() * resolution), int(points.height() * resolution)
            if self.zoomMode() == QPdfView.ZoomMode.Custom:
                zoom = resolution * self.zoomFactor()
                width, height = int(points.width() * zoom), int(points.height() * zoom)
            elif self.zoomMode() == QPdfView.ZoomMode.FitToWidth and width > 0:
                factor = (viewport.width() - margins.left() - margins.right()) / width
                width, height = int(width * factor), int(height * factor)
            sizes[page] = (width, height)
        total = max((w for w, _ in sizes.values()), default=0) + margins.left() + margins.right()
        rects, top = {}, margins.top()
        for page, (width, height) in sizes.items():
            left = (max(total, viewport.width()) - width) // 2
            rects[page] = QRectF(left, top, width, height)
            top += height + self.pageSpacing()
        return rects

    def mark_top(self, page: int) -> float | None:
        """Document y of the first marked line on `page` (to scroll it into view)."""
        rect = self.page_rects().get(page)
        polygons = self.marks.get(page)
        document = self.document()
        if rect is None or not polygons or document is None:
            return None
        scale = rect.width() / max(1.0, document.pagePointSize(page).width())
        return rect.top() + min(p.boundingRect().top() for p in polygons) * scale

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        super().paintEvent(event)
        document = self.document()
        if not self.marks or document is None:
            return
        painter = QPainter(self.viewport())
        painter.translate(-self.horizontalScrollBar().value(), -self.verticalScrollBar().value())
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(MARK)
        rects = self.page_rects()
        for page, polygons in self.marks.items():
            rect = rects.get(page)
            if rect is None:
                continue
            scale = rect.width() / max(1.0, document.pagePointSize(page).width())
            to_view = QTransform().translate(rect.left(), rect.top()).scale(scale, scale)
            for polygon in polygons:
                painter.drawPolygon(to_view.map(polygon))
        painter.end()


def passage_span(page_text: str, passage: str) -> tuple[int, int] | None:
    """(start, length) of `passage` in a page's text: its first words to its last words,
    whatever the spacing and hyphenation between them; None when it is not there."""
    words = re.findall(r"\w+", passage)
    if not words:
        return None
    gap = r"[\W_]+"
    head = re.compile(gap.join(map(re.escape, words[:6])), re.IGNORECASE)
    start = head.search(page_text)
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
        self.text_view = QTextBrowser(self.stack)
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
        """Show `source`: a PDF at its page, a text file at its passage. False on failure."""
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
        self.pdf_view.set_marks(self._passage_marks(page, source.text))
        self.go_to_page(page)
        # A view that was hidden has no geometry yet: jump again once it is laid out.
        QTimer.singleShot(0, lambda: self._show_passage(page))
        return True

    def _passage_marks(self, page: int, passage: str) -> dict[int, list[QPolygonF]]:
        """The passage's lines on its page, as the PDF's own text boxes (in points)."""
        if not 0 <= page < self.pdf.pageCount():
            return {}
        span = passage_span(self.pdf.getAllText(page).text(), passage)
        if span is None:
            return {}
        selection = self.pdf.getSelectionAtIndex(page, *span)
        return {page: list(selection.bounds())} if selection.isValid() else {}

    def _show_passage(self, page: int) -> None:
        """The page, scrolled so the passage's first line is near the top."""
        self.go_to_page(page)
        top = self.pdf_view.mark_top(page)
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
        if suffix in (".html", ".htm"):
            self.text_view.setHtml(raw)
        elif suffix in (".md", ".markdown"):
            self.text_view.setMarkdown(raw)
        else:
            self.text_view.setPlainText(raw)
        self.stack.setCurrentWidget(self.text_view)
        self._show_title(source, pages=0)
        self._highlight_passage(source.text)
        return True

    def _highlight_passage(self, passage: str) -> None:
        """Mark the passage in the text view and scroll to it (first words, any spacing)."""
        words = re.findall(r"\w+", passage)[:8]
        if not words:
            return
        flags = QRegularExpression.PatternOption.CaseInsensitiveOption
        pattern = QRegularExpression(r"\W+".join(map(re.escape, words)), flags)
        found = self.text_view.document().find(pattern)
        if found.isNull():
            return
        end = self.text_view.document().find(_last_words(passage), found.position())
        if not end.isNull():
            found.setPosition(end.position(), QTextCursor.MoveMode.KeepAnchor)
        selection = QTextEdit.ExtraSelection()
        selection.cursor = found
        fmt = QTextCharFormat()
        fmt.setBackground(HIGHLIGHT)
        selection.format = fmt
        self.text_view.setExtraSelections([selection])
        self.text_view.setTextCursor(found)
        self.text_view.ensureCursorVisible()

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


def _last_words(text: str) -> str:
    return " ".join(text.split()[-3:])
