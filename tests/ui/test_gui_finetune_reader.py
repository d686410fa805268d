"""The Fine-tune tab's Reader section: check, train (a real child process), back to the
default, with the window applying the reader to its settings."""
# ruff: noqa: F811 - the window fixtures are imported from test_gui_app

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt

from engine.eval import testset
from engine.settings import Settings
from tests.cli.test_reader_train_cli import indexed, write_questions  # noqa: F401
from tests.ui.test_gui_app import app, open_window  # noqa: F401

pytestmark = pytest.mark.gui


@pytest.fixture
def data_dir(indexed: Path, tmp_path: Path) -> Path:
    """The indexed notes, with the user's test set where "Add to test set…" keeps it."""
    path = Path(shutil.copytree(indexed, tmp_path / "data"))
    write_questions(testset.test_set_path(path))
    return path


def test_check_counts_pairs_and_back_to_the_default(open_window, qtbot, data_dir: Path) -> None:
    settings = Settings.load(data_dir)
    settings.reader_path = "/elsewhere/my-reader"
    settings.save(data_dir)
    window = open_window(data_dir)
    window.tabs.setCurrentWidget(window.finetune)
    section = window.finetune.reader_section
    assert section.isVisible() and section.path.text() == str(testset.test_set_path(data_dir))
    qtbot.waitUntil(lambda: section.in_use.text() == "Reader in use: my-reader", timeout=10_000)

    qtbot.mouseClick(section.check_button, Qt.MouseButton.LeftButton)
    assert not section.check_button.isEnabled()  # a child process counts them
    qtbot.waitUntil(lambda: section.process is None, timeout=60_000)
    assert section.checked.text().startswith("6 questions: 8 pairs (4 passage, 4 sentence)")
    assert "1 document not indexed" in section.checked.text()

    qtbot.mouseClick(section.default_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.settings.reader_path is None, timeout=10_000)
    assert Settings.load(data_dir).reader_path is None
    assert section.in_use.text() == "Reader in use: the shipped one"
    assert not section.default_button.isEnabled()


@pytest.mark.slow
def test_train_puts_the_new_reader_in_use(open_window, qtbot, data_dir: Path) -> None:
    pytest.importorskip("torch")
    window = open_window(data_dir)
    window.tabs.setCurrentWidget(window.finetune)
    section = window.finetune.reader_section
    folder = section.models_dir / "readers" / "test-questions"
    try:
        qtbot.mouseClick(section.train_button, Qt.MouseButton.LeftButton)
        assert section.stop_button.isEnabled()
        qtbot.waitUntil(lambda: section.process is None, timeout=240_000)
        assert section.status.text().startswith("Done, and in use"), section.status.text()
        assert section.bar.value() == section.bar.maximum() > 0
        qtbot.waitUntil(lambda: window.settings.reader_path == str(folder), timeout=10_000)
        assert (folder / "model.onnx").is_file()
        assert section.in_use.text() == "Reader in use: test-questions"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        (folder.parent / ".checkpoints" / "test-questions.pt").unlink(missing_ok=True)
