"""Scanned PDFs in the library: the Read with OCR button, or the advice to install tesseract."""
# ruff: noqa: F811 - the window fixtures are imported from test_gui_app

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt

from tests.factory import write_scanned_pdf
from tests.ui.test_gui_app import app, open_window  # noqa: F401

pytestmark = pytest.mark.gui
PAGES = [["Penguin chicks hatch in early July."]]


def add_and_wait(window, qtbot, paths: list[str]):
    with qtbot.waitSignal(window.bridge.ingest_finished, timeout=120_000) as finished:
        window.library.add_paths(paths)
    return finished.args[0]


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
def test_read_with_ocr_indexes_a_scanned_pdf(open_window, qtbot, tmp_path: Path) -> None:
    scan = write_scanned_pdf(tmp_path / "scan.pdf", PAGES)
    window = open_window(tmp_path / "data")
    library = window.library
    window.tabs.setCurrentWidget(library)
    report = add_and_wait(window, qtbot, [str(scan)])
    assert report.scanned == [str(scan)]
    assert "no text layer (scanned?); read it with OCR" in library.summary.text()
    assert library.ocr_button.isVisibleTo(window)
    assert library.ocr_button.text() == "Read 1 scanned PDF with OCR"
    with qtbot.waitSignal(window.bridge.ingest_finished, timeout=120_000) as finished:
        qtbot.mouseClick(library.ocr_button, Qt.MouseButton.LeftButton)
    assert finished.args[0].indexed == [str(scan)] and finished.args[0].failed == []
    assert not library.ocr_button.isVisibleTo(window)
    row = library.tree.topLevelItem  # the failed row from the first run, then the indexed one

    def listed_as_indexed() -> bool:
        return library.tree.topLevelItemCount() == 1 and row(0).text(1) == "indexed"

    qtbot.waitUntil(listed_as_indexed, timeout=10_000)


def test_without_tesseract_the_library_says_what_to_install(
    open_window, qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan = write_scanned_pdf(tmp_path / "scan.pdf", PAGES)
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    window = open_window(tmp_path / "data")
    window.tabs.setCurrentWidget(window.library)
    report = add_and_wait(window, qtbot, [str(scan)])
    assert report.scanned == [] and report.indexed == []
    assert "install tesseract-ocr to read it" in window.library.summary.text()
    assert not window.library.ocr_button.isVisibleTo(window)
