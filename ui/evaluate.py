"""The Evaluate page: run a question file, see the scores per mode as a table and a chart.

The evaluation runs on the worker thread, on the window's one Engine (`Lab.evaluate`);
progress and the report come back as signals.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from PySide6.QtCore import QRectF, Qt, Signal, Slot
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.answer.modes import MODES, preferred
from engine.eval.evaluation import EvalConfig, EvalProgress, EvalReport, format_metric, table_rows
from engine.types import Status
from ui.banner import human_duration
from ui.bridge import Bridge
from ui.runner import Request

COLUMNS = (
    ("n", "n"), ("hit@1", "hit_at_1"), ("hit@5", "hit_at_5"), ("MRR", "mrr"),
    ("answer\ncontained", "answer_containment"), ("citation\nprecision", "citation_precision"),
    ("absent:\ndon't know", "absent_dont_know"), ("prompt\nechoed", "prompt_echo"),
    ("retrieval\nms", "retrieval_s"), ("first\ntoken s", "first_token_s"),
    ("total s", "total_s"), ("tokens/s", "tokens_per_s"),
)  # fmt: skip
CHART_METRICS = COLUMNS[1:7]
ERROR_STYLE = (
    "QLabel#error { color: #b91c1c; background: #fef2f2; border: 1px solid #fecaca;"
    " border-radius: 4px; padding: 6px; font-weight: 600; }"
)
MEMORY_FILE = "evaluate.json"  # the last question file and modes, in the data folder
PALETTE = ("#8da0cb", "#66c2a5", "#a6d854", "#fc8d62", "#e78ac3", "#ffd92f", "#e5c494")


class EvaluatePage(QWidget):
    """Pick a question file and modes, run, see the results.

    Signals: evaluation_progressed(EvalProgress), evaluation_finished(EvalReport),
    evaluation_failed(str).
    """

    evaluation_progressed = Signal(object)
    evaluation_finished = Signal(object)
    evaluation_failed = Signal(str)

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.running = False
        self._default_path: Path | None = None  # the test set built from chat answers
        self._request: Request | None = None
        self._chosen = False  # modes chosen by the user (or remembered): keep them
        self._build()
        bridge.status_changed.connect(self._on_status)

    @property
    def default_path(self) -> Path | None:
        return self._default_path

    @default_path.setter
    def default_path(self, path: Path | None) -> None:
        """The test set built from chat answers; its folder (the data folder) also keeps
        the last question file and modes (MEMORY_FILE), restored here."""
        self._default_path = path
        memory = self._memory()
        if memory is None:
            return
        try:
            saved = json.loads(memory.read_text(encoding="utf-8"))
            self.path.setText(str(saved.get("file") or ""))
            modes = [m for m in saved.get("modes") or [] if m in self.mode_boxes]
        except (OSError, ValueError, AttributeError):
            return  # nothing remembered (or a damaged file): the defaults
        if modes:
            for mode, box in self.mode_boxes.items():
                box.setChecked(mode in modes)
            self._chosen = True

    def _memory(self) -> Path | None:
        return self._default_path.parent / MEMORY_FILE if self._default_path else None

    def _remember(self, path: Path) -> None:
        memory = self._memory()
        if memory is None:
            return
        modes = [m for m, box in self.mode_boxes.items() if box.isChecked()]
        with contextlib.suppress(OSError):  # remembering is a convenience; the run goes on
            memory.write_text(json.dumps({"file": str(path), "modes": modes}), encoding="utf-8")

    @Slot(object)
    def _on_status(self, status: Status) -> None:
        """Until the user picks, the modes are the app's default one (as the chat's)."""
        if self._chosen:
            return
        default = status.default_mode
        for mode, box in self.mode_boxes.items():
            box.blockSignals(True)
            box.setChecked(mode == default)
            box.blockSignals(False)

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.addLayout(self._file_row())
        self.error = QLabel("", self)  # under the file row, where the eye is after Run
        self.error.setObjectName("error")
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        layout.addWidget(self.error)
        layout.addLayout(self._options_row())
        self.progress = QProgressBar(self, minimum=0, maximum=1, value=0)
        self.status = QLabel("Pick a question file (JSONL) and press Run.", self)
        self.status.setObjectName("muted")
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels([name for name, _ in COLUMNS])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.chart = BarChart(self)
        for widget in (self.progress, self.status, self.table, self.chart):
            layout.addWidget(widget)
        layout.setStretch(layout.indexOf(self.table), 1)
        layout.setStretch(layout.indexOf(self.chart), 2)

    def _file_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.path = QLineEdit(self)
        self.path.setPlaceholderText("questions.jsonl")
        browse = QPushButton("Choose…", self)
        browse.clicked.connect(self._on_browse)
        self.run_button = QPushButton("Run", self)
        self.run_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        for widget in (QLabel("Questions:", self), self.path, browse):
            row.addWidget(widget, 1 if widget is self.path else 0)
        row.addWidget(self.run_button)
        row.addWidget(self.stop_button)
        return row

    def _options_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(QLabel("Modes:", self))
        start = preferred(adapter=False)
        self.mode_boxes = {m: QCheckBox(m, self) for m in MODES}
        for m, box in self.mode_boxes.items():
            box.setChecked(m == start)
            box.toggled.connect(self._on_mode_toggled)
            row.addWidget(box)
        self.retrieval_only = QCheckBox("retrieval only (no model)", self)
        self.k = QSpinBox(self, minimum=1, maximum=50, value=5, prefix="top ")
        self.max_tokens = QSpinBox(self, minimum=1, maximum=4096, value=96, suffix=" tokens")
        self.restart = QCheckBox("start over", self)
        for widget in (self.retrieval_only, self.k, self.max_tokens, self.restart):
            row.addWidget(widget)
        row.addStretch(1)
        return row

    @Slot(bool)
    def _on_mode_toggled(self, _checked: bool) -> None:
        self._chosen = True

    def config(self) -> EvalConfig:
        """The options as chosen on the page."""
        modes = tuple(m for m, box in self.mode_boxes.items() if box.isChecked())
        return EvalConfig(
            modes=modes or (preferred(adapter=False),), k=self.k.value(),
            max_tokens=self.max_tokens.value(),
            retrieval_only=self.retrieval_only.isChecked(), restart=self.restart.isChecked(),
        )  # fmt: skip

    @Slot()
    def start(self) -> None:
        """Run the evaluation on the worker thread; the page stays responsive."""
        if self.running:
            return
        path = Path(self.path.text().strip()).expanduser()
        if not path.name and self.default_path is not None and self.default_path.is_file():
            path = self.default_path  # the questions added from chat answers
            self.path.setText(str(path))
        if not path.name:
            self.show_error(
                "Pick a question file first, or add questions from chat answers "
                "(Add to test set… under an answer)."
            )
            return
        self.show_error("")
        self._remember(path)
        self._set_running(True)
        self.status.setText(f"Running {path.name}… (requests from other tabs wait for it)")
        self._request = self.bridge.evaluate(
            str(path),
            self.config(),
            progress=self._on_progressed,
            done=self._on_reported,
            failed=self._on_failed,
        )

    @Slot()
    def stop(self) -> None:
        """Stop after the current answer; what is done is kept and the next Run resumes."""
        if self.running and self._request is not None:
            self._request.stop()
            self.status.setText("Stopping after the current answer…")

    def _set_running(self, running: bool) -> None:
        self.running = running
        if not running:
            self._request = None
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    @Slot()
    def _on_browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Question file", "", "Questions (*.jsonl);;All files (*)"
        )
        if path:
            self.path.setText(path)

    def _on_progressed(self, p: EvalProgress) -> None:
        self.progress.setMaximum(1000)  # the share of the run's time, not of its steps
        self.progress.setValue(round(1000 * p.fraction))
        left = f" · about {human_duration(p.eta_s)} left" if p.eta_s is not None else ""
        answers = f"answers {p.answers_done}/{p.answers_total} · " if p.answers_total else ""
        self.status.setText(f"{answers}{p.label} · {p.elapsed_s:.0f} s{left}")
        self.evaluation_progressed.emit(p)

    def _on_reported(self, report: EvalReport) -> None:
        self._set_running(False)
        self.show_report(report)
        self.evaluation_finished.emit(report)

    def show_error(self, message: str) -> None:
        """A problem in red under the file row (hidden when `message` is empty)."""
        self.error.setText(message)
        self.error.setVisible(bool(message))

    def _on_failed(self, message: str) -> None:
        self._set_running(False)
        self.show_error(message)
        self.status.setText("Not run: see the message above.")
        if not self.isVisible():
            self.bridge.on_failure(f"Could not evaluate: {message}")
        self.evaluation_failed.emit(message)

    def show_report(self, report: EvalReport) -> None:
        """Fill the table and the chart; say what was skipped or left to do."""
        rows = table_rows(report)
        self.table.setRowCount(len(rows))
        self.table.setVerticalHeaderLabels([label for label, _ in rows])
        for r, (_, metrics) in enumerate(rows):
            for c, (_, key) in enumerate(COLUMNS):
                value = metrics.get(key)
                text = str(value) if key == "n" else format_metric(key, value)
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        self.chart.set_rows(rows)
        notes = [f"{report.computed} answers generated, {report.resumed} reused."]
        notes += [f"Mode {m} skipped: {why}" for m, why in report.skipped.items()]
        if not report.complete:
            notes.append("Stopped before the end: press Run to resume.")
        self.status.setText("  ".join(notes))


class BarChart(QWidget):
    """Grouped bars: one group per metric (0 to 1), one bar per mode or search variant."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[tuple[str, dict[str, object]]] = []
        self.setMinimumHeight(220)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_rows(self, rows: list[tuple[str, dict[str, object]]]) -> None:
        self.rows = rows
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        self.drawn_text: list[QRectF] = []  # every label's box: none may overlap another
        if not self.rows:
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No results yet")
            return
        legend_bottom = self._draw_legend(painter)
        line = painter.fontMetrics().height()
        plot = QRectF(self.rect()).adjusted(40, legend_bottom + 22, -12, -(2 * line + 8))
        self._draw_axes(painter, plot)
        group_w = plot.width() / len(CHART_METRICS)
        bar_w = group_w * 0.8 / len(self.rows)
        for g, (name, key) in enumerate(CHART_METRICS):
            x0 = plot.left() + g * group_w + group_w * 0.1
            for i, (_, metrics) in enumerate(self.rows):
                value = metrics.get(key)
                if isinstance(value, (int, float)):
                    h = plot.height() * max(0.0, min(1.0, float(value)))
                    bar = QRectF(x0 + i * bar_w, plot.bottom() - h, bar_w - 2, h)
                    painter.fillRect(bar, QColor(PALETTE[i % len(PALETTE)]))
                    self._draw_value(painter, bar, float(value))
            self._draw_group_label(painter, name, plot, g, group_w, line)

    def _draw_group_label(
        self, painter: QPainter, name: str, plot: QRectF, g: int, group_w: float, line: int
    ) -> None:
        """The metric's name under its group, on up to two lines, elided to the group's
        width so neighbours never run into each other."""
        metrics = painter.fontMetrics()
        width = max(8.0, group_w - 6)
        words = name.replace("\n", " ").split()
        lines: list[str] = []
        for word in words:
            if lines and metrics.horizontalAdvance(f"{lines[-1]} {word}") <= width:
                lines[-1] = f"{lines[-1]} {word}"
            else:
                lines.append(word)
        if len(lines) > 2:
            lines = [lines[0], " ".join(lines[1:])]
        painter.setPen(self.palette().text().color())
        left = plot.left() + g * group_w + 3
        for n, text in enumerate(lines):
            shown = metrics.elidedText(text, Qt.TextElideMode.ElideRight, int(width))
            box = QRectF(left, plot.bottom() + 4 + n * line, width, line)
            painter.drawText(box, Qt.AlignmentFlag.AlignHCenter, shown)
            used = metrics.horizontalAdvance(shown)
            self.drawn_text.append(QRectF(box.center().x() - used / 2, box.top(), used, line))

    def _draw_axes(self, painter: QPainter, plot: QRectF) -> None:
        grid = QColor(self.palette().mid().color())
        for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = plot.bottom() - plot.height() * tick
            painter.setPen(grid)
            painter.drawLine(int(plot.left()), int(y), int(plot.right()), int(y))
            painter.setPen(self.palette().text().color())
            painter.drawText(QRectF(0, y - 8, 34, 16), Qt.AlignmentFlag.AlignRight, f"{tick:g}")

    def _draw_value(self, painter: QPainter, bar: QRectF, value: float) -> None:
        text = f"{value:.2f}"
        used = painter.fontMetrics().horizontalAdvance(text)
        if used > bar.width():
            return  # wider than its bar: it would cover the neighbour's (the table has it)
        painter.setPen(self.palette().text().color())
        above = QRectF(bar.center().x() - used / 2, bar.top() - 16, used, 14)
        painter.drawText(above, Qt.AlignmentFlag.AlignHCenter, text)
        self.drawn_text.append(above)

    def _draw_legend(self, painter: QPainter) -> float:
        """One entry per row, wrapped onto more lines when the width runs out; returns
        the legend's bottom edge."""
        metrics = painter.fontMetrics()
        x, y = 40.0, 6.0
        for i, (label, _) in enumerate(self.rows):
            width = 16 + metrics.horizontalAdvance(label)
            if x > 40 and x + width > self.width() - 8:
                x, y = 40.0, y + 20
            painter.fillRect(QRectF(x, y + 4, 12, 12), QColor(PALETTE[i % len(PALETTE)]))
            painter.setPen(self.palette().text().color())
            box = QRectF(x + 16, y, metrics.horizontalAdvance(label), 20)
            painter.drawText(box, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, label)
            self.drawn_text.append(box)
            x += width + 12
        return y + 20
