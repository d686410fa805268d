"""The app with a model server, offscreen, and no mock of HTTP: llama-cpp-python's own
OpenAI-compatible server with the bundled model on 127.0.0.1 answers the chat; the app's
"Serve on this machine" runs `main.py serve` as a child process."""
# ruff: noqa: F811 - the window fixtures are imported from test_gui_app

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt, QTimer

from tests.cli.test_server import free_port, start_llama_server, stop
from tests.ui.test_gui_app import app, indexed_dir, open_window  # noqa: F401

pytestmark = pytest.mark.gui

KEY = "sk-quire-test-123"


@pytest.fixture(scope="module")
def llama_server(llm_path: Path) -> Iterator[str]:
    proc, url = start_llama_server(llm_path)
    yield url
    stop(proc)


@pytest.fixture
def window(open_window, indexed_dir: Path, tmp_path: Path):
    data_dir = tmp_path / "data"
    shutil.copytree(indexed_dir, data_dir)
    return open_window(data_dir)


def click(qtbot, button) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


@pytest.mark.slow
def test_connect_answer_stop_and_disconnect(window, qtbot, llama_server, llm_path):
    dialog = window.open_models()
    panel = dialog.server
    panel.url.setText(llama_server)
    panel.key.setText(KEY)
    click(qtbot, panel.test_button)
    qtbot.waitUntil(lambda: panel.model.count() > 0, timeout=15_000)
    assert panel.model.currentText() == str(llm_path)  # the id the server lists
    host = llama_server.removeprefix("http://").removesuffix("/v1")
    with qtbot.waitSignal(window.bridge.status_changed, timeout=30_000):
        click(qtbot, panel.connect_button)
    assert window.model_label.text() == f"Model: {llm_path} @ {host}"
    assert "model server" in dialog.in_use.text() and panel.disconnect_button.isEnabled()
    assert "(when disconnected)" in dialog.local.topLevelItem(0).text(0)

    # The key is kept beside the settings, readable by the user alone, and nowhere else.
    key_file = window.data_dir / "server_key"
    assert key_file.read_text().strip() == KEY
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    saved = (window.data_dir / "settings.json").read_text()
    assert KEY not in saved and json.loads(saved)["server_url"] == llama_server

    # Adapters need the local model: the modes and Compare's columns say so, with the host.
    item = window.chat.mode.model().item(3)
    assert not item.isEnabled() and host in item.toolTip()
    hybrid = window.compare.columns["hybrid"]
    assert not hybrid.isEnabled() and "adapters need a local GGUF model" in hybrid.hint.text()
    assert window.compare.columns["rag"].title.text() == f"RAG · {llm_path} @ {host}"
    assert host in window.chat.empty.text() and "go to that server" in window.chat.empty.text()

    # An answer over the indexed notes streams from the server.
    tokens: list[str] = []
    window.chat.token_shown.connect(tokens.append)
    window.chat.max_tokens = 8
    assert window.chat.mode.currentData() == "rag"
    with qtbot.waitSignal(window.chat.answer_finished, timeout=120_000) as finished:
        window.chat.ask("When are the tomatoes watered?", window.chat.mode.currentData())
    answer = finished.args[0]
    assert answer.sources[0].document == "garden.md"
    assert answer.timings.tokens > 0 and "".join(tokens).strip() == answer.answer

    # Stop closes the stream: the answer ends at once, cancelled, well short of its budget.
    window.chat.max_tokens = 400
    with qtbot.waitSignal(window.chat.token_shown, timeout=60_000):
        window.chat.ask("Tell me a long story about boats.", "base")
    with qtbot.waitSignal(window.chat.answer_finished, timeout=10_000) as stopped:
        click(qtbot, window.chat.stop_button)
    assert stopped.args[0].cancelled and stopped.args[0].timings.tokens < 400

    with qtbot.waitSignal(window.bridge.status_changed, timeout=30_000):
        click(qtbot, panel.disconnect_button)
    assert window.model_label.text() == "Model: Gemma 3 270M (bundled)"
    assert window.settings.server_url is None and "local GGUF" in dialog.in_use.text()
    assert window.chat.mode.model().item(3).isEnabled()  # hybrid, with the grounding adapter
    assert "Disconnected" in panel.message.text()


def test_a_server_that_is_down_is_one_line_and_the_window_stays_live(window, qtbot):
    dialog = window.open_models()
    panel = dialog.server
    panel.url.setText(f"127.0.0.1:{free_port()}")  # nothing listens there
    ticks: list[int] = []
    probe = QTimer(interval=10)
    probe.timeout.connect(lambda: ticks.append(1))
    probe.start()
    click(qtbot, panel.test_button)
    qtbot.waitUntil(lambda: "cannot reach" in panel.message.text(), timeout=15_000)
    probe.stop()
    message = panel.message.text()
    assert message.startswith("cannot reach the model server at http://127.0.0.1:")
    assert "\n" not in message and "Traceback" not in message
    assert panel.url.text().endswith("/v1")  # the URL as it was tried
    assert panel.test_button.isEnabled() and not panel.connect_button.isEnabled()
    assert ticks


@pytest.mark.slow
def test_a_server_that_dies_mid_answer_shows_one_line_in_the_chat(window, qtbot, llm_path):
    proc, url = start_llama_server(llm_path)
    try:
        with qtbot.waitSignal(window.bridge.status_changed, timeout=30_000):
            window.bridge.use_server(url, str(llm_path))
        window.chat.max_tokens = 400
        with qtbot.waitSignal(window.chat.token_shown, timeout=60_000):
            window.chat.ask("Tell me a long story about boats.", "base")
        proc.kill()
        qtbot.waitUntil(lambda: not window.chat.busy, timeout=30_000)
    finally:
        stop(proc)
    card = window.chat.items.itemAt(window.chat.items.count() - 2).widget()
    text = card.body.toPlainText()
    assert card.property("error") and text.startswith("Could not answer: the model server at")
    assert "\n" not in text.strip()


def test_serve_on_this_machine_shows_its_address_and_stops(window, qtbot):
    dialog = window.open_models()
    port = free_port()
    dialog.serve.port.setValue(port)
    with qtbot.waitSignal(window.serve.serving, timeout=120_000) as serving:
        click(qtbot, dialog.serve.switch)
    address = f"http://127.0.0.1:{port}/v1"
    assert serving.args == [address]
    assert window.serve.label.text() == f"API: {address}" and window.serve.action.isChecked()
    assert address in dialog.serve.address.text()
    panel = dialog.server
    panel.url.setText(address)
    click(qtbot, panel.test_button)
    qtbot.waitUntil(lambda: panel.model.count() > 0, timeout=15_000)
    assert "quire:default" in [panel.model.itemText(i) for i in range(panel.model.count())]
    with qtbot.waitSignal(window.serve.process.stopped, timeout=30_000):
        window.serve.action.trigger()  # File ▸ Serve on this machine, unchecked
    assert not window.serve.label.isVisible() and not dialog.serve.switch.isChecked()

    # A port in use: the child's one line, in the window, and the switch back off.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        with qtbot.waitSignal(window.serve.failed, timeout=60_000) as failed:
            click(qtbot, dialog.serve.switch)
    [message] = failed.args
    assert message.startswith(f"could not serve: cannot listen on 127.0.0.1:{port}"), message
    assert window.banner.label.text() == message and window.banner.isVisibleTo(window)
    assert not dialog.serve.switch.isChecked() and message in dialog.serve.address.text()

    # Closing the app ends a server it started.
    with qtbot.waitSignal(window.serve.serving, timeout=120_000):
        window.serve.action.trigger()
    pid = window.serve.process.pid
    assert pid is not None
    window.close()  # waits for it to end (and reaps it)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
