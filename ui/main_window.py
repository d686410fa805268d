"""The main window: history on the left, chat / library / search tabs, the reader on the right."""

from __future__ import annotations

import copy
import functools
import html
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QSettings, Qt, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from engine.answer.modes import MODES
from engine.answer.remote import load_key
from engine.core import Answer
from engine.eval.testset import test_set_path
from engine.history import History
from engine.paths import default_data_dir, models_dir
from engine.settings import Settings
from engine.types import SearchResult, Status, UserError
from ui.adapter_dialog import AdapterDialog, adapter_name, adapter_text
from ui.banner import Banner, human_size
from ui.bridge import Bridge
from ui.chat import BASE_MODEL_NOTE, LORA_HINT, ChatView, welcome_text
from ui.compare import CompareView
from ui.evaluate import EvaluatePage
from ui.finetune import FineTuneView
from ui.history_view import HistoryView, HistoryWrites, not_saved
from ui.library import LibraryView, dropped_paths
from ui.pdf_view import ReaderPanel
from ui.runner import Request
from ui.search import SearchView
from ui.serving import ServeSwitch
from ui.settings_dialog import SettingsDialog
from ui.watcher import FolderWatcher

if TYPE_CHECKING:
    from ui.models_dialog import ModelsDialog

APP = "Quire"
DEFAULT_TOKENS_PER_S = 45.0  # the bundled model on 2 quiet cores (benchmarks/threads.py)
SHORTCUTS = (
    ("Ctrl+Enter", "Send the question"),
    ("Ctrl+Shift+Enter", "Compare the question in all modes"),
    ("Esc", "Stop the answer"),
    ("Ctrl+O", "Add documents"),
    ("Ctrl+N", "New conversation"),
    ("Ctrl+F", "Search your documents"),
    ("Ctrl+1 … Ctrl+6", "Chat, Library, Search, Compare, Evaluate, Fine-tune"),
    ("Ctrl+B", "Show or hide the conversations"),
    ("Ctrl+,", "Settings"),
    ("Ctrl+M", "Models: use one you have, or download one"),
    ("Ctrl+Q", "Quit"),
)


def version() -> str:
    try:
        return package_version("quire")
    except PackageNotFoundError:
        return "(development)"


_LOADING = "Loading the models… (the first start takes a minute)"


class MainWindow(QMainWindow):
    """Wires the views to one `Bridge` (the engine thread) and one `History`."""

    def __init__(self, data_dir: Path | None = None, preload: bool = True) -> None:
        super().__init__()
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        # The engine owns the settings: this is a read-only snapshot of them, the engine's
        # own from the first status on (Bridge.start); changes go as intents to the bridge.
        self.settings = Settings()
        self.collection = self.settings.collection  # the one the views show
        self.history = History(self.data_dir)
        self.bridge = Bridge(self.data_dir, self)
        self.status: Status | None = None
        self.mode_reasons: dict[str, str | None] = {}  # from the engine, before each status
        self.adapter_dialog: AdapterDialog | None = None
        self.models_dialog: ModelsDialog | None = None
        self.serve = ServeSwitch(self.data_dir, self.bridge.runner, self)
        self.last_tokens_per_s = DEFAULT_TOKENS_PER_S  # updated by every answer
        self._build()
        self._menus()
        self._connect()
        self._shortcuts()
        self._apply_collection(self.collection, save=False)
        self.watcher = FolderWatcher(self)
        self.watcher.folders_changed.connect(self._on_watched_changed_on_disk)
        self.setAcceptDrops(True)
        self._restore_layout()
        self._focus_page()  # typing goes to the question box, not the Collection box
        self.bridge.start()
        if preload:
            # the first start also assembles the model and folds in the grounding adapter
            self.statusBar().showMessage(_LOADING)
            self.bridge.preload(self._on_preloaded)

    def _on_preloaded(self, _result: object) -> None:
        if self.statusBar().currentMessage() == _LOADING:  # not a later message
            self.statusBar().clearMessage()

    def _build(self) -> None:
        self.addToolBar(self._toolbar())
        self.banner = Banner(self)
        writes = HistoryWrites(self.bridge.runner, self.bridge.failure("Could not save the chat"))
        self.writes = writes
        self.history_view = HistoryView(self.history, writes, self)
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.chat = ChatView(self.bridge, self.history, self.tabs)
        self.library = LibraryView(self.bridge, self.tabs)
        self.search = SearchView(self.bridge, self.tabs)
        self.compare = CompareView(self.bridge, self.tabs)
        self.evaluate = EvaluatePage(self.bridge, self.tabs)
        self.evaluate.default_path = test_set_path(self.data_dir)
        self.finetune = FineTuneView(
            self.data_dir, models_dir(self.data_dir), self.bridge.runner, self.tabs
        )
        for view, name in (
            (self.chat, "Chat"),
            (self.library, "Library"),
            (self.search, "Search"),
            (self.compare, "Compare"),
            (self.evaluate, "Evaluate"),
            (self.finetune, "Fine-tune"),
        ):
            self.tabs.addTab(view, name)
        self.reader = ReaderPanel(self)
        self.reader.hide()
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        for widget in (self.history_view, self.tabs, self.reader):
            self.splitter.addWidget(widget)
        self.splitter.setSizes([230, 700, 560])
        self.splitter.setCollapsible(1, False)
        central = QWidget(self)
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.banner)
        column.addWidget(self.splitter, 1)
        self.setCentralWidget(central)
        self.model_label, self.adapter_label, self.index_label = QLabel(), QLabel(), QLabel()
        for label in (self.serve.label, self.model_label, self.adapter_label, self.index_label):
            self.statusBar().addPermanentWidget(label)
        self.model_label.setText("Model: Gemma 3 270M (bundled)")
        self.adapter_label.setText("No adapter")

    def _menus(self) -> None:
        """File, Edit, View, Help; each shortcut lives on its menu entry, so the menus
        also teach them."""

        def add(menu: QMenu, text: str, slot: Callable[[], object], keys: str = "") -> QAction:
            action = menu.addAction(text, slot)
            if keys:
                action.setShortcut(QKeySequence(keys))
            return action

        file = self.menuBar().addMenu("&File")
        add(file, "&Add documents…", self.add_documents, "Ctrl+O")
        add(file, "&New conversation", self.new_conversation, "Ctrl+N")
        add(file, "&Models…", self.open_models, "Ctrl+M")
        file.addAction(self.serve.action)
        add(file, "&Export training examples…", self.export_training)
        file.addSeparator()
        add(file, "&Quit", self.close, "Ctrl+Q")
        edit = self.menuBar().addMenu("&Edit")
        add(edit, "&Find in documents", self.focus_search, "Ctrl+F")
        add(edit, "&Stop the answer", self.stop)  # Esc, from _shortcuts
        edit.addSeparator()
        add(edit, "Se&ttings…", self.open_settings, "Ctrl+,")
        view = self.menuBar().addMenu("&View")
        for number in range(self.tabs.count()):
            page = self.tabs.widget(number)
            assert page is not None  # number < count
            add(
                view,
                self.tabs.tabText(number),
                functools.partial(self.show_page, page),
                f"Ctrl+{number + 1}",
            )
        view.addSeparator()
        sidebar = add(view, "&Conversations sidebar", self._toggle_sidebar, "Ctrl+B")
        sidebar.setCheckable(True)
        sidebar.setChecked(True)
        self.sidebar_action = sidebar
        help_menu = self.menuBar().addMenu("&Help")
        add(help_menu, "&Keyboard shortcuts", self.show_shortcuts, "F1")
        add(help_menu, "&About Quire", self.show_about)

    @Slot(object)
    def _on_answer_speed(self, answer: Answer) -> None:
        """The bundled model's speed here, for the Models window's estimates."""
        speed = answer.timings.tokens_per_s
        if speed > 0 and self.status is not None and self.status.bundled:
            self.last_tokens_per_s = speed

    @Slot()
    def open_models(self) -> ModelsDialog:
        """The Models window: use a GGUF already on this computer, download one, connect
        to a model server, or serve this Quire."""
        from ui.models_dialog import ModelsDialog

        if self.models_dialog is not None:  # a fresh one: the files may have changed
            self.models_dialog.close()
            self.models_dialog.deleteLater()
        try:
            key = load_key(self.data_dir)
        except UserError as exc:
            key = None
            self.banner.show_message(str(exc))
        dialog = ModelsDialog(
            self.bridge.runner, models_dir(self.data_dir), self.settings.model_path,
            self.last_tokens_per_s, self, settings=self.settings, key=key,
        )  # fmt: skip
        dialog.model_chosen.connect(self._use_model)
        dialog.server.connect_requested.connect(self._connect_server)
        dialog.server.disconnect_requested.connect(lambda: self._connect_server(None, "", None))
        self.serve.attach(dialog.serve)
        self.models_dialog = dialog
        dialog.show()
        return dialog

    @Slot(str)
    def _use_model(self, path: str) -> None:
        """A local GGUF answers from now on (instead of a model server, if one did)."""
        new = copy.deepcopy(self.settings)
        new.model_path, new.server_url, new.server_model = path, None, None
        self.bridge.apply_settings(new, load_model=True)

    def _connect_server(self, url: str | None, model: str, key: str | None) -> None:
        """A model server answers from now on; None: the local model again."""
        dialog = self.models_dialog

        def tell(text: str) -> None:  # in the Models window, while it is the same one
            if dialog is not None and dialog is self.models_dialog:
                dialog.server.show_result(text)
            else:
                self.banner.show_message(text)

        own = self.serve.process.address
        if url and own and url.rstrip("/") == own.rstrip("/"):
            tell("That is this Quire's own API: it would ask itself.")
            return
        connected = f"Connected: answers come from {model} (Base and RAG)."
        done = connected if url else "Disconnected: answers come from the local model."
        self.bridge.use_server(url, model, key, lambda _r: tell(done), tell)

    @Slot(object)
    def _use_reader(self, folder: str | None) -> None:
        """A reader trained in the Fine-tune tab, or the shipped one (None), into use."""
        new = copy.deepcopy(self.settings)
        new.reader_path = folder
        self.bridge.apply_settings(new)

    @Slot()
    def _toggle_sidebar(self) -> None:
        self.history_view.setVisible(self.sidebar_action.isChecked())

    @Slot()
    def show_shortcuts(self) -> None:
        rows = "".join(
            f"<tr><td><b>{keys}</b></td><td>&nbsp;&nbsp;{what}</td></tr>"
            for keys, what in SHORTCUTS
        )
        QMessageBox.information(self, "Keyboard shortcuts", f"<table>{rows}</table>")

    @Slot()
    def show_about(self) -> None:
        QMessageBox.about(
            self,
            "About Quire",
            f"<h3>Quire {version()}</h3>"
            "<p>Chat with your own documents, fully offline: answers cite the document and "
            "page they come from; LoRA adapters change how the model answers.</p>"
            f"<p>Model: {html.escape(self.model_label.text().removeprefix('Model: '))}<br>"
            f"Data folder: {html.escape(str(self.data_dir))}</p>"
            "<p>Nothing leaves this computer unless you ask for a download.</p>",
        )

    @Slot()
    def export_training(self) -> None:
        """Approved and corrected chat answers as a JSONL file for the Fine-tune tab."""
        path, _ = QFileDialog.getSaveFileName(
            self, "Export training examples", "quire-examples.jsonl", "JSON Lines (*.jsonl)"
        )
        if path:
            self.export_training_to(Path(path))

    def export_training_to(self, path: Path) -> Request:
        """Write the examples on the history lane; then say how many and offer the file
        to the Fine-tune tab (a failure, such as a full disk, goes to the banner)."""

        def done(count: int) -> None:
            self.statusBar().showMessage(f"Exported {count} training example(s) to {path}", 10000)
            self.finetune.path.setText(str(path))

        def work(history: History, _request: Request) -> int:
            with not_saved(path):
                return history.export_training(path)

        return self.writes.write(
            work,
            done,
            self.bridge.failure("Could not export the training examples"),
        )

    def _toolbar(self) -> QToolBar:
        bar = QToolBar("Main", self)
        bar.setObjectName("mainToolbar")
        bar.setMovable(False)
        bar.addWidget(QLabel(" Collection: "))
        self.collections = QComboBox(bar)
        self.collections.setMinimumWidth(180)
        self.collections.activated.connect(self._on_collection_activated)
        # Never the focus by Tab or at start: typing there switched the collection.
        self.collections.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        bar.addWidget(self.collections)
        for text, slot in (
            ("New", self.new_collection),
            ("Rename", self.rename_collection),
            ("Delete", self.delete_collection),
        ):
            bar.addAction(text, slot).setToolTip(f"{text} collection")
        spacer = QWidget(bar)
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        bar.addWidget(spacer)
        bar.addAction("Add documents…", self.add_documents).setToolTip("Ctrl+O")
        bar.addAction("Adapter…", self.open_adapter).setToolTip(
            "Load, rescale or switch off a LoRA adapter"
        )
        bar.addAction("Settings", self.open_settings).setToolTip("Ctrl+,")
        return bar

    def _connect(self) -> None:
        bridge = self.bridge
        bridge.on_failure = self.banner.show_message  # what no view shows itself
        bridge.status_changed.connect(self._on_status_changed)
        bridge.modes_changed.connect(self._on_modes_changed)
        self.serve.serving.connect(
            lambda address: self.statusBar().showMessage(f"Quire serves on {address}", 10000)
        )
        self.serve.failed.connect(self.banner.show_message)
        bridge.settings_applied.connect(self._on_settings_applied)
        bridge.ingest_finished.connect(lambda _r: self.search.run_search())
        self.chat.answer_finished.connect(self._on_answer_speed)
        self.chat.source_opened.connect(self.open_source)
        self.search.source_opened.connect(self.open_source)
        self.compare.source_opened.connect(self.open_source)
        self.compare.busy_changed.connect(self._on_busy_changed)
        self.chat.conversation_changed.connect(self.history_view.refresh)
        self.chat.busy_changed.connect(self._on_busy_changed)
        self.history_view.conversation_selected.connect(self._on_conversation_selected)
        self.history_view.new_requested.connect(self.new_conversation)
        self.history_view.conversation_deleted.connect(self._on_conversation_deleted)
        self.library.watched_changed.connect(self._on_watched_list_changed)
        self.reader.closed.connect(self.close_reader)
        self.tabs.currentChanged.connect(lambda _index: self._focus_page())
        self.reader.failed.connect(self.banner.show_message)
        self.finetune.use_adapter.connect(self._on_use_adapter)
        self.finetune.reader_changed.connect(self._use_reader)

    def _shortcuts(self) -> None:
        for keys, slot in (
            (("Ctrl+Return", "Ctrl+Enter"), self.chat.send),
            (("Esc",), self.stop),
            (("Ctrl+Shift+Return", "Ctrl+Shift+Enter"), self.compare_question),
        ):
            action = QAction(self)
            action.setShortcuts([QKeySequence(k) for k in keys])
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(slot)
            self.addAction(action)

    # -- actions ---------------------------------------------------------------------------

    @Slot()
    def add_documents(self) -> None:
        self.tabs.setCurrentWidget(self.library)
        self.library.add_files()

    @Slot()
    def stop(self) -> None:
        self.chat.stop()
        self.compare.stop()

    @Slot()
    def compare_question(self) -> None:
        """Ctrl+Shift+Enter: the chat's (or the Compare tab's) question in every mode."""
        if self.tabs.currentWidget() is self.chat:
            text = self.chat.input.toPlainText().strip()
            if text:
                self.compare.question.setPlainText(text)
        self.tabs.setCurrentWidget(self.compare)
        self.compare.compare()

    @Slot(str)
    def _on_use_adapter(self, path: str) -> None:
        """The Fine-tune tab's "Use this adapter": said there when it waits for indexing,
        and when it is in use."""
        self.finetune.show_use(self.bridge.queued_note() or "Switching to it…")
        self.bridge.set_adapter(
            path,
            1.0,
            done=lambda _used: self.finetune.show_use("In use: the LoRA and Hybrid modes use it."),
            failed=lambda message: self.finetune.show_use(f"Could not use it: {message}"),
        )

    @Slot()
    def open_adapter(self) -> AdapterDialog:
        """The (non-modal) adapter dialog; one per window."""
        if self.adapter_dialog is None:
            s = self.settings
            self.adapter_dialog = AdapterDialog(self.bridge, s.lora_path, s.lora_scale, self)
            if self.status is not None:  # named as the status bar names it
                self.adapter_dialog.show_status(self.status)
        self.adapter_dialog.show()
        self.adapter_dialog.raise_()
        return self.adapter_dialog

    def show_page(self, page: QWidget) -> None:
        """Ctrl+1 … Ctrl+6: the page, with the keyboard in its main field."""
        self.tabs.setCurrentWidget(page)
        self._focus_page()

    def _focus_page(self) -> None:
        """The keyboard to the current page's main field: the question box in the chat."""
        page = self.tabs.currentWidget()
        if page is self.chat:
            self.chat.input.setFocus()
        elif page is self.search:
            self.search.focus_query()

    @Slot()
    def focus_search(self) -> None:
        self.tabs.setCurrentWidget(self.search)
        self.search.focus_query()

    @Slot()
    def new_conversation(self) -> None:
        self.tabs.setCurrentWidget(self.chat)
        self.chat.new_conversation()
        self.history_view.list.clearSelection()

    @Slot()
    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            new = dialog.result_settings()
            model_changed = new.model_path != self.settings.model_path
            self.bridge.apply_settings(new, load_model=model_changed)

    @Slot()
    def close_reader(self) -> None:
        """Hide the reader and give its width to the tabs, never to the sidebar."""
        sidebar = self.splitter.sizes()[0]
        self.reader.hide()
        total = sum(self.splitter.sizes())  # the reader's handle is gone with it
        self.splitter.setSizes([sidebar, total - sidebar, 0])

    @Slot(object)
    def open_source(self, source: SearchResult) -> None:
        was_hidden = self.reader.isHidden()
        sizes = self.splitter.sizes()
        self.reader.show()
        if was_hidden:  # the reader takes the larger share of the tabs' width, not the sidebar's
            total = sizes[1] + sizes[2]
            tabs = min(max(total * 2 // 5, self.tabs.minimumSizeHint().width()), total)
            self.splitter.setSizes([sizes[0], tabs, max(total - tabs, 0)])
        if not self.reader.open_source(source) and was_hidden:
            self.reader.hide()

    def new_collection(self) -> None:
        name, ok = QInputDialog.getText(self, "New collection", "Name:")
        if ok and name.strip():  # switch first, or the worker's reply switches back a moment
            self._apply_collection(name.strip())
            self.bridge.create_collection(name.strip())

    def rename_collection(self) -> None:
        old = self.collection
        name, ok = QInputDialog.getText(self, "Rename collection", "New name:", text=old)
        if ok and name.strip() and name.strip() != old:
            self.bridge.rename_collection(old, name.strip())

    def delete_collection(self) -> None:
        name = self.collection
        answer = QMessageBox.question(
            self, "Delete collection", f"Forget every document in “{name}”? Files stay on disk."
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.bridge.delete_collection(name)

    def _apply_collection(self, name: str, save: bool = True) -> None:
        self.collection = name
        for view in (self.chat, self.library, self.search, self.compare):
            view.collection = name
        self.setWindowTitle(name)  # the system adds " — Quire" (the application's name)
        self.library.refresh()
        if save:
            self.bridge.set_collection(name)

    # -- engine results --------------------------------------------------------------------

    @Slot(int)
    def _on_collection_activated(self, index: int) -> None:
        name = self.collections.itemData(index)
        if name and name != self.collection:
            self._apply_collection(name)
        self._focus_page()  # the keyboard back to the question, not the next collection

    @Slot(object)
    def _on_modes_changed(self, reasons: dict) -> None:
        """The modes that can run (the status follows): the adapter modes' reason in the
        app's words when it is the missing adapter, the engine's (a model server) else."""
        local = not self.settings.server_url
        self.mode_reasons = {
            mode: LORA_HINT if local and reason and MODES[mode].adapter else reason
            for mode, reason in reasons.items()
        }

    @Slot(object)
    def _on_status_changed(self, status: Status) -> None:
        self.status = status
        remote = bool(self.settings.server_url)
        self.model_label.setText(f"Model: {status.model}")
        self.model_label.setToolTip(
            f"Answers come from the model server at {self.settings.server_url}"
            if remote
            else "Answers come from a local GGUF model (File ▸ Models…)"
        )
        self.adapter_label.setText(adapter_text(status.adapter, status.adapter_scale))
        failed = f", {status.failed} failed" if status.failed else ""
        self.index_label.setText(
            f"Index: {status.documents} documents{failed}, {status.chunks} passages, "
            f"{human_size(status.bytes)}"
        )
        self.chat.set_modes(self.mode_reasons, status.adapter, status.default_mode)
        self.compare.set_modes(self.mode_reasons, status.adapter, status.model if remote else None)
        self.chat.model_note = BASE_MODEL_NOTE if status.bundled else ""
        self._fill_collections(status.collections)
        mine = next((c for c in status.collections if c.name == self.collection), None)
        self.chat.set_welcome(
            welcome_text(
                mine.documents if mine else 0,
                mine.chunks if mine else 0,
                self.collection,
                status.model,
                adapter_name(status.adapter),
                remote,
            )
        )

    def _fill_collections(self, collections: list) -> None:
        self.collections.blockSignals(True)
        self.collections.clear()
        names = [c.name for c in collections]
        if self.collection not in names:
            names.append(self.collection)
        counts = {c.name: c.documents for c in collections}
        for name in sorted(names):
            self.collections.addItem(f"{name}  ({counts.get(name, 0)} docs)", name)
        self.collections.setCurrentIndex(self.collections.findData(self.collection))
        self.collections.blockSignals(False)

    @Slot(object)
    def _on_settings_applied(self, settings: Settings) -> None:
        """The engine's settings as they are now: the window's snapshot."""
        collection_changed = settings.collection != self.collection
        watched = settings.watched_folders or []
        if sorted(dict.fromkeys(watched)) != self.library.watched_folders():  # not shown yet
            self.library.set_watched(watched)
            self.watcher.set_folders(watched)
        self.settings = copy.deepcopy(settings)
        self.finetune.reader_section.show_in_use(settings.reader_path)
        if self.models_dialog is not None:
            self.models_dialog.show_settings(self.settings)
        if collection_changed:
            self._apply_collection(settings.collection, save=False)
            if self.status is not None:  # the list showed the old name as the current one
                self._fill_collections(self.status.collections)

    @Slot(bool)
    def _on_busy_changed(self, busy: bool) -> None:
        self.statusBar().showMessage("Generating… (Esc stops)" if busy else "", 0 if busy else 1)

    @Slot(int)
    def _on_conversation_selected(self, conversation_id: int) -> None:
        self.tabs.setCurrentWidget(self.chat)
        self.chat.load_conversation(conversation_id)

    @Slot(int)
    def _on_conversation_deleted(self, conversation_id: int) -> None:
        if self.chat.conversation_id == conversation_id:
            self.chat.new_conversation()

    @Slot(list)
    def _on_watched_list_changed(self, folders: list) -> None:
        self.watcher.set_folders(folders)
        self.bridge.set_watched_folders(folders)

    @Slot(list)
    def _on_watched_changed_on_disk(self, folders: list) -> None:
        self.statusBar().showMessage(f"Re-indexing {len(folders)} watched folder(s)…", 5000)
        self.library._set_indexing(True)
        self.bridge.reindex(folders, self.library.ingest_failed)

    # -- window state ----------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if dropped_paths(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        paths = dropped_paths(event)
        if paths:
            event.acceptProposedAction()
            self.tabs.setCurrentWidget(self.library)
            self.library.add_paths(paths)

    def _restore_layout(self) -> None:
        state = QSettings()
        if geometry := state.value("window/geometry"):
            self.restoreGeometry(geometry)
        else:
            self.resize(1440, 880)
        if splitter := state.value("window/splitter"):
            self.splitter.restoreState(splitter)
        self.restoreState(state.value("window/state") or b"")
        tab: Any = state.value("window/tab", 0)  # an int, or its text from the ini file
        self.tabs.setCurrentIndex(int(tab))

    def save_layout(self) -> None:
        state = QSettings()
        state.setValue("window/geometry", self.saveGeometry())
        state.setValue("window/splitter", self.splitter.saveState())
        state.setValue("window/state", self.saveState())
        state.setValue("window/tab", self.tabs.currentIndex())

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        """Coming back to the window: the index may have changed meanwhile (a CLI ingest
        into the same data folder), so its counts are read again."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow():
            self.bridge.refresh_status()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.save_layout()
        if self.models_dialog is not None:
            self.models_dialog.close()
        self.serve.stop()
        self.bridge.close()
        self.history.close()
        super().closeEvent(event)
