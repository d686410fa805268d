"""The history sidebar: conversations kept across restarts; rename, delete, export.

The views read the chat history from the window's own `History` (the GUI thread) and
write it through `HistoryWrites`: each write a request on the runner's history lane, so a
full disk or a locked file is one line in the window, never a frozen or crashed one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

from engine.history import History, Message
from engine.types import UserError
from ui.runner import HistoryWork, Request, Runner

Done = Callable[[Any], None]


def when(stamp: float) -> str:
    """`14:05` today, else `3 Mar`."""
    local = time.localtime(stamp)
    if time.strftime("%Y%m%d", local) == time.strftime("%Y%m%d"):
        return time.strftime("%H:%M", local)
    return time.strftime("%d %b", local).lstrip("0")


@dataclass
class Saving:
    """The conversation one exchange is saved in: its id once the history lane has it
    (None: a new one, made by the question's save)."""

    id: int | None = None


@contextmanager
def not_saved(target: Path) -> Iterator[None]:
    """An export the system will not write is the user's to fix: one line naming the file,
    with the system's reason (the data folder's advice would be wrong here)."""
    try:
        yield
    except OSError as exc:
        raise UserError(f"{target}: {exc.strerror or exc}; choose another place") from exc


class HistoryWrites:
    """History writes as requests on the runner's history lane; a failure goes to the
    caller's `failed`, else to `failed` given here (the window's banner)."""

    def __init__(self, runner: Runner, failed: Callable[[str], None]) -> None:
        self.runner, self.failed = runner, failed

    def write(
        self, work: HistoryWork, done: Done | None = None, failed: Done | None = None
    ) -> Request:
        """Run `work(history, request)` on the history lane; `done(result)` follows."""
        return self.runner.write_history(work, done, failed or self.failed)

    def save_question(self, saving: Saving, question: str, done: Callable[[int], None]) -> None:
        """Add the question (making the conversation first when new); `done(its id)`."""

        def work(history: History, _request: Request) -> int:
            if saving.id is None:
                saving.id = history.create()
            history.add(saving.id, Message("user", question))
            return saving.id

        self.write(work, done)

    def save_answer(
        self, saving: Saving, message: Message, done: Callable[[Message | None], None]
    ) -> None:
        """Add the answer after its question; `done(message, with its id)`, or `done(None)`
        when it could not be saved (after the line is shown)."""

        def work(history: History, _request: Request) -> Message | None:
            if saving.id is None:  # the question's save failed, and said so
                return None
            message.id = history.add(saving.id, message)
            return message

        def failed(text: str) -> None:
            self.failed(text)
            done(None)

        self.write(work, done, failed)


class HistoryView(QWidget):
    """Signals: conversation_selected(int), new_requested(), conversation_deleted(int)."""

    conversation_selected = Signal(int)
    new_requested = Signal()
    conversation_deleted = Signal(int)

    def __init__(
        self, history: History, writes: HistoryWrites, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.history, self.writes = history, writes
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
            number = conv.id
            self.writes.write(lambda h, _r: h.rename(number, title), lambda _: self.refresh(number))

    def delete_selected(self, confirm: bool = True) -> None:
        cid = self.selected_id()
        if cid is None:
            return
        if confirm:
            answer = QMessageBox.question(self, "Delete conversation", "Delete it for good?")
            if answer != QMessageBox.StandardButton.Yes:
                return
        number = cid
        self.writes.write(lambda h, _r: h.delete(number), lambda _: self._on_deleted(number))

    def _on_deleted(self, cid: int) -> None:
        self.refresh()
        self.conversation_deleted.emit(cid)

    def export_selected(self, path: str | None = None) -> Request | None:
        """Write the selected conversation, with its sources, to a Markdown file (on the
        history lane; a failure, such as a full disk, is shown in a message box)."""
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

        def work(history: History, _request: Request) -> Path:
            with not_saved(target):
                target.write_text(history.export_markdown(cid), encoding="utf-8")
            return target

        def failed(message: str) -> None:
            QMessageBox.warning(self, "Export failed", message)

        return self.writes.write(work, None, failed)
