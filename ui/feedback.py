"""Thumbs up/down and "Edit answer" under a chat answer: training data from use.

Ratings and corrections are stored with the answer (and the exact prompt it was given)
in the history database, by requests on the runner's history lane (`HistoryWrites`);
`main.py export-training` and File > Export training examples turn the approved and
corrected answers into a JSONL file that `train` takes.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Slot
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPlainTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.answer.prompting import source_label
from engine.eval.testset import add_question, test_set_path
from engine.history import Message
from ui.history_view import HistoryWrites

ICONS = Path(__file__).resolve().parent / "resources"  # shipped: no emoji font needed


class FeedbackBar(QWidget):
    """Rate or correct one stored answer."""

    def __init__(
        self,
        writes: HistoryWrites,
        message: Message,
        parent: QWidget | None = None,
        question: str = "",
        data_dir: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.writes, self.message = writes, message
        self.question, self.data_dir = question, data_dir
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 4, 0, 0)
        self.up = self._button("thumb-up", "Good answer: use it as a training example")
        self.down = self._button("thumb-down", "Bad answer: leave it out of training")
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

    def _button(self, icon: str, tip: str) -> QToolButton:
        button = QToolButton(self)
        button.setIcon(QIcon(str(ICONS / f"{icon}.svg")))
        button.setIconSize(QSize(18, 18))
        button.setToolTip(tip)
        button.setAccessibleName(tip.partition(":")[0])
        button.setCheckable(True)
        button.setAutoRaise(True)
        button.setStyleSheet(  # the icon alone does not show the choice: a tint does
            "QToolButton:checked { background: #e0e7ff; border: 1px solid #a5b4fc;"
            " border-radius: 4px; }"
        )
        return button

    def _on_rated(self, rating: int) -> None:
        new = 0 if self.message.rating == rating else rating  # a second click takes it back
        number = self.message.id
        self.writes.write(lambda h, _r: h.rate(number, new), lambda _: self._on_rating_saved(new))

    def _on_rating_saved(self, rating: int) -> None:
        self.message.rating = rating
        self._show_state()

    @Slot()
    def _on_edit(self) -> None:
        dialog = self.edit_dialog()
        if not dialog.exec():
            return
        text = dialog.text()
        corrected = text.strip() if text.strip() != self.message.content.strip() else None
        number = self.message.id
        self.writes.write(
            lambda h, _r: h.correct(number, corrected), lambda _: self._on_corrected(corrected)
        )

    def edit_dialog(self) -> EditAnswerDialog:
        return EditAnswerDialog(self.message.corrected or self.message.content, self)

    def _on_corrected(self, corrected: str | None) -> None:
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
        data_dir, question = self.data_dir, self.question

        def add(_history: object, _request: object) -> dict:
            try:
                return add_question(data_dir, question, gold)
            except OSError as exc:  # a failed write or close names no file of its own
                exc.filename = exc.filename or str(test_set_path(data_dir))
                raise

        self.writes.write(
            add, lambda row: self.state.setText(f"added to your test set as {row['id']}")
        )

    def _show_state(self) -> None:
        self.up.setChecked(self.message.rating == 1)
        self.down.setChecked(self.message.rating == -1)
        if self.message.corrected:
            self.state.setText("corrected: a training example")
        elif self.message.rating == 1:
            self.state.setText("approved: a training example")
        else:
            self.state.setText("")


class EditAnswerDialog(QDialog):
    """The answer, wrapped, in a box big enough to rewrite a paragraph (QInputDialog's
    multi-line box was a few words wide and did not wrap)."""

    def __init__(self, answer: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Edit answer")
        layout = QVBoxLayout(self)
        hint = QLabel(
            "The answer it should have given. Approved and corrected answers become "
            "training examples (File ▸ Export training examples).",
            self,
        )
        hint.setWordWrap(True)
        self.editor = QPlainTextEdit(answer, self)
        self.editor.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(hint)
        layout.addWidget(self.editor, 1)
        layout.addWidget(buttons)
        self.setMinimumSize(420, 260)
        self.resize(640, 420)

    def text(self) -> str:
        return self.editor.toPlainText()
