"""The Fine-tune tab: check a file, train (a real child process), stop, resume, use."""
# ruff: noqa: F811 - the window fixtures are imported from test_gui_app

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt

from tests.engine.test_training import BAD_LINES, write_examples
from tests.ui.test_gui_app import app, open_window  # noqa: F401

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def test_check_train_stop_resume_and_use(
    open_window, qtbot, tmp_path: Path, llm_path: Path
) -> None:
    window = open_window(tmp_path / "data")
    view = window.finetune
    window.tabs.setCurrentWidget(view)
    data = write_examples(tmp_path / "gui-zebra.jsonl", BAD_LINES[:2])
    adapters = view.models_dir / "adapters"
    for leftover in adapters.glob("gui-zebra*"):
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    (adapters / ".checkpoints" / "gui-zebra.pt").unlink(missing_ok=True)

    view.path.setText(str(data))
    view.check()
    qtbot.waitUntil(lambda: view.process is None, timeout=60_000)
    assert view.checked.text() == "8 usable examples; 2 lines left out:"
    assert "line 9: not JSON" in view.problems.toPlainText()

    view.epochs.setValue(3)  # enough steps to stop after the first; few to finish
    view.rank.setValue(4)
    qtbot.mouseClick(view.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.bar.value() >= 1, timeout=240_000)
    assert view.chart.loss and "tokens/s" in view.status.text()
    qtbot.mouseClick(view.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.process is None, timeout=120_000)
    assert "The checkpoint is kept" in view.status.text(), view.status.text()
    assert view.start_button.text() == "Resume training" and view.has_checkpoint()
    assert not (adapters / "gui-zebra.gguf").exists()

    view.epochs.setValue(3)  # same settings: the run resumes
    view.start()
    qtbot.waitUntil(lambda: view.process is None, timeout=600_000)
    assert view.use_button.isVisible(), view.status.text()
    assert "before:" in view.result.toPlainText() and (adapters / "gui-zebra.gguf").is_file()
    window.grab().save(str(tmp_path / "finetune.png"))
    qtbot.mouseClick(view.use_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "gui-zebra" in window.adapter_label.text(), timeout=60_000)
    from engine.settings import Settings

    assert (Settings.load(window.data_dir).lora_path or "").endswith("gui-zebra.gguf")


def test_an_adapter_trained_here_can_be_trained_further(open_window, qtbot, tmp_path: Path):
    window = open_window(tmp_path / "data")
    view = window.finetune
    peft = view.models_dir / "adapters" / "gui-more.peft"
    peft.mkdir(parents=True, exist_ok=True)
    (peft / "adapter_config.json").write_text('{"r": 8, "lora_alpha": 16}')
    try:
        window.tabs.setCurrentWidget(view)  # shown: the list is read again
        index = view.start_from.findData("gui-more")
        assert index > 0 and view.start_from.itemText(0) == "a new adapter"
        assert view.rank.isEnabled()
        view.start_from.setCurrentIndex(index)
        assert not view.rank.isEnabled()  # the adapter's own rank is kept
        runs: list[list[str]] = []
        view._run = lambda args, done: runs.append(args)  # type: ignore[method-assign]
        view.path.setText(str(write_examples(tmp_path / "more.jsonl")))
        view.start()
        assert runs and runs[0][runs[0].index("--from") + 1] == "gui-more"
        assert "--rank" not in runs[0]  # the greyed-out box would otherwise grow it
        view.start_from.setCurrentIndex(0)
        view.start()
        assert "--from" not in runs[1] and runs[1][runs[1].index("--rank") + 1] == "16"
    finally:
        shutil.rmtree(peft)
