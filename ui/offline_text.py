"""Rich text that loads nothing it names.

A document (an HTML page, a Markdown file) or an answer can name an image or a style
sheet by path or URL: `<img src="/dev/zero">` once made the reader read /dev/zero into
memory on the GUI thread until the machine ran out (issue 22). Quire shows text, so every
text browser it opens refuses every resource: no local file, no URL, nothing from the
network. The picture's place stays empty.

Nor does it follow a link: QTextBrowser would load the link's target in place of the text
(an outside URL blanked the reader: "No document for https://..."). A link within the
text moves there; any other is handed on as `outside_link_clicked`, for the view to show.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QUrl, Signal, Slot
from PySide6.QtGui import QImage, QTextDocument
from PySide6.QtWidgets import QTextBrowser


class OfflineTextBrowser(QTextBrowser):
    """A QTextBrowser that never loads a resource its text names, nor a link's target.
    Signals: outside_link_clicked(QUrl) (resolved against `base_url`)."""

    outside_link_clicked = Signal(QUrl)
    refused: list[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = []  # what the text asked for (the last 20), for the tests and the log
        self.base_url = QUrl()  # where the text came from: a link to it is a link within it
        self.setOpenExternalLinks(False)
        self.setOpenLinks(False)
        self.anchorClicked.connect(self._on_anchor_clicked)

    @Slot(QUrl)
    def _on_anchor_clicked(self, url: QUrl) -> None:
        """A link within the text (`#part`, or this file's own name with one) scrolls to
        its anchor; any other is handed on."""
        target = self.base_url.resolved(url) if not self.base_url.isEmpty() else url
        same = _unanchored(url) == "" or (
            not self.base_url.isEmpty() and _unanchored(target) == _unanchored(self.base_url)
        )
        if same and url.hasFragment():
            self.scrollToAnchor(url.fragment(QUrl.ComponentFormattingOption.FullyDecoded))
        elif not same:
            self.outside_link_clicked.emit(target)

    def loadResource(self, kind: int, name: QUrl | str) -> Any:  # noqa: N802 - Qt override
        """Something in its place, never the resource. (An empty answer is not enough:
        QTextDocument then reads a local file itself.)"""
        self.refused = [*self.refused[-19:], QUrl(name).toString()]
        if kind == QTextDocument.ResourceType.ImageResource.value:
            return _blank()
        return ""  # a style sheet or anything else: empty


def _unanchored(url: QUrl) -> str:
    """The URL without its #fragment."""
    return url.toString().partition("#")[0]


def _blank() -> QImage:
    image = QImage(1, 1, QImage.Format.Format_ARGB32)
    image.fill(0)
    return image
