"""Thumbs up/down and "Edit answer" under a chat answer: training data from use.

Ratings and corrections are stored with the answer (and the exact prompt it was given)
in the history database; `main.py export-training` and File > Export training examples
turn the approved and corrected answers into a JSONL file that `train` takes.
"""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QInputDialog, QLabel, QToolButton, QWidget

from engine.history import History, Message


class FeedbackBar(QWidget):
    """Rate or correct one stored answer. Signals: changed(int message id)."""

    changed = Signal(int)

    def __init__(self, history: History, message: Message, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history, self.message = history, message
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 4, 0, 0)
        self.up = self._button("👍", "Good answer: use it as a training example")
        self.down = self._button("👎", "Bad answer: leave it out of training")
        self.edit = QToolButton(self)
        self.edit.setText("Edit answer…")
        self.edit.setToolTip("Write the answer it should have given (a training example)")
        self.edit.clicked.connect(self._on_edit)
        self.state = QLabel(self)
        self.state.setObjectName("muted")
        self.up.clicked.connect(lambda: self._on_rated(1))
        self.down.clicked.connect(lambda: self._on_rated(-1))
        for widget in (self.up, self.down, self.edit, self.state):
            row.addWidget(widget)
        row.addStretch(1)
        self._show_state()

    def _button(self, text: str, tip: str) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setToolTip(tip)
        button.setCheckable(True)
        button.setAutoRaise(True)
        return button

    def _on_rated(self, rating: int) -> None:
        new = 0 if self.message.rating == rating else rating  # a second click takes it back
        self.history.rate(self.message.id, new)
        self.message.rating = new
        self._show_state()
        self.changed.emit(self.message.id)

    @Slot()
    def _on_edit(self) -> None:
        current = self.message.corrected or self.message.content
        text, ok = QInputDialog.getMultiLineText(
            self, "Edit answer", "The answer it should have given:", current
        )
        if not ok:
            return
        corrected = text.strip() if text.strip() != self.message.content.strip() else None
        self.history.correct(self.message.id, corrected)
        self.message.corrected = corrected
        self._show_state()
        self.changed.emit(self.message.id)

    def _show_state(self) -> None:
        self.up.setChecked(self.message.rating == 1)
        self.down.setChecked(self.message.rating == -1)
        if self.message.corrected:
            self.state.setText("corrected: a training example")
        elif self.message.rating == 1:
            self.state.setText("approved: a training example")
        else:
            self.state.setText("")
