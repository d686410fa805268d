"""The Fine-tune tab: check a JSONL file, train a LoRA adapter, watch the loss, use it.

Training runs `main.py train` as a child process, a job on the runner's "finetune" lane
(`ui.runner.run_child`): torch's memory and threads stay out of the app, Stop is the
request's stop (the child gets SIGINT, finishes the step and keeps a checkpoint), and
starting again with the same file and settings resumes from that checkpoint.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QPointF, Qt, Signal, Slot
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.finetune.job import CHECKPOINTS_DIR, PROGRESS_PREFIX, adapter_name
from engine.finetune.repetition import repeated_share, repeats
from engine.finetune.trainer import DEFAULT_RANK, TrainConfig
from engine.types import UserError
from models.registry import adapters_dir
from ui.finetune_reader import ReaderSection
from ui.runner import Finished, Request, Runner, run_child
from ui.sources import WrapLabel


class LossChart(QWidget):
    """Training loss per step (line) and validation loss (dots), drawn with QPainter."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(160)
        self.loss: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []
        self.total = 1

    def clear(self, total: int = 1) -> None:
        self.loss, self.val, self.total = [], [], max(1, total)
        self.update()

    def add(self, step: int, total: int, loss: float, val: float | None) -> None:
        self.total = max(1, total)
        self.loss.append((step, loss))
        if val is not None and (not self.val or self.val[-1][1] != val):
            self.val.append((step, val))
        self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("#ffffff"))
        values = [v for _, v in self.loss + self.val]
        if not values:
            painter.setPen(QColor("#6b7280"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Loss appears here")
            return
        top, left, w, h = 12, 40, self.width() - 52, self.height() - 30
        high = max(values) * 1.05 or 1.0

        def point(step: int, value: float) -> QPointF:
            return QPointF(left + w * step / self.total, top + h * (1 - value / high))

        painter.setPen(QColor("#9ca3af"))
        painter.drawLine(left, top + h, left + w, top + h)
        painter.drawText(2, top + 10, f"{high:.1f}")
        painter.drawText(2, top + h, "0")
        painter.drawText(left + w - 80, top + h + 16, f"step {self.total}")
        painter.setPen(QPen(QColor("#4f46e5"), 2))
        line = [point(s, v) for s, v in self.loss]
        for a, b in itertools.pairwise(line):
            painter.drawLine(a, b)
        painter.setPen(QPen(QColor("#dc2626"), 6))
        for s, v in self.val:
            painter.drawPoint(point(s, v))


class FineTuneView(QWidget):
    """Pick data, check it, train, watch, stop/resume, compare, use; the reader below.

    Signals: use_adapter(str), reader_changed(object: a reader folder, or None for the
    shipped one).
    """

    use_adapter = Signal(str)
    reader_changed = Signal(object)

    def __init__(
        self, data_dir: Path, models_dir: Path, runner: Runner, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.data_dir, self.models_dir, self.runner = Path(data_dir), Path(models_dir), runner
        self.process: Request | None = None  # the child process's job, while it runs
        self.adapter: str | None = None
        self._build()

    def _build(self) -> None:
        scroll = QScrollArea(self)  # the window's minimum size must not grow with this tab
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        inner = QWidget(scroll)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(inner)
        intro = WrapLabel(
            "Teach the model a behaviour (a format, a tone, how to answer) from your own chat "
            'examples: one JSON object per line, {"messages": [...]} or {"prompt", '
            '"completion"}. Rate answers in the chat and use File > Export training '
            "examples to make such a file. Training runs on this computer."
        )
        intro.setObjectName("muted")
        layout.addWidget(intro)
        row = QHBoxLayout()
        self.path = QLineEdit(self)
        self.path.setPlaceholderText("examples.jsonl")
        choose = QPushButton("Choose…", self)
        choose.clicked.connect(self.choose_file)
        row.addWidget(self.path, 1)
        row.addWidget(choose)
        layout.addLayout(row)
        self.checked = WrapLabel("")
        layout.addWidget(self.checked)
        self.problems = QPlainTextEdit(self)
        self.problems.setReadOnly(True)
        self.problems.setMaximumHeight(80)
        self.problems.hide()
        layout.addWidget(self.problems)
        layout.addLayout(self._settings_form())
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start training", self)
        self.start_button.setObjectName("primary")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop (keeps a checkpoint)", self)
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.use_button = QPushButton("Use this adapter", self)
        self.use_button.clicked.connect(self._on_use)
        self.use_button.hide()
        self.use_state = QLabel("", self)  # queued behind indexing, in use, or why not
        self.use_state.setObjectName("muted")
        for widget in (self.start_button, self.stop_button, self.use_button, self.use_state):
            buttons.addWidget(widget)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.bar = QProgressBar(self)
        self.bar.setFormat("step %v of %m")
        self.status = QLabel("", self)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        self.chart = LossChart(self)
        layout.addWidget(self.chart, 1)
        self.warning = WrapLabel("")  # the answers after training repeat themselves
        self.warning.setStyleSheet("color: #b45309;")
        self.warning.hide()
        layout.addWidget(self.warning)
        self.result = QPlainTextEdit(self)
        self.result.setReadOnly(True)
        self.result.hide()
        layout.addWidget(self.result, 1)
        self.path.editingFinished.connect(self.check)
        self.reader_section = ReaderSection(self.data_dir, self.models_dir, self.runner, self)
        self.reader_section.reader_changed.connect(self.reader_changed)
        layout.addWidget(self.reader_section)

    def _settings_form(self) -> QFormLayout:
        d = TrainConfig()
        form = QFormLayout()
        self.name = QLineEdit(self)
        self.name.setPlaceholderText("adapter name (default: the file's name)")
        self.epochs = QSpinBox(self, minimum=1, maximum=50, value=d.epochs)
        self.rank = QSpinBox(self, minimum=1, maximum=128, value=DEFAULT_RANK)
        self.rank.setToolTip("LoRA rank: higher learns more, trains slower (8-32 is typical)")
        self.start_from = QComboBox(self)
        self.start_from.setToolTip(
            "Train a new adapter, or train one made here further (more epochs or new "
            "examples; its rank is kept)"
        )
        self.start_from.currentIndexChanged.connect(self._on_start_from_changed)
        form.addRow("Name", self.name)
        form.addRow("Start from", self.start_from)
        form.addRow("Epochs", self.epochs)
        form.addRow("Rank", self.rank)
        self.refresh_adapters()
        return form

    def refresh_adapters(self) -> None:
        """List the adapters trained here (those with a PEFT folder) to continue from."""
        wanted = self.start_from.currentData()
        self.start_from.blockSignals(True)
        self.start_from.clear()
        self.start_from.addItem("a new adapter", None)
        folder = adapters_dir(self.models_dir)
        peft = sorted(folder.glob("*.peft")) if folder.is_dir() else []
        for path in peft:
            if (path / "adapter_config.json").is_file():
                self.start_from.addItem(f"continue {path.stem}", path.stem)
        self.start_from.setCurrentIndex(max(self.start_from.findData(wanted), 0))
        self.start_from.blockSignals(False)
        self._on_start_from_changed()

    @Slot()
    def _on_start_from_changed(self) -> None:
        self.rank.setEnabled(self.start_from.currentData() is None)  # the adapter's own rank

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        if self.process is None:
            self.refresh_adapters()
        super().showEvent(event)

    # -- actions -----------------------------------------------------------------------

    @Slot()
    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Training examples", "", "JSON Lines (*.jsonl *.json);;All files (*)"
        )
        if path:
            self.path.setText(path)
            self.check()

    @Slot()
    def check(self) -> None:
        """Count usable examples and list the lines that are not (a quick child process)."""
        if not self.path.text().strip() or self.process is not None:
            return
        self.checked.setText("Checking the examples…")
        self._run(["--check", "--json"], self._on_checked)

    @Slot()
    def start(self) -> None:
        if not self.path.text().strip():
            self.checked.setText("Choose a JSONL file of examples first.")
            return
        args = ["--epochs", str(self.epochs.value())]
        if self.start_from.currentData():  # its own rank (the box is greyed out)
            args += ["--from", self.start_from.currentData()]
        else:
            args += ["--rank", str(self.rank.value())]
        if not self._may_replace():
            return
        args += ["--out", self._name(), "--overwrite", "--progress-json", "--json"]
        self.chart.clear()
        self.problems.clear()  # the run lists the left-out lines again
        self.result.hide()
        self.warning.hide()
        self.use_button.hide()
        self.use_state.clear()
        self.status.setText("Loading the model for training…")
        self._run(args, self._on_trained)

    @Slot()
    def stop(self) -> None:
        if self.process is None:
            return
        self.status.setText("Stopping after this step; the checkpoint will be kept…")
        self.process.stop()

    def _name(self) -> str:
        text = self.name.text().strip() or Path(self.path.text().strip()).stem
        try:
            return adapter_name(text)
        except UserError:
            return "adapter"

    def _may_replace(self) -> bool:
        """Ask before a run replaces an adapter of the same name; True: go ahead."""
        name = self._name()
        existing = adapters_dir(self.models_dir) / f"{name}.gguf"
        if not existing.is_file():
            return True
        answer = QMessageBox.question(
            self,
            "Replace the adapter?",
            f"An adapter named “{name}” exists:\n{existing}\n\nTraining replaces it when it "
            "finishes. Replace it? (No: give this one another name.)",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            self.status.setText(f"Not started: “{name}” is kept. Give the new adapter a name.")
            self.name.setFocus()
            return False
        return True

    def has_checkpoint(self) -> bool:
        return (adapters_dir(self.models_dir) / CHECKPOINTS_DIR / f"{self._name()}.pt").is_file()

    # -- the child process -------------------------------------------------------------

    def _run(self, extra: list[str], done: Callable[[Finished], None]) -> None:
        command = ["--data-dir", str(self.data_dir), "train", self.path.text().strip(), *extra]
        env = {"QUIRE_MODELS_DIR": str(self.models_dir)}
        self.process = self.runner.run_job(
            "finetune",
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
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def _on_line(self, line: str) -> None:
        if line.startswith(PROGRESS_PREFIX):
            self._on_progress(json.loads(line[len(PROGRESS_PREFIX) :]))
        else:
            self.problems.appendPlainText(line)

    def _on_progress(self, p: dict) -> None:
        self.bar.setMaximum(p["total_steps"])
        self.bar.setValue(p["step"])
        self.chart.add(p["step"], p["total_steps"], p["loss"], p.get("val_loss"))
        minutes, seconds = divmod(int(p["eta_s"]), 60)
        self.status.setText(
            f"Step {p['step']} of {p['total_steps']} · loss {p['loss']:.3f} · "
            f"{p['tokens_per_s']:.0f} tokens/s · about {minutes} min {seconds:02d} s left"
        )

    def _on_checked(self, finished: Finished) -> None:
        self.problems.clear()
        payload, code = finished.payload(), finished.code
        if payload is None:
            self.checked.setText(finished.error() or "Could not check this file.")
            return
        problems = payload["problems"]
        self.checked.setText(
            f"{payload['examples']} usable examples"
            + (f"; {len(problems)} lines left out:" if problems else ".")
        )
        self.problems.setPlainText("\n".join(problems))
        self.problems.setVisible(bool(problems))
        resume = self.has_checkpoint()
        self.start_button.setText("Resume training" if resume else "Start training")
        self.start_button.setEnabled(code == 0)

    def _on_trained(self, finished: Finished) -> None:
        payload = finished.payload()
        if payload is None:
            self.status.setText(
                finished.error() or f"Training stopped (exit code {finished.code})."
            )
            return
        if payload.get("cancelled"):
            self.status.setText(
                f"Stopped at step {payload['steps']} of {payload['total_steps']}. "
                "The checkpoint is kept: Resume training continues from it."
            )
            self.start_button.setText("Resume training")
            return
        self.start_button.setText("Start training")
        self.refresh_adapters()
        self.adapter = payload["adapter"]
        self.status.setText(f"Done: {Path(self.adapter).name}")
        self.show_result(payload)

    def show_result(self, payload: dict) -> None:
        """The result card, with a warning when the answers after training loop."""
        self.result.setPlainText(result_text(payload))
        self.result.show()
        warning = repetition_warning(payload.get("samples", []))
        self.warning.setText(warning)
        self.warning.setVisible(bool(warning))
        self.use_button.show()

    @Slot()
    def _on_use(self) -> None:
        if self.adapter:
            self.use_adapter.emit(self.adapter)

    def show_use(self, text: str) -> None:
        """Beside "Use this adapter": queued behind indexing, in use, or why not."""
        self.use_state.setText(text)


def repetition_warning(samples: list[dict]) -> str:
    """A warning when answers after training repeat themselves ("" when none does)."""
    looping = [n for n, s in enumerate(samples, 1) if repeats(s.get("after", ""))]
    if not looping:
        return ""
    share = max(repeated_share(samples[n - 1]["after"]) for n in looping)
    before = sum(repeats(samples[n - 1].get("before", "")) for n in looping)
    also = " (they did before training too)" if before == len(looping) else ""
    return (
        f"⚠ The answers after training repeat themselves in {len(looping)} of {len(samples)} "
        f"samples (up to {share:.0%} of their phrases said again){also}. The adapter may "
        "loop: train fewer epochs, or on more and more varied examples."
    )


def result_text(payload: dict) -> str:
    """The result card: figures, then before/after answers to held-out prompts."""
    val = payload.get("val_loss")
    lines = [
        f"{payload['steps']} steps on {payload['examples']} examples in {payload['seconds']:.0f} s "
        f"({payload['tokens_per_s']:.0f} tokens/s on {payload['device']}); "
        f"loss {payload['train_loss']:.3f}"
        + (f", validation {val:.3f}" if val is not None else ""),
        f"Adapter: {payload['adapter']}",
        "",
    ]
    for sample in payload.get("samples", []):
        lines += [
            f"Prompt: {sample['prompt'][-300:]}",
            f"  expected: {sample['expected']}",
            f"  before:   {sample['before']}",
            f"  after:    {sample['after']}" + ("  ⟲ repeats" if repeats(sample["after"]) else ""),
            "",
        ]
    return "\n".join(lines)
