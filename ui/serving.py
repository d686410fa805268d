"""Serving this Quire to other tools from the app: `main.py serve` as a child process
(QProcess). The API answers from an engine of its own over the same data folder, so the
window's engine, its answers and its Stop are untouched by what the API is asked.

One switch (`ServeSwitch`) owns the process and shows it in three places: the File menu
entry, the status bar and the Models window's section (`ServePanel`).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, Signal, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QCheckBox, QGroupBox, QHBoxLayout, QLabel, QSpinBox, QWidget

from ui.finetune_reader import main_script

DEFAULT_PORT = 8765  # cli.api.DEFAULT_PORT, without importing Starlette into the app
_READY = re.compile(r"Quire serves on (\S+)")
STOP_WAIT_MS = 10_000


class ServeProcess(QObject):
    """`main.py --data-dir D serve --port P`, started and stopped by the window.

    Signals: serving(address): it listens (its line "Quire serves on ADDRESS");
    failed(message): it would not start, or ended by itself (its last error line);
    stopped(): it ended after `stop()`.
    """

    serving = Signal(str)
    failed = Signal(str)
    stopped = Signal()

    def __init__(self, data_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = Path(data_dir)
        self.port = DEFAULT_PORT
        self.address: str | None = None  # set once it listens
        self.process: QProcess | None = None
        self._stderr = b""
        self._lines: list[str] = []
        self._stopping = False

    @property
    def running(self) -> bool:
        """Started and not yet ended (it may still be loading the models)."""
        return self.process is not None

    def start(self, port: int | None = None) -> None:
        if self.process is not None:
            return
        self.port = self.port if port is None else port
        process = QProcess(self)
        process.setProgram(sys.executable)
        args = ["--data-dir", str(self.data_dir), "serve", "--port", str(self.port)]
        process.setArguments([main_script(), *args])
        process.setStandardOutputFile(QProcess.nullDevice())  # it writes to stderr only
        process.readyReadStandardError.connect(self._on_stderr)
        process.finished.connect(self._on_finished)
        process.errorOccurred.connect(self._on_error)
        self.process, self._stderr, self._lines = process, b"", []
        self.address, self._stopping = None, False
        process.start()

    def stop(self, wait: bool = False) -> None:
        """End it (SIGTERM, then a kill if it lingers when `wait`); `stopped` follows."""
        process = self.process
        if process is None:
            return
        self._stopping = True
        process.terminate()
        if wait and not process.waitForFinished(STOP_WAIT_MS):
            process.kill()
            process.waitForFinished(STOP_WAIT_MS)

    @Slot()
    def _on_stderr(self) -> None:
        assert self.process is not None
        self._stderr += bytes(self.process.readAllStandardError().data())
        *lines, self._stderr = self._stderr.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            self._lines = [*self._lines[-19:], line]
            found = _READY.search(line)
            if found and self.address is None:
                self.address = found.group(1)
                self.serving.emit(self.address)

    @Slot(QProcess.ProcessError)
    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self.process is not None:
            message = self.process.errorString()
            self._end()
            self.failed.emit(f"could not start {sys.executable}: {message}")

    @Slot(int, QProcess.ExitStatus)
    def _on_finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        if self.process is None:
            return
        self._on_stderr()
        listened = self.address is not None
        stopping = self._stopping
        self._end()
        if stopping:
            self.stopped.emit()
        else:
            self.failed.emit(self._why(code, listened))

    def _why(self, code: int, listened: bool) -> str:
        """Its own last error line (`quire: ...`, else any), as one line."""
        errors = [line.removeprefix("quire:").strip() for line in self._lines]
        quire = [
            e for line, e in zip(self._lines, errors, strict=True) if line.startswith("quire:")
        ]
        last = (quire or errors or [f"it exited with code {code}"])[-1]
        return f"serving stopped: {last}" if listened else f"could not serve: {last}"

    def _end(self) -> None:
        process, self.process = self.process, None
        self.address = None
        if process is not None:
            process.deleteLater()


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

    def __init__(self, data_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.process = ServeProcess(data_dir, self)
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
        """When the app closes: end it and wait (a kill after a few seconds)."""
        self.process.stop(wait=True)

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
