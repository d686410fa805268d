"""Desktop launcher and watched folders (Qt, offscreen)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")

pytestmark = pytest.mark.gui


def test_install_writes_a_launcher_without_terminal(tmp_path: Path) -> None:
    from ui.desktop import install, uninstall

    entry, icon = install(tmp_path)
    text = entry.read_text(encoding="utf-8")
    assert entry == tmp_path / "applications" / "quire.desktop"
    assert "Terminal=false" in text and "Icon=quire" in text
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    assert "quire" in exec_line or "main.py" in exec_line
    assert icon.read_text(encoding="utf-8").lstrip().startswith("<svg")
    assert uninstall(tmp_path) == [entry, icon]
    assert not entry.exists() and not icon.exists()


def test_icon_renders(qapp) -> None:
    from PySide6.QtGui import QIcon

    from ui.app import ICON

    pixmap = QIcon(str(ICON)).pixmap(64, 64)
    assert not pixmap.isNull() and pixmap.width() == 64


def test_watched_folder_reports_changes_once_after_a_burst(qapp, qtbot, tmp_path: Path) -> None:
    from ui.watcher import FolderWatcher

    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("one", encoding="utf-8")
    watcher = FolderWatcher(debounce_ms=200)
    watcher.set_folders([str(folder)])
    bursts: list[list[str]] = []
    watcher.folders_changed.connect(bursts.append)
    with qtbot.waitSignal(watcher.folders_changed, timeout=10_000):
        (folder / "b.md").write_text("two", encoding="utf-8")  # added
        (folder / "a.md").write_text("changed", encoding="utf-8")  # changed
        (folder / "sub" / "c.txt").write_text("three", encoding="utf-8")  # in a subfolder
    # Quiet: every change read (each one restarts the debounce) and none left to report.
    qapp.processEvents()
    qtbot.waitUntil(lambda: not watcher._timer.isActive() and not watcher._dirty, timeout=10_000)
    assert bursts == [[str(folder.resolve())]]
    with qtbot.waitSignal(watcher.folders_changed, timeout=10_000):
        (folder / "b.md").unlink()  # deleted
    assert bursts == [[str(folder.resolve())]] * 2


def test_a_bug_is_logged_to_the_rotating_file_and_told_once(
    qapp, tmp_path: Path, monkeypatch
) -> None:
    import logging
    import sys
    import threading

    from PySide6.QtWidgets import QMessageBox

    from ui.app import install_exception_hook, setup_logging

    told = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: told.append(args[2]))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        log_file = setup_logging(tmp_path / "data")
        install_exception_hook(log_file)
        for _ in range(3):  # the same bug three times: one message
            try:
                {}["missing"]
            except KeyError as exc:
                sys.excepthook(type(exc), exc, exc.__traceback__)
        worker = threading.Thread(target=lambda: 1 / 0, name="probe")
        worker.start()
        worker.join()
    finally:
        for handler in root.handlers[len(before) :]:
            handler.close()
            root.removeHandler(handler)
    assert len(told) == 1
    assert "KeyError: 'missing'" in told[0] and str(log_file) in told[0]
    text = log_file.read_text()
    assert text.count("Traceback (most recent call last)") == 4
    assert "unexpected error in thread probe" in text and "ZeroDivisionError" in text
