"""The Fine-tune tab's Reader section: train the reader further on your own questions.

Like the adapter above it, training runs `main.py train-reader` as a child process, a
job on the runner's "reader" lane (`ui.runner.run_child`): torch stays out of the app,
Stop is the request's stop (the child gets SIGINT, finishes the step and keeps a
checkpoint) and Train again resumes. A finished reader is put in use at once; "Back to
the default" returns to the shipped one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.eval.testset import test_set_path
from engine.finetune.job import PROGRESS_PREFIX
from engine.reader.job import CHECKPOINTS_DIR, readers_dir
from engine.reader.summary import accuracy_line, check_line, reader_name
from ui.runner import Finished, Request, Runner, run_child
from ui.sources import WrapLabel


class ReaderSection(QGroupBox):
    """Questions file, Check, Train/Stop/Resume, the result, Back to the default.

    Signals: reader_changed(object): the reader folder now in use (str), or None for
    the shipped one; the window applies it to its settings.
    """

    reader_changed = Signal(object)

    def __init__(
        self, data_dir: Path, models_dir: Path, runner: Runner, parent: QWidget | None = None
    ) -> None:
        super().__init__("Reader: the model that ranks sources and picks the quote", parent)
        self.data_dir, self.models_dir, self.runner = Path(data_dir), Path(models_dir), runner
        self.process: Request | None = None  # the child process's job, while it runs
        self._build()
        self.refresh()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        intro = WrapLabel(
            "Train the reader further on your own questions: the test set that “Add to test "
            "set…” keeps (or any question file in that format), and with the box ticked the "
            "answers you rated 👍 with the source they cite."
        )
        intro.setObjectName("muted")
        layout.addWidget(intro)
        row = QHBoxLayout()
        self.path = QLineEdit(self)
        self.path.setPlaceholderText("test-questions.jsonl")
        choose = QPushButton("Choose…", self)
        choose.clicked.connect(self.choose_file)
        row.addWidget(self.path, 1)
        row.addWidget(choose)
        layout.addLayout(row)
        self.feedback = QCheckBox("Also the answers rated 👍 in the chat", self)
        layout.addWidget(self.feedback)
        self.checked = WrapLabel("")
        layout.addWidget(self.checked)
        layout.addLayout(self._buttons())
        self.bar = QProgressBar(self)
        self.bar.setFormat("step %v of %m")
        self.status = WrapLabel("")
        self.in_use = QLabel("", self)
        self.in_use.setObjectName("muted")
        for widget in (self.bar, self.status, self.in_use):
            layout.addWidget(widget)
        self.path.editingFinished.connect(self.check)

    def _buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.check_button = QPushButton("Check", self)
        self.check_button.setToolTip("Count the training pairs the questions give")
        self.check_button.clicked.connect(self.check)
        self.train_button = QPushButton("Train the reader", self)
        self.train_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop (keeps a checkpoint)", self)
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.default_button = QPushButton("Back to the default", self)
        self.default_button.setToolTip("Use the reader that ships with Quire again")
        self.default_button.clicked.connect(self._on_default)
        for button in (self.check_button, self.train_button, self.stop_button):
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(self.default_button)
        return row

    def refresh(self) -> None:
        """Fill in the test-set file when none is chosen; say which reader is in use."""
        if not self.path.text().strip() and test_set_path(self.data_dir).is_file():
            self.path.setText(str(test_set_path(self.data_dir)))
        if self.process is None:
            resume = self.has_checkpoint()
            self.train_button.setText("Resume training" if resume else "Train the reader")

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        self.refresh()
        super().showEvent(event)

    def show_in_use(self, folder: str | None) -> None:
        """Say which reader answers: the window calls this with each settings snapshot."""
        name = Path(folder).name if folder else "the shipped one"
        self.in_use.setText(f"Reader in use: {name}")
        self.default_button.setEnabled(bool(folder))

    # -- actions -----------------------------------------------------------------------

    @Slot()
    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Reader questions", str(self.data_dir), "JSON Lines (*.jsonl);;All files (*)"
        )
        if path:
            self.path.setText(path)
            self.check()

    def _questions(self) -> list[str]:
        path = self.path.text().strip()
        return ([path] if path else []) + (["--feedback"] if self.feedback.isChecked() else [])

    @Slot()
    def check(self) -> None:
        """Count the pairs the questions give, and why some give none (a child process)."""
        if self.process is not None:
            return
        if not self._questions():
            self.checked.setText("Choose a question file, or tick the 👍 answers.")
            return
        self.checked.setText("Checking the questions…")
        self._run([*self._questions(), "--check", "--json"], self._on_checked)

    @Slot()
    def start(self) -> None:
        if self.process is not None or not self._questions():
            self.check()
            return
        self.status.setText("Finding the pairs and loading the reader for training…")
        self.bar.reset()
        self._run([*self._questions(), "--progress-json", "--json"], self._on_trained)

    @Slot()
    def stop(self) -> None:
        if self.process is None:
            return
        self.status.setText("Stopping after this step; the checkpoint will be kept…")
        self.process.stop()

    @Slot()
    def _on_default(self) -> None:
        self.show_in_use(None)
        self.status.setText("Back to the shipped reader.")
        self.reader_changed.emit(None)

    def has_checkpoint(self) -> bool:
        path = self.path.text().strip()
        name = reader_name(Path(path) if path else None)
        return (readers_dir(self.models_dir) / CHECKPOINTS_DIR / f"{name}.pt").is_file()

    # -- the child process -------------------------------------------------------------

    def _run(self, args: list[str], done: Callable[[Finished], None]) -> None:
        command = ["--data-dir", str(self.data_dir), "train-reader", *args]
        env = {"QUIRE_MODELS_DIR": str(self.models_dir)}
        self.process = self.runner.run_job(
            "reader",
            lambda request: run_child(request, command, self._on_line, env),
            lambda finished: self._on_ended(done, finished),
            self._on_failed,
        )
        self._set_running(True)

    def _on_ended(self, done: Callable[[Finished], None], finished: Finished) -> None:
        self.process = None
        self._set_running(False)
        done(finished)

    def _on_failed(self, message: str) -> None:
        self.process = None
        self._set_running(False)
        self.status.setText(message)

    def _set_running(self, running: bool) -> None:
        for button in (self.check_button, self.train_button, self.default_button):
            button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def _on_line(self, line: str) -> None:
        if line.startswith(PROGRESS_PREFIX):
            self._on_progress(json.loads(line[len(PROGRESS_PREFIX) :]))

    def _on_progress(self, p: dict) -> None:
        self.bar.setMaximum(p["total_steps"])
        self.bar.setValue(p["step"])
        minutes, seconds = divmod(int(p["eta_s"]), 60)
        self.status.setText(
            f"Step {p['step']} of {p['total_steps']} · loss {p['loss']:.3f} · "
            f"about {minutes} min {seconds:02d} s left"
        )

    def _on_checked(self, finished: Finished) -> None:
        payload, error = finished.payload(), finished.error()
        self.checked.setText(check_line(payload) if payload else error or "Could not check.")
        self.refresh()

    def _on_trained(self, finished: Finished) -> None:
        payload = finished.payload()
        self.refresh()
        if payload is None:
            self.status.setText(
                finished.error() or f"Training stopped (exit code {finished.code})."
            )
        elif payload.get("cancelled"):
            self.status.setText(
                f"Stopped at step {payload['steps']} of {payload['total_steps']}. "
                "The checkpoint is kept: Resume training continues from it."
            )
        else:
            self.status.setText(f"Done, and in use: {accuracy_line(payload)}.")
            self.show_in_use(payload["folder"])
            self.reader_changed.emit(payload["folder"])
