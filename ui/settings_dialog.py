"""Settings: the model file, generation parameters, retrieval, the system prompt."""

from __future__ import annotations

import copy
import os

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.answer.prompting import RAG_SYSTEM_PROMPT
from engine.settings import Settings

BUNDLED = "Gemma 3 270M (bundled)"


class SettingsDialog(QDialog):
    """Edits a copy of the settings; `result_settings()` returns it after Save."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Quire settings")
        self.setMinimumWidth(640)
        self.settings = copy.deepcopy(settings)
        form = QFormLayout()
        form.addRow("Model", self._model_row())
        hint = QLabel("Any local GGUF file works. Nothing is downloaded.")
        hint.setObjectName("muted")
        form.addRow("", hint)
        self._add_fields(form, settings)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def _add_fields(self, form: QFormLayout, settings: Settings) -> None:
        self.threads = QSpinBox(self, minimum=0, maximum=os.cpu_count() or 64)
        self.threads.setSpecialValueText("auto (free cores)")
        self.threads.setToolTip(
            "Auto: each answer uses the cores other programs leave free when it starts"
        )
        self.threads.setValue(settings.threads or 0)
        self.context = QSpinBox(self, minimum=512, maximum=131072, singleStep=512)
        self.context.setValue(settings.context_size)
        self.temperature = QDoubleSpinBox(self, minimum=0.0, maximum=2.0, singleStep=0.1)
        self.temperature.setValue(settings.temperature)
        self.max_tokens = QSpinBox(self, minimum=16, maximum=8192, singleStep=64)
        self.max_tokens.setValue(settings.max_tokens)
        self.top_k = QSpinBox(self, minimum=1, maximum=50)
        self.top_k.setValue(settings.top_k)
        self.min_score = QDoubleSpinBox(self, minimum=0.0, maximum=1.0, singleStep=0.05)
        self.min_score.setValue(settings.min_score)
        self.min_score.setToolTip("Passages less similar to the question than this are left out")
        self.prompt = QPlainTextEdit(self)
        self.prompt.setPlaceholderText(RAG_SYSTEM_PROMPT)
        self.prompt.setPlainText(settings.system_prompt or "")
        self.prompt.setFixedHeight(110)
        for label, widget in (
            ("Threads", self.threads),
            ("Context size (tokens)", self.context),
            ("Temperature", self.temperature),
            ("Answer length (tokens)", self.max_tokens),
            ("Sources per answer (top-k)", self.top_k),
            ("Score threshold", self.min_score),
            ("System prompt", self.prompt),
        ):
            form.addRow(label, widget)

    def _model_row(self) -> QWidget:
        box = QWidget(self)
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        self.model = QComboBox(box)
        self.model.addItem(BUNDLED, None)
        if self.settings.model_path:
            self.model.addItem(self.settings.model_path, self.settings.model_path)
            self.model.setCurrentIndex(1)
        browse = QPushButton("Choose GGUF…", box)
        browse.clicked.connect(self.choose_model)
        row.addWidget(self.model, 1)
        row.addWidget(browse)
        return box

    def choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a model", "", "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.set_model_path(path)

    def set_model_path(self, path: str | None) -> None:
        if path is None:
            self.model.setCurrentIndex(0)
            return
        index = self.model.findData(path)
        if index < 0:
            self.model.addItem(path, path)
            index = self.model.count() - 1
        self.model.setCurrentIndex(index)

    def result_settings(self) -> Settings:
        """The edited settings (the original object is left alone)."""
        s = self.settings
        s.model_path = self.model.currentData()
        s.threads = self.threads.value() or None
        s.context_size = self.context.value()
        s.temperature = round(self.temperature.value(), 2)
        s.max_tokens = self.max_tokens.value()
        s.top_k = self.top_k.value()
        s.min_score = round(self.min_score.value(), 2)
        s.system_prompt = self.prompt.toPlainText().strip() or None
        return s
