"""Rich text that loads nothing it names.

A document (an HTML page, a Markdown file) or an answer can name an image or a style
sheet by path or URL: `<img src="/dev/zero">` once made the reader read /dev/zero into
memory on the GUI thread until the machine ran out (issue 22). Quire shows text, so every
text browser it opens refuses every resource: no local file, no URL, nothing from the
network. The picture's place stays empty.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QUrl
from PySide6.QtGui import QImage, QTextDocument
from PySide6.QtWidgets import QTextBrowser


class OfflineTextBrowser(QTextBrowser):
    """A QTextBrowser that never loads a resource its text names."""

    refused: list[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = []  # what the text asked for (the last 20), for the tests and the log
        self.setOpenExternalLinks(False)

    def loadResource(self, kind: int, name: QUrl) -> Any:  # noqa: N802 - Qt override
        """Something in its place, never the resource. (An empty answer is not enough:
        QTextDocument then reads a local file itself.)"""
        self.refused = [*self.refused[-19:], name.toString()]
        if kind == QTextDocument.ResourceType.ImageResource.value:
            return _blank()
        return ""  # a style sheet or anything else: empty


def _blank() -> QImage:
    image = QImage(1, 1, QImage.Format.Format_ARGB32)
    image.fill(0)
    return image
