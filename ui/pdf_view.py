"""The reader: a cited PDF at its page (QtPdf, `ui/pdf_page.py`), or a text document at
the passage (`ui/text_reader.py`), under a toolbar with the page, zoom and close.

The system viewer is always one click away, and the fallback when QtPdf cannot open a file.
Nothing in it widens the window: the title and the place elide, and a link the document
names outside itself is shown in a bar, opened only on a click there.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import (
    QDesktopServices,
    QKeySequence,
    QPolygonF,
    QResizeEvent,
    QShortcut,
    QWheelEvent,
)
from PySide6.QtPdf import QPdfDocument
from PySide6.QtPdfWidgets import QPdfView
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from engine.types import SearchResult
from ui.pdf_page import PassagePdfView
from ui.sources import QuotedSource, location
from ui.text_reader import HIGHLIGHT, QUOTE_HIGHLIGHT, DocumentBrowser, passage_span

__all__ = ["HIGHLIGHT", "QUOTE_HIGHLIGHT", "ElidedLabel", "ReaderPanel"]

ZOOM_STEP = 1.2
SETTLE_MS = 400  # after opening, the pages' layout settles: keep the mark in view till then
MARK_ABOVE = 48  # pixels of the page shown above the passage's first line


class ReaderPanel(QWidget):
    """Shows one source. Signals: closed(), failed(str)."""

    closed = Signal()
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source: SearchResult | None = None
        self._loaded: Path | None = None
        self.pdf = QPdfDocument(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._toolbar())
        self.stack = QStackedWidget(self)
        self.pdf_view = PassagePdfView(self.stack)
        self.pdf_view.setDocument(self.pdf)
        self.pdf_view.setPageMode(QPdfView.PageMode.MultiPage)
        self.pdf_view.setZoomMode(QPdfView.ZoomMode.FitToWidth)
        self.pdf_view.viewport().installEventFilter(self)
        self._target = (0, False)  # the page and whether the quote (not the passage) is shown
        self._settling = QTimer(self, singleShot=True, interval=SETTLE_MS)
        bar = self.pdf_view.verticalScrollBar()
        bar.rangeChanged.connect(self._on_range_changed)
        bar.valueChanged.connect(self._on_scrolled)
        self.text_view = DocumentBrowser(self.stack)  # loads no image a page names
        self.text_view.outside_link_clicked.connect(self._on_outside_link_clicked)
        self.stack.addWidget(self.pdf_view)
        self.stack.addWidget(self.text_view)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self._link_bar())
        self._shortcuts()

    def _shortcuts(self) -> None:
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
        return self.pdf_view.zoom() if self.pdf.pageCount() else 1.0

    def set_zoom(self, factor: float | None, at: QPointF | None = None) -> None:
        """Zoom the PDF to `factor` (None: fit the width) about `at` in the view (its
        centre by default): what was there stays there."""
        if self.stack.currentWidget() is self.text_view:
            return
        self._settling.stop()  # the reader's own choice from now on
        view = self.pdf_view
        seen = any(r.intersects(QRectF(view.viewport().rect())) for r in view.mark_rects())
        view.zoom_about(factor, at)
        self._after_zoom(seen)
        QTimer.singleShot(0, self, lambda: self._after_zoom(seen))  # the scroll bars came

    def _after_zoom(self, passage_seen: bool) -> None:
        """A passage that was in view stays in view: its first line is scrolled back in
        when zooming about the centre (or the cursor) pushed it out."""
        if passage_seen:
            self._keep_first_line_in_view()
        self._show_zoom()
        self._show_page()

    def _keep_first_line_in_view(self) -> None:
        view = self.pdf_view
        lines = view.mark_rects()
        if not lines:
            return
        first = min(lines, key=lambda r: (round(r.top()), r.left()))
        size = view.viewport().size()
        for bar, low, high, extent in (
            (view.verticalScrollBar(), first.top(), first.bottom(), size.height()),
            (view.horizontalScrollBar(), first.left(), first.left() + 1, size.width()),
        ):
            if low < 0 or high > extent:  # out of view: bring it in, a little from the edge
                bar.setValue(bar.value() + round(low - min(MARK_ABOVE, extent / 4)))

    @Slot()
    def zoom_in(self, at: QPointF | None = None) -> None:
        if self.stack.currentWidget() is self.text_view:
            self.text_view.zoomIn(1)
        else:
            self.set_zoom(self.zoom() * ZOOM_STEP, at)

    @Slot()
    def zoom_out(self, at: QPointF | None = None) -> None:
        if self.stack.currentWidget() is self.text_view:
            self.text_view.zoomOut(1)
        else:
            self.set_zoom(self.zoom() / ZOOM_STEP, at)

    @Slot()
    def fit_width(self) -> None:
        self.set_zoom(None)
        QTimer.singleShot(0, self, self._show_zoom)

    def _show_zoom(self) -> None:
        fit = self.pdf_view.zoomMode() == QPdfView.ZoomMode.FitToWidth
        self.zoom_label.setText(f"{round(self.zoom() * 100)}%" + (" (fit)" if fit else ""))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        """Ctrl+wheel over the page zooms about the cursor, as in every reader."""
        if (
            watched is self.pdf_view.viewport()
            and event.type() == QEvent.Type.Wheel
            and isinstance(event, QWheelEvent)
            and event.modifiers() & Qt.KeyboardModifier.ControlModifier
        ):
            if event.angleDelta().y() > 0:
                self.zoom_in(event.position())
            elif event.angleDelta().y() < 0:
                self.zoom_out(event.position())
            return True
        return super().eventFilter(watched, event)

    # -- toolbar ---------------------------------------------------------------------------

    def _toolbar(self) -> QWidget:
        bar = QWidget(self)
        bar.setObjectName("readerBar")
        rows = QVBoxLayout(bar)
        rows.setContentsMargins(8, 4, 8, 4)
        rows.setSpacing(2)
        # The document's name and the place each get a line of their own (beside the
        # buttons, a narrow reader elided the place to "p…").
        top, place, row = QHBoxLayout(), QHBoxLayout(), QHBoxLayout()
        for layout in (top, place, row):
            rows.addLayout(layout)
        self.title = ElidedLabel(bar, mode=Qt.TextElideMode.ElideMiddle, bold=True)
        self.title.setObjectName("readerTitle")
        top.addWidget(self.title, 1)
        self.page_label = ElidedLabel(bar)  # "§ a long section" must not widen the window
        self.page_label.setObjectName("muted")
        self.page_label.setMinimumWidth(24)  # the reader's narrowest is the buttons' width
        place.addWidget(self.page_label, 1)
        row.addStretch(1)
        self.prev_button = self._button(bar, "◀", "Previous page", self.previous_page)
        self.next_button = self._button(bar, "▶", "Next page", self.next_page)
        self.zoom_out_button = self._button(
            bar, "−", "Zoom out (Ctrl+minus, Ctrl+wheel)", self.zoom_out
        )
        self.zoom_label = QLabel("", bar)
        self.zoom_label.setObjectName("muted")
        self.zoom_in_button = self._button(
            bar, "+", "Zoom in (Ctrl+plus, Ctrl+wheel)", self.zoom_in
        )
        fit = self._button(bar, "Fit", "Fit the page to the width (Ctrl+0)", self.fit_width)
        for widget in (self.zoom_out_button, self.zoom_label, self.zoom_in_button, fit):
            row.addWidget(widget)
        external = self._button(bar, "System viewer", "Open the document in the system's viewer")
        external.clicked.connect(self.open_external)
        for widget in (self.prev_button, self.next_button, external):
            row.addWidget(widget)
        top.addWidget(self._button(bar, "✕", "Close the reader", self.closed.emit))
        return bar

    def _button(self, bar: QWidget, text: str, tip: str, slot: object = None) -> QPushButton:
        button = QPushButton(text, bar)
        button.setToolTip(tip)
        if slot is not None:
            button.clicked.connect(lambda: slot())  # type: ignore[operator]
        if len(text) == 1:  # a symbol; a word ("Fit") keeps the width it needs
            button.setFixedWidth(34)
        return button

    def _link_bar(self) -> QWidget:
        """Where a link to outside the document is shown, with the one way to follow it."""
        self.link_bar = QFrame(self)
        self.link_bar.setObjectName("linkBar")
        row = QHBoxLayout(self.link_bar)
        row.setContentsMargins(8, 4, 8, 4)
        self.link_label = ElidedLabel(self.link_bar)
        self.link_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.link_open = QPushButton("Open in browser", self.link_bar)
        self.link_open.setToolTip("Open the link in the system's browser or viewer")
        self.link_open.clicked.connect(self._on_link_open_clicked)
        dismiss = QPushButton("✕", self.link_bar)
        dismiss.setFixedWidth(34)
        dismiss.setToolTip("Stay in the document")
        dismiss.clicked.connect(self.link_bar.hide)
        row.addWidget(self.link_label, 1)
        row.addWidget(self.link_open)
        row.addWidget(dismiss)
        self.link_bar.hide()
        self.link = QUrl()
        return self.link_bar

    @Slot(QUrl)
    def _on_outside_link_clicked(self, url: QUrl) -> None:
        """A link out of the document: say where it goes; follow it only on request."""
        self.link = url
        shown = url.toLocalFile() if url.isLocalFile() else url.toDisplayString()
        self.link_label.set_full_text(f"Link to {shown} (not opened)")
        self.link_label.setToolTip(shown)
        self.link_bar.show()

    @Slot()
    def _on_link_open_clicked(self) -> None:
        if QDesktopServices.openUrl(self.link):
            self.link_bar.hide()
        else:
            self.failed.emit(f"No program here opens {self.link.toDisplayString()}.")

    # -- opening ---------------------------------------------------------------------------

    def open_source(self, source: SearchResult) -> bool:
        """Show `source`: a PDF at its page, a text file at its passage, with the quoted
        sentence marked when it holds the answer's quote. False on failure."""
        self.source = source
        self.link_bar.hide()
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
        quote = source.quote if isinstance(source, QuotedSource) else None
        within = passage_span(text, quote.text, span[0] if span else 0) if quote else None
        self.pdf_view.set_marks(self._marks(page, span), self._marks(page, within))
        at_quote = within is not None and isinstance(source, QuotedSource) and source.at_quote
        # A view that was hidden has no geometry yet: jump again once it is laid out.
        self._target = (page, at_quote)
        self._show_passage(page, at_quote)
        self._settling.start()
        QTimer.singleShot(0, self, lambda: self._show_passage(page, at_quote))
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
        self._show_page()

    @Slot(int)
    def _on_scrolled(self, _value: int) -> None:
        self._show_page()

    def _show_passage(self, page: int, at_quote: bool = False) -> None:
        """The page, scrolled so the passage's (or the quote's) first line is near the top."""
        view = self.pdf_view
        top = view.mark_top(page, at_quote)
        rect = view.page_rects().get(page)
        if top is not None and rect is not None:
            view.scroll_to_page(page, (top - rect.top()) / view.scale(page), MARK_ABOVE)
        else:
            self.go_to_page(page)
        self._show_zoom()
        self._show_page()

    def _open_text(self, path: Path, source: SearchResult) -> bool:
        self._loaded = None
        error = self.text_view.show_document(path, source)
        if error is not None:
            self.failed.emit(error)
            return False
        self.stack.setCurrentWidget(self.text_view)
        self._show_title(source)
        self.zoom_label.setText("")  # the buttons change the text's size, not a page's
        return True

    # -- pages -----------------------------------------------------------------------------

    def current_page(self) -> int:
        """The page in view (0-based): the one crossing 40% of the view's height."""
        return self.pdf_view.visible_page()

    def go_to_page(self, page: int) -> None:
        count = self.pdf.pageCount()
        if count > 0:
            self.pdf_view.scroll_to_page(max(0, min(page, count - 1)))
            self._show_page()

    @Slot()
    def previous_page(self) -> None:
        self.go_to_page(self.current_page() - 1)

    @Slot()
    def next_page(self) -> None:
        self.go_to_page(self.current_page() + 1)

    def _show_page(self) -> None:
        """The page label says the page in view, whatever moved it."""
        if self.source is not None and self.stack.currentWidget() is self.pdf_view:
            self._show_title(self.source, self.current_page() + 1)

    def _show_title(self, source: SearchResult, page: int | None = None) -> None:
        self.title.set_full_text(source.document)
        self.setWindowTitle(source.document)
        self.title.setToolTip(f"{source.document}\n{source.path}")
        pages = self.pdf.pageCount() if page is not None else 0
        place = f"page {page} of {pages}" if pages else location(source)
        self.page_label.set_full_text(place)
        self.page_label.setToolTip(place)
        for button in (self.prev_button, self.next_button):
            button.setVisible(bool(pages))

    @Slot()
    def open_external(self) -> bool:
        """Hand the document to the system viewer."""
        if self.source is None:
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(self.source.path))


class ElidedLabel(QLabel):
    """A one-line label that elides its text when it does not fit, and so never asks for
    more width than `minimumWidth`."""

    def __init__(
        self,
        parent: QWidget | None = None,
        mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight,
        bold: bool = False,
    ) -> None:
        super().__init__(parent)
        self.full_text = ""
        self.mode = mode
        font = self.font()
        font.setBold(bold)
        self.setFont(font)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setMinimumWidth(60)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def set_full_text(self, text: str) -> None:
        self.full_text = text
        self._elide()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        metrics = self.fontMetrics()
        self.setText(metrics.elidedText(self.full_text, self.mode, max(self.width(), 20)))
