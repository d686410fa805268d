"""The history sidebar: conversations kept across restarts; rename, delete, export."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QPoint, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.history import History


def when(stamp: float) -> str:
    """`14:05` today, else `3 Mar`."""
    local = time.localtime(stamp)
    if time.strftime("%Y%m%d", local) == time.strftime("%Y%m%d"):
        return time.strftime("%H:%M", local)
    return time.strftime("%d %b", local).lstrip("0")


class HistoryView(QWidget):
    """Signals: conversation_selected(int), new_requested(), conversation_deleted(int)."""

    conversation_selected = Signal(int)
    new_requested = Signal()
    conversation_deleted = Signal(int)

    def __init__(self, history: History, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history = history
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        new = QPushButton("+  New conversation", self)
        new.setObjectName("primary")
        new.setToolTip("Ctrl+N")
        new.clicked.connect(self.new_requested)
        title = QLabel("Conversations")
        title.setObjectName("sectionTitle")
        self.list = QListWidget(self)
        self.list.setObjectName("historyList")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setWordWrap(True)
        self.list.itemActivated.connect(self._on_item_activated)
        self.list.itemClicked.connect(self._on_item_activated)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._on_menu_requested)
        layout.addWidget(new)
        layout.addWidget(title)
        layout.addWidget(self.list, 1)
        self.refresh()

    def refresh(self, current: int | None = None) -> None:
        self.list.clear()
        for conv in self.history.conversations():
            item = QListWidgetItem(f"{conv.title}\n{when(conv.updated)} · {conv.messages // 2} Q")
            item.setData(Qt.ItemDataRole.UserRole, conv.id)
            item.setToolTip(conv.title)
            self.list.addItem(item)
            if conv.id == current:
                self.list.setCurrentItem(item)

    def selected_id(self) -> int | None:
        item = self.list.currentItem()
        return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))

    @Slot(QListWidgetItem)
    def _on_item_activated(self, item: QListWidgetItem) -> None:
        self.conversation_selected.emit(int(item.data(Qt.ItemDataRole.UserRole)))

    @Slot(QPoint)
    def _on_menu_requested(self, pos: QPoint) -> None:
        if self.list.itemAt(pos) is None:
            return
        menu = QMenu(self)
        menu.addAction("Rename…", self.rename_selected)
        menu.addAction("Export to Markdown…", self.export_selected)
        menu.addSeparator()
        menu.addAction("Delete", self.delete_selected)
        menu.exec(self.list.mapToGlobal(pos))

    def rename_selected(self) -> None:
        cid = self.selected_id()
        conv = self.history.conversation(cid) if cid is not None else None
        if conv is None:
            return
        title, ok = QInputDialog.getText(self, "Rename conversation", "Title:", text=conv.title)
        if ok and title.strip():
            self.history.rename(conv.id, title)
            self.refresh(conv.id)

    def delete_selected(self, confirm: bool = True) -> None:
        cid = self.selected_id()
        if cid is None:
            return
        if confirm:
            answer = QMessageBox.question(self, "Delete conversation", "Delete it for good?")
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.history.delete(cid)
        self.refresh()
        self.conversation_deleted.emit(cid)

    def export_selected(self, path: str | None = None) -> Path | None:
        """Write the selected conversation, with its sources, to a Markdown file."""
        cid = self.selected_id()
        if cid is None:
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export conversation", "conversation.md", "Markdown (*.md)"
            )
        if not path:
            return None
        target = Path(path)
        try:
            target.write_text(self.history.export_markdown(cid), encoding="utf-8")
        except OSError as exc:
            QMessageBox.warning(self, "Export failed", f"{target}: {exc.strerror or exc}")
            return None
        return target
