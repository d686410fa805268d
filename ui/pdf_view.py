"""The reader: a cited PDF at its page (QtPdf), or a text document at the passage.

The system viewer is always one click away, and the fallback when QtPdf cannot open a file.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QPointF, QRegularExpression, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QColor, QDesktopServices, QResizeEvent, QTextCharFormat, QTextCursor
from PySide6.QtPdf import QPdfDocument, QPdfSearchModel
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


class ReaderPanel(QWidget):
    """Shows one source. Signals: closed(), failed(str)."""

    closed = Signal()
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source: SearchResult | None = None
        self.pdf = QPdfDocument(self)
        self.search_model = QPdfSearchModel(self)
        self.search_model.setDocument(self.pdf)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._toolbar())
        self.stack = QStackedWidget(self)
        self.pdf_view = QPdfView(self.stack)
        self.pdf_view.setDocument(self.pdf)
        self.pdf_view.setPageMode(QPdfView.PageMode.MultiPage)
        self.pdf_view.setZoomMode(QPdfView.ZoomMode.FitToWidth)
        self.pdf_view.setSearchModel(self.search_model)
        self.text_view = QTextBrowser(self.stack)
        self.text_view.setOpenExternalLinks(False)
        self.stack.addWidget(self.pdf_view)
        self.stack.addWidget(self.text_view)
        layout.addWidget(self.stack, 1)

    def _toolbar(self) -> QWidget:
        bar = QWidget(self)
        bar.setObjectName("readerBar")
        row = QHBoxLayout(bar)
        row.setContentsMargins(8, 4, 8, 4)
        self.title = ElidedLabel(bar)
        self.title.setObjectName("readerTitle")
        self.title.setMinimumWidth(60)  # a long file name must not widen the window
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        row.addWidget(self.title, 1)
        self.page_label = QLabel("", bar)
        self.page_label.setObjectName("muted")
        row.addWidget(self.page_label)
        self.prev_button = QPushButton("◀", bar)
        self.prev_button.setToolTip("Previous page")
        self.prev_button.clicked.connect(lambda: self.go_to_page(self.current_page() - 1))
        self.next_button = QPushButton("▶", bar)
        self.next_button.setToolTip("Next page")
        self.next_button.clicked.connect(lambda: self.go_to_page(self.current_page() + 1))
        external = QPushButton("System viewer", bar)
        external.setToolTip("Open the document in the system's viewer")
        external.clicked.connect(self.open_external)
        close = QPushButton("✕", bar)
        close.setToolTip("Close the reader")
        close.clicked.connect(self.closed)
        for button in (self.prev_button, self.next_button, close):
            button.setFixedWidth(34)
        for widget in (self.prev_button, self.next_button, external, close):
            row.addWidget(widget)
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
        self.search_model.setSearchString(_first_words(source.text, 4))
        page = (source.page or 1) - 1
        self.go_to_page(page)
        # A view that was hidden has no geometry yet: jump again once it is laid out.
        QTimer.singleShot(0, lambda: self.go_to_page(page))
        return True

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


def _first_words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def _last_words(text: str) -> str:
    return " ".join(text.split()[-3:])
