"""The Models window's server section: answer with a model server (Ollama, LM Studio,
llama.cpp's server, vLLM, another Quire) instead of the local GGUF.

"Test connection" lists the server's models in a job on the runner's "probe" lane. The
panel only asks: the window applies a connection through the engine thread (the key
goes to `server_key`, never into settings.json) and tells the panel what is in use now.
"""

from __future__ import annotations

import html
import os

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from engine.answer.remote import KEY_ENV, PRESETS, Server, list_models, normalize_url
from engine.settings import Settings
from engine.types import UserError
from ui.runner import Request, Runner

PROBE_TIMEOUT_S = 10.0  # a model list is quick; a server that takes longer is not ready
OTHER = "Other address"
HINT = (
    "Ollama, LM Studio, llama.cpp's server, vLLM or another Quire answers Base and RAG "
    "questions: your documents stay here, each question goes to it with its passages."
)


def in_use_text(settings: Settings) -> str:
    """Which model answers, as the Models window says it (rich text)."""
    if settings.server_url:
        model = html.escape(settings.server_model or "its first model")
        return (
            f"Answers come from <b>{model}</b> on the model server at "
            f"<b>{html.escape(settings.server_url)}</b> (Base and RAG; adapters need the "
            "local model). Your questions and the passages found are sent to it."
        )
    name = os.path.basename(settings.model_path) if settings.model_path else ""
    return (
        f"Answers come from <b>{html.escape(name or 'Gemma 3 270M (bundled)')}</b>, a local "
        "GGUF model on this computer."
    )


class ServerPanel(QGroupBox):
    """Base URL (with presets), API key, Test connection, the model, Connect, Disconnect.

    Signals: connect_requested(url, model, key: str, or None to keep the stored one),
    disconnect_requested().
    """

    connect_requested = Signal(str, str, object)
    disconnect_requested = Signal()

    def __init__(
        self, settings: Settings, key: str | None, runner: Runner, parent: QWidget | None = None
    ) -> None:
        super().__init__("Connect to a model server", parent)
        self.runner = runner
        self._probe: Request | None = None  # the test under way
        self.connected = False
        form = QFormLayout(self)
        form.addRow("Server", self._url_row())
        self.key = QLineEdit(self)
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_locked = bool(os.environ.get(KEY_ENV))
        if self.key_locked:
            self.key.setEnabled(False)
            self.key.setPlaceholderText(f"set by ${KEY_ENV}")
        else:
            self.key.setText(key or "")
            self.key.setPlaceholderText("optional: most servers on this computer need none")
        self.key.setToolTip("Kept in the data folder's server_key, readable by you alone")
        form.addRow("API key", self.key)
        form.addRow("Model", self._model_row())
        self.setStyleSheet(
            "QPushButton#primary:disabled { background: #c7d2fe; border-color: #c7d2fe; }"
        )
        self.message = QLabel(HINT, self)
        self.message.setObjectName("muted")
        self.message.setWordWrap(True)
        form.addRow("", self.message)
        self.show_settings(settings)

    def _url_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.preset = QComboBox(self)
        self.preset.addItems([*PRESETS, OTHER])
        self.preset.activated.connect(self._on_preset_activated)
        self.url = QLineEdit(self)
        self.url.setPlaceholderText(PRESETS["Ollama"])
        self.url.textEdited.connect(self._on_url_edited)
        self.test_button = QPushButton("Test connection", self)
        self.test_button.clicked.connect(self.test)
        row.addWidget(self.preset)
        row.addWidget(self.url, 1)
        row.addWidget(self.test_button)
        return row

    def _model_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.model = QComboBox(self)
        self.model.setMinimumWidth(260)
        self.model.setPlaceholderText("Test the connection to list its models")
        self.connect_button = QPushButton("Connect", self)
        self.connect_button.setObjectName("primary")
        self.connect_button.clicked.connect(self.connect_server)
        self.disconnect_button = QPushButton("Disconnect", self)
        self.disconnect_button.setToolTip("Answer with the local model again")
        self.disconnect_button.clicked.connect(self.disconnect_requested)
        row.addWidget(self.model, 1)
        row.addWidget(self.connect_button)
        row.addWidget(self.disconnect_button)
        return row

    # -- what is in use ----------------------------------------------------------------

    def show_settings(self, settings: Settings) -> None:
        """The server in use (its URL and model in the fields), or none."""
        self.connected = bool(settings.server_url)
        if settings.server_url:
            self.url.setText(settings.server_url)
            self._match_preset()
            if settings.server_model and self.model.findText(settings.server_model) < 0:
                self.model.addItem(settings.server_model)
            self.model.setCurrentText(settings.server_model or "")
        elif not self.url.text():
            self.url.setText(PRESETS[self.preset.currentText()])
        self.disconnect_button.setEnabled(self.connected)
        self.connect_button.setEnabled(self.model.count() > 0)

    def show_result(self, text: str) -> None:
        """A line under the fields: what happened, or the one-line error."""
        self.message.setText(text)

    # -- test, connect -----------------------------------------------------------------

    def server(self) -> Server:
        """The server the fields name (raises UserError for a URL that is none)."""
        key = os.environ.get(KEY_ENV) if self.key_locked else (self.key.text().strip() or None)
        return Server(normalize_url(self.url.text()), None, key, PROBE_TIMEOUT_S)

    @Slot()
    def test(self) -> None:
        """List the server's models on the runner's "probe" lane; the window stays live."""
        if self._probe is not None:
            return
        try:
            server = self.server()
        except UserError as exc:
            self.show_result(str(exc))
            return
        self.url.setText(server.url)
        self.test_button.setEnabled(False)
        self.show_result(f"Asking {server.host} for its models…")

        def listed(models: list) -> None:  # unless the window closed meanwhile
            if probe is self._probe:
                self._on_listed(models)

        def failed(message: str) -> None:
            if probe is self._probe:
                self._on_failed(message)

        probe = self.runner.run_job("probe", lambda _r: list_models(server), listed, failed)
        self._probe = probe

    @Slot()
    def connect_server(self) -> None:
        model = self.model.currentText()
        if not model:
            self.show_result("Test the connection first, then pick one of its models.")
            return
        key = None if self.key_locked else self.key.text().strip()
        self.show_result(f"Connecting to {model}…")
        self.connect_requested.emit(normalize_url(self.url.text()), model, key)

    def _on_listed(self, models: list) -> None:
        self._end()
        current = self.model.currentText()
        self.model.clear()
        self.model.addItems(models)
        self.model.setCurrentIndex(models.index(current) if current in models else 0)
        self.connect_button.setEnabled(bool(models))
        count = f"{len(models)} model{'s' if len(models) != 1 else ''}"
        self.show_result(
            f"The server answers: {count}. Pick one and click Connect."
            if models
            else "The server answers but offers no model: load one in it first."
        )

    def _on_failed(self, message: str) -> None:
        self._end()
        self.show_result(message)

    @Slot(int)
    def _on_preset_activated(self, index: int) -> None:
        label = self.preset.itemText(index)
        if label in PRESETS:
            self.url.setText(PRESETS[label])
            self._on_url_edited()

    @Slot(str)
    def _on_url_edited(self, _text: str = "") -> None:
        """Another address: its model list is not known until it is tested."""
        self._match_preset()
        self.model.clear()
        self.connect_button.setEnabled(False)

    def _match_preset(self) -> None:
        text = self.url.text().strip().rstrip("/")
        label = next((k for k, v in PRESETS.items() if v == text), OTHER)
        self.preset.setCurrentText(label)

    def _end(self) -> None:
        self._probe = None
        self.test_button.setEnabled(True)

    def shutdown(self) -> None:
        """The window closes: a test under way is stopped and its answer left unread."""
        if self._probe is not None:
            self._probe.stop()
        self._probe = None
