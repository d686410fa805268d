"""Serving this Quire to other tools from the app: `main.py serve` as a child process, a
job on the runner's "serve" lane (`ui.runner.run_child`). The API answers from an engine
of its own over the same data folder, so the window's engine, its answers and its Stop are
untouched by what the API is asked.

One switch (`ServeSwitch`) owns the process and shows it in three places: the File menu
entry, the status bar and the Models window's section (`ServePanel`).
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QCheckBox, QGroupBox, QHBoxLayout, QLabel, QSpinBox, QWidget

from ui.runner import Finished, Request, Runner, run_child

DEFAULT_PORT = 8765  # cli.api.DEFAULT_PORT, without importing Starlette into the app
_READY = re.compile(r"Quire serves on (\S+)")
STOP_WAIT_S = 10.0  # after SIGTERM, then it is killed


class ServeProcess(QObject):
    """`main.py --data-dir D serve --port P`, started and stopped by the window.

    Signals: serving(address): it listens (its line "Quire serves on ADDRESS");
    failed(message): it would not start, or ended by itself (its last error line);
    stopped(): it ended after `stop()`.
    """

    serving = Signal(str)
    failed = Signal(str)
    stopped = Signal()

    def __init__(self, data_dir: Path, runner: Runner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir, self.runner = Path(data_dir), runner
        self.port = DEFAULT_PORT
        self.address: str | None = None  # set once it listens
        self.request: Request | None = None  # the child process's job, while it runs
        self.pid: int | None = None

    @property
    def running(self) -> bool:
        """Started and not yet ended (it may still be loading the models)."""
        return self.request is not None

    def start(self, port: int | None = None) -> None:
        if self.request is not None:
            return
        self.port = self.port if port is None else port
        args = ["--data-dir", str(self.data_dir), "serve", "--port", str(self.port)]
        self.address, self.pid = None, None
        self.request = self.runner.run_job(
            "serve",
            lambda request: run_child(
                request, args, self._on_line, stop_signal=signal.SIGTERM,
                kill_after_s=STOP_WAIT_S, started=self._on_started,
            ),
            self._on_finished,
            self._on_failed,
        )  # fmt: skip

    def stop(self) -> None:
        """End it (SIGTERM, then a kill if it lingers); `stopped` follows."""
        if self.request is not None:
            self.request.stop()

    def _on_started(self, pid: int) -> None:
        self.pid = pid

    def _on_line(self, line: str) -> None:
        found = _READY.search(line)
        if found and self.address is None and self.request is not None:
            self.address = found.group(1)
            self.serving.emit(self.address)

    def _on_failed(self, message: str) -> None:
        self._end()
        self.failed.emit(message)

    def _on_finished(self, finished: Finished) -> None:
        request = self.request
        listened = self.address is not None
        self._end()
        if request is not None and request.cancel.is_set():
            self.stopped.emit()
        else:
            self.failed.emit(self._why(finished, listened))

    @staticmethod
    def _why(finished: Finished, listened: bool) -> str:
        """Its own last error line (`quire: ...`, else any), as one line."""
        lines = [line.removeprefix("quire:").strip() for line in finished.lines]
        last = finished.error() or (lines or [f"it exited with code {finished.code}"])[-1]
        return f"serving stopped: {last}" if listened else f"could not serve: {last}"

    def _end(self) -> None:
        self.request, self.address, self.pid = None, None, None


class ServePanel(QGroupBox):
    """Serve on this machine: a switch, the port, the address while it serves.

    Signals: serve_toggled(on, port).
    """

    serve_toggled = Signal(bool, int)

    def __init__(self, port: int = DEFAULT_PORT, parent: QWidget | None = None) -> None:
        super().__init__("Serve on this machine", parent)
        row = QHBoxLayout(self)
        self.switch = QCheckBox("Let other apps on this computer ask Quire", self)
        self.switch.setToolTip(
            "An OpenAI-compatible API on 127.0.0.1 (editors, scripts, another Quire): "
            "the model quire:<collection> answers from your documents, with sources"
        )
        self.port = QSpinBox(self, minimum=1024, maximum=65535, value=port)
        self.port.setPrefix("port ")
        self.switch.clicked.connect(lambda on: self.serve_toggled.emit(on, self.port.value()))
        self.address = QLabel("", self)
        self.address.setObjectName("muted")
        self.address.setWordWrap(True)
        row.addWidget(self.switch)
        row.addWidget(self.port)
        row.addWidget(self.address, 1)

    def show_state(self, running: bool, text: str) -> None:
        """On or off (the switch follows the process, not the click), and a line."""
        self.switch.setChecked(running)
        self.port.setEnabled(not running)
        self.address.setText(text)


class ServeSwitch(QObject):
    """The one serve process, and what shows it: `action` (a checkable menu entry),
    `label` (for the status bar) and the Models window's `ServePanel` while it is open.

    Signals: serving(address), failed(message): for the window to tell the user.
    """

    serving = Signal(str)
    failed = Signal(str)

    def __init__(self, data_dir: Path, runner: Runner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.process = ServeProcess(data_dir, runner, self)
        self.action = QAction("Ser&ve on this machine", self, checkable=True)
        self.action.setToolTip("An OpenAI-compatible API for other apps, on 127.0.0.1")
        self.action.triggered.connect(lambda on: self.set_on(on, self.process.port))
        self.label = QLabel()
        self.label.hide()
        self.panel: ServePanel | None = None
        self._note = ""
        self.process.serving.connect(self._on_serving)
        self.process.failed.connect(self._on_failed)
        self.process.stopped.connect(self.show)

    def attach(self, panel: ServePanel) -> None:
        """Show the state in (and take the clicks of) the Models window's section."""
        self.panel = panel
        panel.port.setValue(self.process.port)
        panel.serve_toggled.connect(self.set_on)
        self.show()

    def set_on(self, on: bool, port: int) -> None:
        self._note = ""
        if on:
            self.process.start(port)
        else:
            self.process.stop()
        self.show()

    def stop(self) -> None:
        """When the app closes: end it (the runner's close waits; a kill after a few
        seconds)."""
        self.process.stop()

    @Slot(str)
    def _on_serving(self, address: str) -> None:
        self.show()
        self.serving.emit(address)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._note = message
        self.show()
        self.failed.emit(message)

    @Slot()
    def show(self) -> None:
        """The menu entry, the status bar and the panel follow the process."""
        process = self.process
        address, running = process.address, process.running
        if address:
            text = f"Serving on {address} (models quire:<collection>)"
        elif running:
            text = "Starting (loading the models)…"
        else:
            text = self._note or "Off."
        self.action.setChecked(running)
        self.label.setText(f"API: {address}" if address else "API: starting…")
        self.label.setToolTip(text)
        self.label.setVisible(running)
        if self.panel is not None:
            self.panel.show_state(running, text)
