"""The Models window: the bundled model, GGUF files already on this computer (found where
LM Studio, GPT4All and similar apps keep them, or in a folder you add; used in place), a
model server to answer instead (ui/server_panel.py), serving this Quire to other apps, and
a short list of small instruct models to download. Nothing is downloaded unless you click
Download (a job on the runner's "download" lane); Cancel is the request's stop, keeps the
partial file, and the next Download resumes it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.settings import Settings
from engine.types import UserError
from models.catalog import CURATED, Offer, discover
from models.registry import GGUFInfo, list_models
from ui.runner import Job, Request, Runner
from ui.server_panel import ServerPanel, in_use_text
from ui.serving import ServePanel

FOLDERS_KEY = "models/folders"
ProgressFn = Callable[[Request, int, int], None]


def _details(info: GGUFInfo) -> str:
    context = f"context {info.context_length}" if info.context_length else ""
    return ", ".join(filter(None, [info.architecture, info.quantization, context]))


class _StoppedError(Exception):
    """Raised from the progress callback: the way out of huggingface_hub's download loop
    once the request was stopped."""


def _download(offer: Offer, models_dir: Path, progressed: ProgressFn) -> Job:
    """The job that downloads `offer`: its path, or None when it was stopped."""

    def job(request: Request) -> str | None:
        from models import hub

        def progress(done: int, total: int) -> None:
            if request.cancel.is_set():
                raise _StoppedError()
            request.post(progressed, request, done, total)

        try:
            return str(hub.download(offer.repo, offer.filename, models_dir, progress))
        except _StoppedError:
            return None
        except UserError as exc:
            if isinstance(exc.__cause__, _StoppedError) or request.cancel.is_set():
                return None
            raise

    return job


class ModelsDialog(QDialog):
    """Signals: model_chosen(str path to a GGUF model); the server panels (`server`,
    `serve`) have their own."""

    model_chosen = Signal(str)

    def __init__(
        self,
        runner: Runner,
        models_dir: Path,
        current: str | None,
        tokens_per_s: float,
        parent: QWidget | None = None,
        home: Path | None = None,
        settings: Settings | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(860, 720)
        self.models_dir, self.current, self.home = Path(models_dir), current, home
        self.server_url: str | None = None  # a model server answers instead of `current`
        self.tokens_per_s, self.runner = tokens_per_s, runner
        self._download: Request | None = None  # the download under way
        self._listed = False  # the local list is filled
        settings = settings or Settings(model_path=current)
        self.setStyleSheet("QGroupBox { font-weight: 600; }")  # the title, not its children
        layout = QVBoxLayout(self)
        self.in_use = QLabel("", self)
        self.in_use.setWordWrap(True)
        self.in_use.setStyleSheet(
            "background: #eef2ff; border: 1px solid #c7d2fe; border-radius: 8px;"
            " padding: 8px 12px; color: #1e1b4b;"
        )
        layout.addWidget(self.in_use)
        layout.addWidget(QLabel("<b>On this computer</b> (used where they are, not copied)"))
        self.local = QTreeWidget(self)
        self.local.setHeaderLabels(["Model", "Found in", "Size", "Details"])
        self.local.setRootIsDecorated(False)
        self.local.itemDoubleClicked.connect(lambda *_: self.use_selected())
        layout.addWidget(self.local, 1)
        row = QHBoxLayout()
        self.use_button = QPushButton("Use this model", self)
        self.use_button.setObjectName("primary")
        self.use_button.clicked.connect(self.use_selected)
        add = QPushButton("Add a folder…", self)
        add.clicked.connect(self.add_folder)
        row.addWidget(self.use_button)
        row.addWidget(add)
        row.addStretch(1)
        layout.addLayout(row)
        self.server = ServerPanel(settings, key, runner, self)
        layout.addWidget(self.server)
        self.serve = ServePanel(parent=self)
        layout.addWidget(self.serve)
        layout.addWidget(
            QLabel(
                "<b>Download</b> (from Hugging Face, only when you click; "
                f"speeds estimated from the bundled model's {tokens_per_s:.0f} tokens/s here)"
            )
        )
        self.offers = QTreeWidget(self)
        self.offers.setHeaderLabels(["Model", "Size", "Expected speed", "Why"])
        self.offers.setRootIsDecorated(False)
        for offer in CURATED:
            speed = offer.expected_tokens_per_s(tokens_per_s)
            item = QTreeWidgetItem(
                [offer.label, f"about {offer.size_bytes / 1e9:.1f} GB", f"~{speed:.0f} tokens/s",
                 offer.note]
            )  # fmt: skip
            item.setData(0, Qt.ItemDataRole.UserRole, offer)
            item.setToolTip(3, offer.note)
            self.offers.addTopLevelItem(item)
        for column in range(3):  # the rest for "Why", which wraps rather than cut off
            self.offers.resizeColumnToContents(column)
        self.offers.setWordWrap(True)
        self.offers.setTextElideMode(Qt.TextElideMode.ElideNone)
        layout.addWidget(self.offers, 1)
        row = QHBoxLayout()
        self.download_button = QPushButton("Download", self)
        self.download_button.clicked.connect(self.start_download)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_download)
        self.progress = QProgressBar(self, minimum=0, maximum=1000, value=0)
        self.progress.hide()
        self.status = QLabel("", self)
        self.status.setObjectName("muted")
        self.status.setWordWrap(True)
        for widget in (self.download_button, self.cancel_button, self.progress):
            row.addWidget(widget)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self.show_settings(settings)

    # -- on this computer ------------------------------------------------------------------

    def show_settings(self, settings: Settings) -> None:
        """Say which model answers now: a local GGUF (marked in the list) or a server."""
        self.in_use.setText(in_use_text(settings))
        self.server.show_settings(settings)
        wanted = (settings.model_path, settings.server_url)
        if wanted != (self.current, self.server_url) or not self._listed:
            self.current, self.server_url = wanted
            self.refresh()

    def folders(self) -> list[Path]:
        return [Path(p) for p in (QSettings().value(FOLDERS_KEY) or []) if p]

    def refresh(self) -> None:
        self._listed = True
        self.local.clear()
        for entry in list_models(self.models_dir):
            if entry.kind == "llm" and not entry.error:
                where = "bundled with Quire" if entry.bundled else "Quire's models folder"
                info = entry.info
                details = _details(info) if info is not None else ""
                in_use = entry.bundled and not self.current
                self._add_local(entry.path, entry.name, where, entry.size_bytes, details, in_use)
        for found in discover(self.folders(), self.home):
            info = found.info
            self._add_local(found.path, found.path.name, found.app, info.size_bytes, _details(info))
        for column, width in enumerate((300, 170, 80)):
            self.local.setColumnWidth(column, width)

    def _add_local(
        self, path: Path, name: str, where: str, size: int, details: str, in_use: bool = False
    ) -> None:
        mark = ""
        if in_use or (self.current and Path(self.current) == path):
            mark = "  (when disconnected)" if self.server_url else "  (in use)"
        item = QTreeWidgetItem([name + mark, where, f"{size / 1e6:.0f} MB", details])
        item.setData(0, Qt.ItemDataRole.UserRole, str(path))
        item.setToolTip(0, str(path))
        self.local.addTopLevelItem(item)

    @Slot()
    def add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder with GGUF models")
        if folder:
            folders = [str(p) for p in self.folders()]
            QSettings().setValue(FOLDERS_KEY, sorted({*folders, folder}))
            self.refresh()

    @Slot()
    def use_selected(self) -> None:
        item = self.local.currentItem()
        if item is None:
            self.status.setText("Pick a model in the list first.")
            return
        path = item.data(0, Qt.ItemDataRole.UserRole)
        self.model_chosen.emit(path)
        self.status.setText(f"Loading {Path(path).name}… (the status bar shows it when ready)")

    # -- download --------------------------------------------------------------------------

    @Slot()
    def start_download(self) -> None:
        item = self.offers.currentItem()
        if item is None:
            self.status.setText("Pick a model to download first.")
            return
        if self._download is not None:
            return
        offer: Offer = item.data(0, Qt.ItemDataRole.UserRole)
        job = _download(offer, self.models_dir, self._on_progress)
        self._download = self.runner.run_job("download", job, self._on_finished, self._on_failed)
        self._set_downloading(True)
        self.status.setText(f"Downloading {offer.filename} from {offer.repo}…")

    @Slot()
    def cancel_download(self) -> None:
        if self._download is not None:
            self._download.stop()
            self.status.setText("Stopping… (the part already downloaded is kept)")

    def _set_downloading(self, busy: bool) -> None:
        self.download_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(busy)

    def _end(self) -> None:
        self._download = None
        self._set_downloading(False)

    def _on_progress(self, request: Request, done: int, total: int) -> None:
        if request is self._download and total > 0:
            self.progress.setValue(round(1000 * done / total))
            self.progress.setFormat(f"{done / 1e6:.0f} of {total / 1e6:.0f} MB")

    def _on_finished(self, path: str | None) -> None:
        if self._download is None:  # the window was closed meanwhile
            return
        self._end()
        if path is None:
            self.status.setText(
                "Stopped. The part already downloaded is kept: Download resumes it."
            )
            return
        self.status.setText(f"Downloaded {Path(path).name}. Select it above and click Use.")
        self.refresh()

    def _on_failed(self, message: str) -> None:
        if self._download is None:
            return
        self._end()
        self.status.setText(f"Download failed: {message}")

    def closeEvent(self, event) -> None:  # type: ignore[no-untyped-def]  # noqa: N802
        """A download under way stops (its part is kept); so does a server test."""
        self.cancel_download()
        self._end()
        self.server.shutdown()
        super().closeEvent(event)
