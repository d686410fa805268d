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


def test_watched_folder_reports_changes_once_after_a_burst(qtbot, tmp_path: Path) -> None:
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
    qtbot.wait(400)
    assert bursts == [[str(folder.resolve())]]
    with qtbot.waitSignal(watcher.folders_changed, timeout=10_000):
        (folder / "b.md").unlink()  # deleted
