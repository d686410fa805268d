"""The Fine-tune tab's Reader section: train the reader further on your own questions.

Like the adapter above it, training runs `main.py train-reader` as a child process
(QProcess): torch stays out of the app, Stop sends SIGINT (the step finishes and a
checkpoint is kept) and Train again resumes. A finished reader is put in use at once;
"Back to the default" returns to the shipped one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QProcess, QProcessEnvironment, Signal, Slot
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

from cli.reader import PROGRESS_PREFIX, accuracy_line, check_line, reader_name
from engine.eval.testset import test_set_path
from engine.reader.job import CHECKPOINTS_DIR, readers_dir
from engine.settings import Settings
from ui.sources import WrapLabel


def main_script() -> str:
    """main.py, which the training child processes run."""
    spec = importlib.util.find_spec("main")
    assert spec is not None and spec.origin is not None
    return spec.origin


class ReaderSection(QGroupBox):
    """Questions file, Check, Train/Stop/Resume, the result, Back to the default.

    Signals: reader_changed(object): the reader folder now in use (str), or None for
    the shipped one; the window applies it to its settings.
    """

    reader_changed = Signal(object)

    def __init__(self, data_dir: Path, models_dir: Path, parent: QWidget | None = None) -> None:
        super().__init__("Reader: the model that ranks sources and picks the quote", parent)
        self.data_dir, self.models_dir = Path(data_dir), Path(models_dir)
        self.process: QProcess | None = None
        self._stderr = b""
        self._errors: list[str] = []
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
        self._show_in_use(Settings.load(self.data_dir).reader_path)
        if self.process is None:
            resume = self.has_checkpoint()
            self.train_button.setText("Resume training" if resume else "Train the reader")

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        self.refresh()
        super().showEvent(event)

    def _show_in_use(self, folder: str | None) -> None:
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
        pid = int(self.process.processId())
        if pid and sys.platform != "win32":
            os.kill(pid, signal.SIGINT)
        else:
            self.process.terminate()

    @Slot()
    def _on_default(self) -> None:
        self._show_in_use(None)
        self.status.setText("Back to the shipped reader.")
        self.reader_changed.emit(None)

    def has_checkpoint(self) -> bool:
        path = self.path.text().strip()
        name = reader_name(Path(path) if path else None)
        return (readers_dir(self.models_dir) / CHECKPOINTS_DIR / f"{name}.pt").is_file()

    # -- the child process -------------------------------------------------------------

    def _run(self, args: list[str], done: Callable[[], None]) -> None:
        process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("QUIRE_MODELS_DIR", str(self.models_dir))
        process.setProcessEnvironment(env)
        process.setProgram(sys.executable)
        process.setArguments(
            [main_script(), "--data-dir", str(self.data_dir), "train-reader", *args]
        )
        process.readyReadStandardError.connect(self._on_stderr)
        process.finished.connect(done)
        self.process, self._stderr, self._errors = process, b"", []
        self._set_running(True)
        process.start()

    def _set_running(self, running: bool) -> None:
        for button in (self.check_button, self.train_button, self.default_button):
            button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    @Slot()
    def _on_stderr(self) -> None:
        assert self.process is not None
        self._stderr += bytes(self.process.readAllStandardError().data())
        *lines, self._stderr = self._stderr.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith(PROGRESS_PREFIX):
                self._on_progress(json.loads(line[len(PROGRESS_PREFIX) :]))
            elif line.startswith("quire:"):
                self._errors.append(line[len("quire:") :].strip())

    def _on_progress(self, p: dict) -> None:
        self.bar.setMaximum(p["total_steps"])
        self.bar.setValue(p["step"])
        minutes, seconds = divmod(int(p["eta_s"]), 60)
        self.status.setText(
            f"Step {p['step']} of {p['total_steps']} · loss {p['loss']:.3f} · "
            f"about {minutes} min {seconds:02d} s left"
        )

    def _finish(self) -> tuple[int, dict | None, str]:
        """Exit code, the JSON it printed (if any), and its last error line."""
        process, self.process = self.process, None
        assert process is not None
        self._set_running(False)
        out = bytes(process.readAllStandardOutput().data()).decode("utf-8", "replace")
        process.deleteLater()
        try:
            payload = json.loads(out) if out.strip() else None
        except ValueError:
            payload = None
        return process.exitCode(), payload, (self._errors[-1] if self._errors else "")

    @Slot()
    def _on_checked(self) -> None:
        _code, payload, error = self._finish()
        self.checked.setText(check_line(payload) if payload else error or "Could not check.")
        self.refresh()

    @Slot()
    def _on_trained(self) -> None:
        code, payload, error = self._finish()
        self.refresh()
        if payload is None:
            self.status.setText(error or f"Training stopped (exit code {code}).")
        elif payload.get("cancelled"):
            self.status.setText(
                f"Stopped at step {payload['steps']} of {payload['total_steps']}. "
                "The checkpoint is kept: Resume training continues from it."
            )
        else:
            self.status.setText(f"Done, and in use: {accuracy_line(payload)}.")
            self._show_in_use(payload["folder"])
            self.reader_changed.emit(payload["folder"])
