"""The library tab: collections, documents and their status, indexing progress, watched folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.index.schema import DocumentRecord
from engine.types import IngestProgress, IngestReport
from ui.banner import human_duration, human_size
from ui.bridge import Bridge

FILE_FILTER = (
    "Documents (*.pdf *.docx *.odt *.epub *.txt *.md *.markdown *.rst *.html *.htm);;All files (*)"
)
PROGRESS_MS = 100  # progress shown at most this often
FILE_PASSAGES = 60  # a file with this many passages so far counts as half done
DOCUMENTS_MS = 1000  # the document list refreshed at most this often while indexing
STATUS_COLORS = {"indexed": "#15803d", "unchanged": "#15803d", "failed": "#b91c1c"}


def dropped_paths(event: QDropEvent | QDragEnterEvent) -> list[str]:
    """Local files and folders carried by a drag."""
    urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
    return [url.toLocalFile() for url in urls if url.isLocalFile()]


def report_text(report: IngestReport) -> str:
    parts = [f"indexed {len(report.indexed)}", f"unchanged {len(report.skipped)}"]
    if report.failed:
        parts.append(f"failed {len(report.failed)}")
    if report.removed:
        parts.append(f"removed {len(report.removed)}")
    verb = "Stopped" if report.cancelled else "Done"
    return f"{verb}: {', '.join(parts)} · {report.chunks} passages in {report.seconds:.1f} s"


def progress_text(snap: IngestProgress) -> str:
    """The line under the bar: files, pages, bytes, passages, time left, the file."""
    parts = [f"{snap.files_done} of {snap.files_total} files", f"{snap.pages_done} pages"]
    if snap.bytes_total > 0:
        parts.append(f"{human_size(snap.bytes_done)} of {human_size(snap.bytes_total)}")
    parts.append(f"{snap.chunks_done} passages")
    eta = snap.eta_s
    if eta is not None and snap.files_done < snap.files_total:
        parts.append(f"about {human_duration(eta)} left")
    if snap.current:
        parts.append(f"reading {snap.current}" if snap.reading else snap.current)
    return " · ".join(parts)


class LibraryView(QWidget):
    """Documents of the open collection. Signals: watched_changed(list[str])."""

    watched_changed = Signal(list)

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.collection = "default"
        self.indexing = False
        self._skipped: set[str] = set()
        self._scanned: list[str] = []  # PDFs with no text layer that OCR can read
        self._progress: IngestProgress | None = None
        self._file_start = (0, 0)  # (files done, passages done) when the current file began
        self._documents: list = []
        self._progress_timer = QTimer(self, singleShot=True, interval=PROGRESS_MS)
        self._progress_timer.timeout.connect(self._on_progress_due)
        self._documents_timer = QTimer(self, singleShot=True, interval=DOCUMENTS_MS)
        self._documents_timer.timeout.connect(self._on_documents_due)
        self.setAcceptDrops(True)
        self._build()
        bridge.ingest_progressed.connect(self._on_ingest_progressed)
        bridge.ingest_finished.connect(self._on_ingest_finished)
        bridge.documents_listed.connect(self._on_documents_listed)

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.addLayout(self._buttons())
        layout.addWidget(self._progress_panel())
        self.summary = QLabel("Drop files or folders here, or use Add files (Ctrl+O).")
        self.summary.setObjectName("muted")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.ocr_button = QPushButton("Read with OCR", self)
        self.ocr_button.setToolTip("Read the PDFs that have no text layer (scans) with tesseract")
        self.ocr_button.clicked.connect(self._on_ocr_clicked)
        self.ocr_button.hide()
        layout.addWidget(self.ocr_button, 0, Qt.AlignmentFlag.AlignLeft)
        split = QSplitter(Qt.Orientation.Vertical, self)
        self.tree = QTreeWidget(split)
        self.tree.setHeaderLabels(["Document", "Status", "Pages", "Passages", "Where / why"])
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        split.addWidget(self._watched_panel())
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        layout.addWidget(split, 1)

    def _buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        for text, slot, tip in (
            ("Add files…", self.add_files, "Index PDF, text, Markdown or HTML files (Ctrl+O)"),
            ("Add folder…", self.add_folder, "Index every supported file under a folder"),
            ("Remove", self.remove_selected, "Forget the selected documents (files stay on disk)"),
        ):
            button = QPushButton(text, self)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            row.addWidget(button)
        row.addStretch(1)
        return row

    def _progress_panel(self) -> QWidget:
        self.progress_box = QFrame(self)
        self.progress_box.setObjectName("progressBox")
        row = QHBoxLayout(self.progress_box)
        column = QVBoxLayout()
        self.progress = QProgressBar(self.progress_box)
        self.progress.setFormat("%v / %m files")
        self.progress_label = QLabel("Starting…", self.progress_box)
        self.progress_label.setObjectName("muted")
        column.addWidget(self.progress)
        column.addWidget(self.progress_label)
        row.addLayout(column, 1)
        self.cancel_button = QPushButton("Cancel", self.progress_box)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.cancel_button)
        self.progress_box.hide()
        return self.progress_box

    def _watched_panel(self) -> QWidget:
        box = QWidget(self)
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 6, 0, 0)
        row = QHBoxLayout()
        title = QLabel("Watched folders: changes are re-indexed automatically")
        title.setObjectName("sectionTitle")
        row.addWidget(title, 1)
        for text, slot in (("Watch folder…", self.watch_folder), ("Stop watching", self.unwatch)):
            button = QPushButton(text, box)
            button.clicked.connect(slot)
            row.addWidget(button)
        layout.addLayout(row)
        self.watched = QListWidget(box)
        layout.addWidget(self.watched)
        return box

    # -- requests ----------------------------------------------------------------------

    @Slot()
    def add_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add documents", "", FILE_FILTER)
        if files:
            self.add_paths(files)

    @Slot()
    def add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of documents")
        if folder:
            self.add_paths([folder])

    def add_paths(self, paths: list[str], ocr: bool = False) -> None:
        """Index files and folders into the open collection (scanned PDFs by OCR with `ocr`)."""
        self._set_indexing(True)
        self.progress.setRange(0, 0)  # busy until the first count arrives
        self._file_start = (0, 0)
        self.progress_label.setText(f"Looking at {len(paths)} item(s)…")
        self.bridge.ingest(paths, self.collection, self.ingest_failed, ocr=ocr)

    @Slot()
    def cancel(self) -> None:
        self.bridge.cancel_ingest()
        self.progress_label.setText("Cancelling… (the document being written is finished)")

    @Slot()
    def _on_ocr_clicked(self) -> None:
        self.ocr_button.hide()
        self.add_paths(self._scanned, ocr=True)

    @Slot()
    def remove_selected(self) -> None:
        paths = [item.data(0, Qt.ItemDataRole.UserRole) for item in self.tree.selectedItems()]
        if paths:
            self.bridge.remove(paths, self.collection, self._failed_to("remove"))

    @Slot()
    def watch_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Watch a folder")
        if folder:
            self.set_watched([*self.watched_folders(), folder])
            self.watched_changed.emit(self.watched_folders())
            self.add_paths([folder])

    @Slot()
    def unwatch(self) -> None:
        gone = {item.text() for item in self.watched.selectedItems()}
        self.set_watched([f for f in self.watched_folders() if f not in gone])
        self.watched_changed.emit(self.watched_folders())

    def set_watched(self, folders: list[str]) -> None:
        self.watched.clear()
        self.watched.addItems(sorted(dict.fromkeys(folders)))

    def watched_folders(self) -> list[str]:
        return [self.watched.item(i).text() for i in range(self.watched.count())]

    def refresh(self) -> None:
        self.bridge.list_documents(self.collection, self._failed_to("list documents"))

    def _set_indexing(self, indexing: bool) -> None:
        self.indexing = indexing
        self.progress_box.setVisible(indexing)
        self.cancel_button.setEnabled(True)

    # -- results -------------------------------------------------------------------------

    @Slot(object)
    def _on_ingest_progressed(self, snap: IngestProgress) -> None:
        self._set_indexing(True)
        self._progress = snap  # shown by the throttle: QProgressBar repaints synchronously
        if not self._progress_timer.isActive():
            self._progress_timer.start()

    @Slot()
    def _on_progress_due(self) -> None:
        snap = self._progress
        if snap is None or not self.indexing:
            return
        if snap.bytes_total > 0:  # the work left, by the size of the files still to do
            self.progress.setRange(0, 1000)
            self.progress.setValue(round(1000 * snap.bytes_done / snap.bytes_total))
        else:
            self.progress.setRange(0, max(snap.files_total, 1) * 100)
            self.progress.setValue(snap.files_done * 100 + self._file_share(snap))
        self.progress.setFormat(
            f"{snap.files_done} / {snap.files_total} files · {snap.chunks_done} passages"
        )
        self.progress_label.setText(progress_text(snap))

    def _file_share(self, snap: IngestProgress) -> int:
        """How far into the current file, in percent, guessed from its passages so far.

        Ingest reports no passage total, so a big PDF's share grows towards 95% as its
        passages are embedded: the bar moves while the file count stays the same.
        """
        if snap.files_done != self._file_start[0]:
            self._file_start = (snap.files_done, snap.chunks_done)
        passages = snap.chunks_done - self._file_start[1]
        return min(95, round(100 * passages / (passages + FILE_PASSAGES)))

    @Slot(object)
    def _on_ingest_finished(self, report: IngestReport) -> None:
        self._set_indexing(False)
        self._progress_timer.stop()
        self._skipped = set(report.skipped)
        text = report_text(report)
        if report.failed:
            path, reason = report.failed[0]
            text += f"\n{Path(path).name}: {reason}"
        self.summary.setText(text)
        self._offer_ocr(report.scanned)

    def _offer_ocr(self, scanned: list[str]) -> None:
        """Show the Read with OCR button for scanned PDFs that tesseract can read."""
        self._scanned = list(scanned)
        count = len(scanned)
        self.ocr_button.setText(f"Read {count} scanned PDF{'s' * (count != 1)} with OCR")
        self.ocr_button.setVisible(count > 0)

    @Slot(str, list)
    def _on_documents_listed(self, collection: str, documents: list) -> None:
        if collection != self.collection:
            return
        self._documents = documents
        if not self.indexing:
            self._on_documents_due()
        elif not self._documents_timer.isActive():  # while indexing, at most once a second
            self._documents_timer.start()

    @Slot()
    def _on_documents_due(self) -> None:
        self._documents_timer.stop()
        self.tree.setUpdatesEnabled(False)
        self.tree.clear()
        self.tree.addTopLevelItems([self._item(doc) for doc in self._documents])
        self.tree.setUpdatesEnabled(True)

    def _item(self, doc: DocumentRecord) -> QTreeWidgetItem:
        if doc.error:
            status, where = "failed", doc.error
        else:
            status = "unchanged" if doc.path in self._skipped else "indexed"
            where = str(Path(doc.path).parent)
        pages = str(doc.pages) if doc.pages else ""  # text files have no pages
        item = QTreeWidgetItem([doc.name, status, pages, str(doc.chunks or ""), where])
        item.setData(0, Qt.ItemDataRole.UserRole, doc.path)
        item.setToolTip(0, doc.path)
        item.setToolTip(4, where)
        item.setForeground(1, QBrush(QColor(STATUS_COLORS.get(status, "#374151"))))
        return item

    def ingest_failed(self, message: str) -> None:
        self._failed_to("index")(message)

    def _failed_to(self, action: str) -> Callable[[str], None]:
        """A failure callback: said here, and in the window's banner when this tab is not
        the one in front."""

        def failed(message: str) -> None:
            if action == "index":
                self._set_indexing(False)
            text = f"Could not {action}: {message}"
            self.summary.setText(text)
            if not self.isVisible():
                self.bridge.on_failure(text)

        return failed

    # -- drag and drop ---------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if dropped_paths(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        paths = dropped_paths(event)
        if paths:
            event.acceptProposedAction()
            self.add_paths(paths)
