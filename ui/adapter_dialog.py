"""The Adapter dialog: load a GGUF LoRA adapter with a scale, switch it off, import PEFT.

Every change goes through the engine thread (`Bridge.set_adapter`, `Bridge.import_adapter`);
the engine checks an adapter against the loaded model first, so a mismatch shows its message
here and leaves the current adapter as it was. The adapter in use is named from the engine's
status, as the status bar names it; a change sent while indexing says it is queued.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.paths import default_data_dir, models_dir
from engine.types import Status
from models.registry import adapters_dir
from ui.bridge import Bridge

ABOUT = (
    "A LoRA adapter changes how the model behaves (style, format, vocabulary) without "
    "reloading it; it is used by the LoRA and Hybrid modes. It must be made for the loaded "
    "model: Quire checks before applying it."
)


def adapter_name(adapter: str | None) -> str:
    """An adapter file by its name, a label as it is, "" for none."""
    if not adapter:
        return ""
    return Path(adapter).stem if adapter.endswith(".gguf") else adapter


def adapter_text(adapter: str | None, scale: float) -> str:
    """What the status bar shows."""
    if not adapter:
        return "No adapter"
    return f"Adapter: {adapter_name(adapter)} ×{scale:g}"


class AdapterDialog(QDialog):
    """Pick, apply, rescale or switch off the adapter; import a PEFT folder.

    Signals: applied(path or None, scale), failed(message).
    """

    applied = Signal(object, float)
    failed = Signal(str)

    def __init__(
        self, bridge: Bridge, path: str | None, scale: float, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("LoRA adapter")
        self.setMinimumWidth(600)
        self.bridge = bridge
        about = QLabel(ABOUT, self)
        about.setObjectName("muted")
        about.setWordWrap(True)
        self.current = QLabel(adapter_text(path, scale), self)
        self.current.setObjectName("sectionTitle")
        form = QFormLayout()
        self.saved = QComboBox(self)
        self.saved.setToolTip("Adapters trained in the Fine-tune tab or imported from PEFT")
        self.saved.activated.connect(self._on_saved_chosen)
        form.addRow("Your adapters", self.saved)
        form.addRow("Adapter file", self._file_row(path))
        self.scale = QDoubleSpinBox(self, minimum=0.0, maximum=2.0, singleStep=0.1, value=scale)
        self.scale.setToolTip("How strongly the adapter acts: 0 is off, 1 as trained")
        form.addRow("Scale", self.scale)
        self.busy = QProgressBar(self, minimum=0, maximum=0)
        self.busy.setFormat("Converting…")
        self.busy.hide()
        self.message = QLabel("", self)
        self.message.setWordWrap(True)
        self.message.setObjectName("muted")
        layout = QVBoxLayout(self)
        for widget in (about, self.current):
            layout.addWidget(widget)
        layout.addLayout(form)
        layout.addLayout(self._button_row())
        layout.addWidget(self.busy)
        layout.addWidget(self.message)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)
        layout.addWidget(close)
        bridge.status_changed.connect(self.show_status)

    @Slot(object)
    def show_status(self, status: Status) -> None:
        """Name the adapter in use as the status bar does (the grounding adapter, once
        the user's own is dropped, is "grounded answers")."""
        self.current.setText(adapter_text(status.adapter, status.adapter_scale))

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        self.refresh_saved()
        super().showEvent(event)

    def refresh_saved(self) -> None:
        """List the adapters in the models folder (what `train` and imports write)."""
        folder = adapters_dir(models_dir(self.bridge.data_dir or default_data_dir()))
        self.saved.clear()
        self.saved.addItem("Choose one…", "")
        for path in sorted(folder.glob("*.gguf")):
            self.saved.addItem(path.stem, str(path))
        self.saved.setEnabled(self.saved.count() > 1)

    @Slot(int)
    def _on_saved_chosen(self, index: int) -> None:
        if self.saved.itemData(index):
            self.path.setText(self.saved.itemData(index))

    def _file_row(self, path: str | None) -> QWidget:
        box = QWidget(self)
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        self.path = QLineEdit(path or "", box)
        self.path.setPlaceholderText("adapter.gguf")
        browse = QPushButton("Choose…", box)
        browse.clicked.connect(self._on_browse)
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        return box

    def _button_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.apply_button = QPushButton("Apply", self)
        self.apply_button.setObjectName("primary")
        self.apply_button.clicked.connect(self.apply)
        self.off_button = QPushButton("Back to the default", self)
        self.off_button.setToolTip(
            "Drop your adapter: the bundled model goes back to Quire's grounded answers"
        )
        self.off_button.clicked.connect(self.switch_off)
        self.import_button = QPushButton("Import PEFT adapter…", self)
        self.import_button.setToolTip("Convert a Hugging Face PEFT folder to GGUF, then load it")
        self.import_button.clicked.connect(self._on_import_clicked)
        for button in (self.apply_button, self.off_button):
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(self.import_button)
        return row

    @Slot()
    def apply(self) -> None:
        path = self.path.text().strip()
        if not path:
            self.message.setText("Choose an adapter file first.")
            return
        self._set_busy(True, self.bridge.queued_note() or "Checking the adapter against the model…")
        self._submit(self.bridge.set_adapter, path)

    @Slot()
    def switch_off(self) -> None:
        self._set_busy(True, self.bridge.queued_note())
        self._submit(self.bridge.set_adapter, None)

    def import_folder(self, folder: str) -> None:
        """Convert a PEFT folder for the loaded model, then load the result."""
        self._set_busy(True, self.bridge.queued_note() or f"Converting {Path(folder).name}…")
        self.busy.show()
        self._submit(self.bridge.import_adapter, folder)

    def _submit(self, operation: Callable[..., object], path: str | None) -> None:
        scale = self.scale.value()
        operation(
            path,
            scale,
            done=lambda used: self._on_adapter_changed(used, scale),
            failed=self._on_failed,
        )

    def _set_busy(self, busy: bool, message: str) -> None:
        for button in (self.apply_button, self.off_button, self.import_button):
            button.setEnabled(not busy)
        if not busy:
            self.busy.hide()
        self.message.setStyleSheet("")
        self.message.setText(message)

    @Slot()
    def _on_browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a LoRA adapter", "", "GGUF adapters (*.gguf);;All files (*)"
        )
        if path:
            self.path.setText(path)

    @Slot()
    def _on_import_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "PEFT adapter folder")
        if folder:
            self.import_folder(folder)

    def _on_adapter_changed(self, path: str | None, scale: float) -> None:
        self._set_busy(False, "Applied." if path else "Back to the default.")
        if path:  # the status, just before, named the adapter in use
            self.path.setText(path)
        self.applied.emit(path, scale)

    def _on_failed(self, message: str) -> None:
        if not self.isVisible():
            self.bridge.on_failure(f"Could not load the adapter: {message}")
        self._set_busy(False, message)
        self.message.setStyleSheet("color: #b91c1c;")
        self.failed.emit(message)
