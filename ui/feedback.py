"""Thumbs up/down and "Edit answer" under a chat answer: training data from use.

Ratings and corrections are stored with the answer (and the exact prompt it was given)
in the history database; `main.py export-training` and File > Export training examples
turn the approved and corrected answers into a JSONL file that `train` takes.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QHBoxLayout, QInputDialog, QLabel, QToolButton, QWidget

from engine.answer.prompting import source_label
from engine.eval.testset import add_question
from engine.history import History, Message


class FeedbackBar(QWidget):
    """Rate or correct one stored answer."""

    def __init__(
        self,
        history: History,
        message: Message,
        parent: QWidget | None = None,
        question: str = "",
        data_dir: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.history, self.message = history, message
        self.question, self.data_dir = question, data_dir
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
        self.test = QToolButton(self)
        self.test.setText("Add to test set…")
        self.test.setToolTip(
            "Keep this question for Evaluate, with the source that answers it as the gold"
        )
        self.test.clicked.connect(self._on_add_to_test_set)
        self.test.setVisible(bool(question and message.sources and data_dir))
        for widget in (self.up, self.down, self.edit, self.test, self.state):
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

    @Slot()
    def _on_add_to_test_set(self) -> None:
        labels = [f"[{i}] {source_label(s)}" for i, s in enumerate(self.message.sources, 1)]
        choice, ok = QInputDialog.getItem(
            self, "Add to test set", "Which source answers the question?", labels, 0, False
        )
        if not ok or self.data_dir is None:
            return
        gold = self.message.sources[labels.index(choice)]
        row = add_question(self.data_dir, self.question, gold)
        self.state.setText(f"added to your test set as {row['id']}")

    def _show_state(self) -> None:
        self.up.setChecked(self.message.rating == 1)
        self.down.setChecked(self.message.rating == -1)
        if self.message.corrected:
            self.state.setText("corrected: a training example")
        elif self.message.rating == 1:
            self.state.setText("approved: a training example")
        else:
            self.state.setText("")
