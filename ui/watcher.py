"""Watched folders: files added, changed or deleted there are re-indexed without asking.

QFileSystemWatcher reports each change; a QTimer debounce turns a burst of them (a copy
of fifty files, an editor's save dance) into one re-index of the folders concerned.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal, Slot

DEBOUNCE_MS = 1500
MAX_PATHS = 4000  # inotify watches are a shared, limited resource


class FolderWatcher(QObject):
    """Watches folders recursively. Signals: folders_changed(list[str])."""

    folders_changed = Signal(list)

    def __init__(self, parent: QObject | None = None, debounce_ms: int = DEBOUNCE_MS) -> None:
        super().__init__(parent)
        self.folders: list[str] = []
        self._dirty: set[str] = set()
        self._watcher = QFileSystemWatcher(self)
        self._watcher.directoryChanged.connect(self._on_path_changed)
        self._watcher.fileChanged.connect(self._on_path_changed)
        self._timer = QTimer(self, singleShot=True, interval=debounce_ms)
        self._timer.timeout.connect(self._on_quiet)

    def set_folders(self, folders: Iterable[str]) -> None:
        self.folders = sorted({str(Path(f).expanduser().resolve()) for f in folders})
        self._rewatch()

    def _rewatch(self) -> None:
        current = self._watcher.directories() + self._watcher.files()
        if current:
            self._watcher.removePaths(current)
        wanted: list[str] = []
        for folder in self.folders:
            wanted.extend(_tree(folder, MAX_PATHS - len(wanted)))
        if wanted:
            self._watcher.addPaths(wanted)

    @Slot(str)
    def _on_path_changed(self, path: str) -> None:
        for folder in self.folders:
            if path == folder or path.startswith(folder + os.sep):
                self._dirty.add(folder)
        self._timer.start()  # restart: wait for the burst to end

    @Slot()
    def _on_quiet(self) -> None:
        self._rewatch()  # new subfolders and files, and editors that replace files
        dirty, self._dirty = sorted(self._dirty), set()
        if dirty:
            self.folders_changed.emit(dirty)


def _tree(folder: str, budget: int) -> list[str]:
    """The folder, its subfolders and files (hidden ones skipped), up to `budget` paths."""
    found: list[str] = []
    if not os.path.isdir(folder):
        return found
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.append(root)
        found.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
        if len(found) >= budget:
            return found[:budget]
    return found
