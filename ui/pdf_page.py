"""The reader's PDF pages: where QPdfView put each page, the cited passage marked on its
lines, and zooming that keeps the point under the eye (the view's centre or the cursor)
where it was.

QPdfView does not say where it put each page, nor keep the reader's place when its zoom
changes: it keeps the scroll bar's pixel value, so page 47 became page 33 on '+', and its
page navigator stays on the old page until the next scroll. `PassagePdfView` works the
layout out itself and scrolls by it.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import (
    QColor,
    QGuiApplication,
    QPainter,
    QPaintEvent,
    QPolygonF,
    QTransform,
)
from PySide6.QtPdf import QPdfDocument
from PySide6.QtPdfWidgets import QPdfView
from PySide6.QtWidgets import QWidget

MARK = QColor(250, 204, 21, 110)  # the cited passage over a PDF page: translucent amber
QUOTE_MARK = QColor(234, 88, 12, 90)  # the quoted sentence, over the passage: orange
ZOOM_RANGE = (0.25, 6.0)
PAGE_LINE = 0.4  # the page crossing this height of the view is the current one (as Qt's)

Anchor = tuple[int, QPointF, QPointF]  # page, the point on it (PDF points), in the viewport


class PassagePdfView(QPdfView):
    """A QPdfView that marks the cited passage (and, over it in its own colour, the
    quoted sentence): every line of it, from the PDF's own character boxes, at any zoom
    and scroll position; and zooms about a point of the view.

    `page_rects` works the layout out from the properties QPdfView exposes, as Qt's
    QPdfViewPrivate::calculateDocumentLayout does: pages stacked below each other with
    `pageSpacing`, centred, inside `documentMargins`, sized by the zoom mode.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        # PySide6's stub wants a QWidget; Qt takes None (a top-level view) as well
        super().__init__(parent)  # type: ignore[arg-type]
        self.marks: dict[int, list[QPolygonF]] = {}  # page -> polygons in PDF points
        self.quote_marks: dict[int, list[QPolygonF]] = {}  # the quoted sentence's lines

    def set_marks(
        self, marks: dict[int, list[QPolygonF]], quote: dict[int, list[QPolygonF]] | None = None
    ) -> None:
        self.marks = marks
        self.quote_marks = quote or {}
        self.viewport().update()

    # -- layout ----------------------------------------------------------------------------

    def page_rects(self) -> dict[int, QRectF]:
        """Each page's rectangle in document coordinates (viewport + scroll offsets)."""
        document = self.document()
        if document is None or document.status() != QPdfDocument.Status.Ready:
            return {}
        margins, viewport = self.documentMargins(), self.viewport().size()
        sizes = {page: self._page_size(page) for page in range(document.pageCount())}
        total = max((w for w, _ in sizes.values()), default=0) + margins.left() + margins.right()
        rects, top = {}, margins.top()
        for page, (width, height) in sizes.items():
            left = (max(total, viewport.width()) - width) // 2
            rects[page] = QRectF(left, top, width, height)
            top += height + self.pageSpacing()
        return rects

    def _page_size(self, page: int) -> tuple[int, int]:
        """A page's size in pixels, computed and rounded as Qt does (QSizeF::toSize,
        QSize *= factor): truncating instead puts the marks a pixel off per page."""
        points, resolution = self.document().pagePointSize(page), _resolution()
        margins = self.documentMargins()
        if self.zoomMode() == QPdfView.ZoomMode.Custom:
            zoom = self.zoomFactor()  # multiplied in Qt's order: (points * dpi) * zoom
            return (
                _qround(points.width() * resolution * zoom),
                _qround(points.height() * resolution * zoom),
            )
        width = _qround(points.width() * resolution)
        height = _qround(points.height() * resolution)
        if self.zoomMode() == QPdfView.ZoomMode.FitToWidth and width > 0:
            factor = (self.viewport().width() - margins.left() - margins.right()) / width
            width, height = _qround(width * factor), _qround(height * factor)
        return width, height

    def scale(self, page: int) -> float:
        """Pixels per PDF point on `page` at the current zoom."""
        rect = self.page_rects().get(page)
        document = self.document()
        if rect is None or document is None:
            return 1.0
        return rect.width() / max(1.0, document.pagePointSize(page).width())

    def zoom(self) -> float:
        """The current zoom as a factor of the page's size at 100%."""
        if self.zoomMode() == QPdfView.ZoomMode.Custom:
            return self.zoomFactor()
        return self.scale(self.visible_page()) / _resolution()

    def visible_page(self) -> int:
        """The page crossing 40% of the view's height (the page Qt calls current), or the
        nearest one in a gap between pages; 0 without a document."""
        rects = self.page_rects()
        if not rects:
            return 0
        line = self.verticalScrollBar().value() + self.viewport().height() * PAGE_LINE
        for page, rect in rects.items():
            if rect.top() <= line <= rect.bottom() + self.pageSpacing():
                return page
        return 0 if line < rects[0].top() else len(rects) - 1

    # -- places and zoom -------------------------------------------------------------------

    def anchor(self, at: QPointF | None = None) -> Anchor | None:
        """The page and the point on it (in PDF points) under `at` (viewport coordinates;
        the view's centre by default), to bring back after a zoom."""
        if at is None:
            at = QPointF(self.viewport().width() / 2, self.viewport().height() / 2)
        rects = self.page_rects()
        if not rects:
            return None
        x = at.x() + self.horizontalScrollBar().value()
        y = at.y() + self.verticalScrollBar().value()
        page = min(rects, key=lambda p: _distance(rects[p], y))
        rect, scale = rects[page], self.scale(page)
        return page, QPointF((x - rect.left()) / scale, (y - rect.top()) / scale), at

    def restore(self, anchor: Anchor) -> None:
        """Scroll so the anchor's point of its page is back under its viewport point."""
        page, point, at = anchor
        rect = self.page_rects().get(page)
        if rect is None:
            return
        scale = self.scale(page)
        self.horizontalScrollBar().setValue(round(rect.left() + point.x() * scale - at.x()))
        self.verticalScrollBar().setValue(round(rect.top() + point.y() * scale - at.y()))

    def zoom_about(self, factor: float | None, at: QPointF | None = None) -> None:
        """Zoom to `factor` (None: fit the width) keeping the point under `at` (the view's
        centre by default) where it is. The scroll bars come and go on the next turn of
        the event loop, changing the view's size: the point is put back then too."""
        anchor = self.anchor(at)
        if factor is None:
            self.setZoomMode(QPdfView.ZoomMode.FitToWidth)
        else:
            self.setZoomMode(QPdfView.ZoomMode.Custom)
            self.setZoomFactor(min(max(factor, ZOOM_RANGE[0]), ZOOM_RANGE[1]))
        if anchor is not None:
            self.restore(anchor)
            QTimer.singleShot(0, self, lambda: self.restore(anchor))

    def scroll_to_page(self, page: int, y_points: float = 0.0, above: int = 0) -> None:
        """Scroll `page`'s point `y_points` (from its top) to `above` pixels below the
        view's top. QPdfPageNavigator.jump would not scroll to the page it is already on."""
        rect = self.page_rects().get(page)
        if rect is not None:
            top = rect.top() + y_points * self.scale(page) - above
            self.verticalScrollBar().setValue(max(0, round(top)))

    def mark_top(self, page: int, quote: bool = False) -> float | None:
        """Document y of the first marked line on `page` (of the quote's, with `quote`),
        to scroll it into view."""
        rect = self.page_rects().get(page)
        polygons = (self.quote_marks if quote else self.marks).get(page)
        if rect is None or not polygons:
            return None
        return rect.top() + min(p.boundingRect().top() for p in polygons) * self.scale(page)

    def mark_rects(self, quote: bool = False) -> list[QRectF]:
        """The marked lines' rectangles in viewport coordinates, as they are painted."""
        rects, out = self.page_rects(), []
        for page, polygons in (self.quote_marks if quote else self.marks).items():
            if page in rects:
                to_view = self._to_view(rects[page], page)
                out += [to_view.map(p).boundingRect() for p in polygons]
        return out

    # -- painting --------------------------------------------------------------------------

    def _to_view(self, rect: QRectF, page: int) -> QTransform:
        """PDF points on `page` (laid out at `rect`) to viewport pixels."""
        scale = rect.width() / max(1.0, self.document().pagePointSize(page).width())
        return (
            QTransform()
            .translate(-self.horizontalScrollBar().value(), -self.verticalScrollBar().value())
            .translate(rect.left(), rect.top())
            .scale(scale, scale)
        )

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        super().paintEvent(event)
        if (not self.marks and not self.quote_marks) or self.document() is None:
            return
        painter = QPainter(self.viewport())
        painter.setPen(Qt.PenStyle.NoPen)
        rects = self.page_rects()
        for marks, colour in ((self.marks, MARK), (self.quote_marks, QUOTE_MARK)):
            painter.setBrush(colour)  # the quote last: over the passage
            for page, polygons in marks.items():
                if page in rects:
                    to_view = self._to_view(rects[page], page)
                    for polygon in polygons:
                        painter.drawPolygon(to_view.map(polygon))
        painter.end()


def _resolution() -> float:
    """Logical pixels per PDF point at 100%, as QPdfView takes it from the primary screen."""
    screen = QGuiApplication.primaryScreen()
    return (screen.logicalDotsPerInch() if screen else 72.0) / 72.0


def _distance(rect: QRectF, y: float) -> float:
    return (
        0.0
        if rect.top() <= y <= rect.bottom()
        else min(abs(rect.top() - y), abs(y - rect.bottom()))
    )


def _qround(value: float) -> int:
    """Qt's qRound: halves away from zero (Python's round() goes to the even one)."""
    return int(value + 0.5) if value >= 0 else int(value - 0.5)
