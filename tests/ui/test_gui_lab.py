"""Adapters and Compare in the window, offscreen, through signals, on the worker's Engine."""
# ruff: noqa: F811 - the window fixtures are imported from test_gui_app

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt

from tests.ui.test_gui_app import (  # noqa: F401
    app,
    indexed_dir,
    open_window,
    settle,
    use_another_model,
)

pytestmark = pytest.mark.gui
QUESTION = "When are the tomatoes watered?"


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory, llm_path: Path) -> Path:
    """A real GGUF adapter for the bundled Gemma, converted from a generated PEFT folder."""
    from models.lora import convert_peft
    from tests.factory import write_gemma_peft

    root = tmp_path_factory.mktemp("gui_lora")
    out = root / "style.gguf"
    convert_peft(write_gemma_peft(root / "peft", llm_path), out, llm_path)
    return out


@pytest.fixture
def llama_adapter(tmp_path: Path) -> Path:
    """An adapter made for a tiny llama, which does not fit the bundled Gemma."""
    from models.lora import convert_peft
    from tests.factory import make_lora, write_peft
    from tests.models.test_lora import tiny_shapes, write_base

    llama = write_base(tmp_path / "tiny-llama.gguf", "llama")
    peft = write_peft(tmp_path / "p", make_lora(tiny_shapes(), ["self_attn.q_proj"], 2))
    out = tmp_path / "llama-lora.gguf"
    convert_peft(peft, out, llama)
    return out


def load_adapter(window, qtbot, path: Path, scale: float = 0.5):
    dialog = window.open_adapter()
    dialog.path.setText(str(path))
    dialog.scale.setValue(scale)
    status = qtbot.waitSignal(window.bridge.status_changed, timeout=30_000)
    with status, qtbot.waitSignal(dialog.applied, timeout=30_000) as changed:
        qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    return dialog, changed.args


def close_dialog(window, qtbot) -> None:
    """Close the adapter dialog so the window is active again (its shortcuts need that)."""
    window.adapter_dialog.close()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)


def test_adapter_loads_enables_lora_modes_and_persists(
    open_window, qtbot, tmp_path, adapter, llm_path
):
    use_another_model(tmp_path / "data", llm_path)
    window = open_window(tmp_path / "data")
    modes = window.chat.mode.model()
    assert not modes.item(2).isEnabled()
    assert not window.compare.columns["lora"].isEnabled()
    dialog, (path, scale) = load_adapter(window, qtbot, adapter)
    assert (path, scale) == (str(adapter), 0.5)
    assert window.adapter_label.text() == "Adapter: style ×0.5"
    assert modes.item(2).isEnabled() and modes.item(3).isEnabled()
    assert window.compare.columns["hybrid"].isEnabled()
    assert dialog.current.text() == "Adapter: style ×0.5"

    from engine.settings import Settings

    saved = Settings.load(window.data_dir)
    assert (saved.lora_path, saved.lora_scale) == (str(adapter), 0.5)

    with qtbot.waitSignal(dialog.applied, timeout=30_000) as off:
        qtbot.mouseClick(dialog.off_button, Qt.MouseButton.LeftButton)
    assert off.args[0] is None
    qtbot.waitUntil(lambda: window.adapter_label.text() == "No adapter", timeout=5_000)
    assert not modes.item(2).isEnabled()


def test_mismatched_adapter_is_refused_and_nothing_changes(
    open_window, qtbot, tmp_path, adapter, llama_adapter
):
    window = open_window(tmp_path / "data")
    dialog, _ = load_adapter(window, qtbot, adapter, 1.0)
    dialog.path.setText(str(llama_adapter))
    with qtbot.waitSignal(dialog.failed, timeout=30_000) as failed:
        qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    [message] = failed.args
    assert "llama-lora.gguf does not fit model gemma-3-270m" in message
    assert "llama-lora.gguf" in dialog.message.text()
    settle(window, qtbot)  # the failure fully handled: nothing else is coming
    assert not window.banner.isVisibleTo(window)  # said once, in the dialog the user is in
    assert "llama-lora" not in window.statusBar().currentMessage()
    assert window.adapter_label.text() == "Adapter: style ×1"
    assert window.bridge.runner.engine.adapter_path() == adapter
    assert window.chat.mode.model().item(2).isEnabled()
    assert dialog.apply_button.isEnabled()


def test_a_file_that_is_no_adapter_gets_one_plain_sentence(open_window, qtbot, tmp_path, adapter):
    window = open_window(tmp_path / "data")
    dialog, _ = load_adapter(window, qtbot, adapter, 1.0)
    junk = tmp_path / "holiday.gguf"
    junk.write_bytes(bytes(range(256)) * 8)
    dialog.path.setText(str(junk))
    with qtbot.waitSignal(dialog.failed, timeout=30_000) as failed:
        qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    assert failed.args[0] == "holiday.gguf is not a GGUF file (models and adapters are GGUF files)"
    assert failed.args[0] in dialog.message.text()
    assert "b'" not in dialog.message.text() and "\\x" not in dialog.message.text()
    settle(window, qtbot)
    assert not window.banner.isVisibleTo(window)
    assert window.adapter_label.text() == "Adapter: style ×1"


def test_compare_answers_in_all_four_modes(open_window, indexed_dir, qtbot, tmp_path, adapter):
    data_dir = tmp_path / "data"
    shutil.copytree(indexed_dir, data_dir)
    window = open_window(data_dir)
    load_adapter(window, qtbot, adapter, 1.0)
    close_dialog(window, qtbot)
    view = window.compare
    view.max_tokens = 6
    window.tabs.setCurrentWidget(view)
    view.question.setPlainText(QUESTION)
    with qtbot.waitSignal(view.comparison_finished, timeout=180_000) as finished:
        qtbot.keyClick(
            view.question,
            Qt.Key.Key_Return,
            Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
        )
    answers = finished.args[0]
    assert list(answers) == ["base", "rag", "lora", "hybrid"]
    for mode, answer in answers.items():
        assert answer.timings.tokens > 0 and answer.timings.first_token_s > 0
        assert "tokens/s" in view.columns[mode].metrics.text()
    assert "retrieval" in view.columns["rag"].metrics.text()
    assert "garden.md" in view.columns["hybrid"].source_links.text()
    assert not view.columns["base"].source_links.text()
    with qtbot.waitSignal(view.source_opened, timeout=5_000) as opened:
        view.columns["rag"].source_links.linkActivated.emit("src:1")
    assert opened.args[0].document == "garden.md"
    assert window.reader.isVisible()


def test_compare_without_adapter_greys_two_modes_and_stops(
    open_window, indexed_dir, qtbot, tmp_path, llm_path
):
    data_dir = tmp_path / "data"
    shutil.copytree(indexed_dir, data_dir)
    use_another_model(data_dir, llm_path)
    window = open_window(data_dir)
    view = window.compare
    view.max_tokens = 8
    view.question.setPlainText(QUESTION)
    with qtbot.waitSignal(view.comparison_finished, timeout=180_000) as finished:
        view.compare()
    assert list(finished.args[0]) == ["base", "rag"]
    lora = view.columns["lora"]
    assert not lora.isEnabled() and "load a LoRA adapter" in lora.hint.text()

    view.max_tokens = 400
    with qtbot.waitSignal(view.token_shown, timeout=60_000):
        view.compare()
    with qtbot.waitSignal(view.comparison_finished, timeout=60_000) as stopped:
        qtbot.keyClick(view.question, Qt.Key.Key_Escape)
    assert list(stopped.args[0]) == ["base"] and stopped.args[0]["base"].cancelled
    assert "Not run" in view.columns["rag"].hint.text()
    assert not view.busy
