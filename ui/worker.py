"""The bridge between the window and the engine: one QThread owns the `Engine`.

The GUI never calls the engine itself. It calls `Bridge` methods, which emit queued
signals into the `Worker` living in the worker thread; results come back as signals.
Stopping an answer (`engine.cancel()`) and an ingest (a `threading.Event`) are the two
calls made straight from the GUI thread: both are thread-safe by design.
"""

from __future__ import annotations

import copy
import errno
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.core import AnswerFinished, AskOptions, Engine, SourcesFound, TokenReceived
from engine.settings import Settings
from engine.types import IngestProgress, UserError
from ui.banner import human_duration
from ui.lab import Lab

log = logging.getLogger(__name__)
WORKER_NICE = int(os.environ.get("QUIRE_WORKER_NICE", "5"))  # the engine yields to the window


@dataclass(frozen=True)
class Status:
    """What the status bar shows: model, adapter, index size."""

    model: str
    adapter: str | None
    documents: int
    failed: int
    chunks: int
    bytes: int
    collections: list[Any]
    adapter_scale: float = 1.0


def describe_error(exc: BaseException) -> str:
    """One line a user can act on; a bug keeps its traceback in the log."""
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "The disk is full: free some space, then try again."
    if isinstance(exc, OSError):
        name = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{name}"
    log.error("unexpected error in the worker:\n%s", traceback.format_exc())
    return f"Unexpected error: {type(exc).__name__}: {exc} (details in the log)"


def lower_thread_priority(step: int = WORKER_NICE) -> None:
    """Make the calling thread (and the threads and processes it starts) nicer.

    On Linux the nice value is per thread and inherited by llama.cpp's, onnxruntime's and
    the parser processes' threads, so the window gets the CPU first when it needs it and
    never waits behind generation or indexing. Elsewhere this is a no-op.
    """
    if not sys.platform.startswith("linux") or step <= 0:
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + step)
    except OSError:
        log.info("could not lower the worker thread's priority")


class Counter:
    """An int two threads change: index runs asked for (GUI) and ended (worker)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def change(self, by: int) -> None:
        with self._lock:
            self.value += by


class Worker(QObject):
    """Owns the Engine; every slot runs in the worker thread.

    Signals: sources_found(list), token_received(str), answer_finished(Answer),
    ingest_progressed(IngestProgress), ingest_finished(IngestReport),
    search_finished(str, list), documents_listed(str, list), status_changed(Status),
    settings_applied(Settings), failed(str task, str message).
    """

    sources_found = Signal(list)
    token_received = Signal(str)
    answer_finished = Signal(object)
    ingest_progressed = Signal(object)
    ingest_finished = Signal(object)
    search_finished = Signal(str, list)
    documents_listed = Signal(str, list)
    status_changed = Signal(object)
    settings_applied = Signal(object)
    failed = Signal(str, str)

    def __init__(self, data_dir: Path | None) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.ingest_cancel = threading.Event()
        self.index_runs = Counter()  # ingest requests queued or running
        self.answer_stop = threading.Event()  # also covers a stop before generation began
        self.engine: Engine | None = None

    def _run(self, task: str, work: Callable[[Engine], None]) -> None:
        try:
            if self.engine is None:
                self.engine = Engine(self.data_dir)
            work(self.engine)
        except Exception as exc:  # noqa: BLE001 - reported to the window, never fatal
            self.failed.emit(task, describe_error(exc))

    @Slot()
    def start(self) -> None:
        """Open the index and report the status (the model loads on the first question)."""
        lower_thread_priority()
        self._run("start", self._emit_status)

    @Slot(str, str, object)
    def ask(self, question: str, mode: str, options: AskOptions) -> None:
        self._run("ask", lambda engine: self._ask(engine, question, mode, options))

    def _ask(self, engine: Engine, question: str, mode: str, options: AskOptions) -> None:
        for event in engine.ask(question, mode, options):
            if isinstance(event, TokenReceived):
                if self.answer_stop.is_set():
                    engine.cancel()  # the generator stops before its next token
                self.token_received.emit(event.text)
            elif isinstance(event, SourcesFound):
                self.sources_found.emit(event.sources)
            elif isinstance(event, AnswerFinished):
                self.answer_finished.emit(event.answer)

    @Slot(list, str)
    def ingest(self, paths: list[str], collection: str) -> None:
        try:
            self._run("ingest", lambda engine: self._ingest(engine, paths, collection))
        finally:
            self.index_runs.change(-1)

    def _ingest(self, engine: Engine, paths: list[str], collection: str) -> None:

        listed = [0]

        def progress(snapshot: IngestProgress) -> None:
            self.ingest_progressed.emit(snapshot)
            if snapshot.files_done != listed[0]:  # a document was written: show it
                listed[0] = snapshot.files_done
                self._list(engine, collection)

        try:
            files = [Path(p) for p in paths]
            report = engine.ingest(files, collection, progress, self.ingest_cancel)
        finally:
            self._emit_status(engine)
        self.ingest_finished.emit(report)
        self._list(engine, collection)

    @Slot(list)
    def reindex_watched(self, folders: list[str]) -> None:
        """Re-ingest watched folders into the collections that hold their documents."""
        try:
            self._run("ingest", lambda engine: self._reindex(engine, folders))
        finally:
            self.index_runs.change(-1)

    def _reindex(self, engine: Engine, folders: list[str]) -> None:
        docs = engine.documents()
        for folder in folders:
            root = Path(folder)
            owners = {d.collection for d in docs if Path(d.path).is_relative_to(root)}
            for collection in sorted(owners) or [engine.settings.collection]:
                self._ingest(engine, [folder], collection)

    @Slot(str, int, str, str)
    def search(self, query: str, k: int, collection: str, method: str) -> None:
        def work(engine: Engine) -> None:
            results = engine.search(query, k or None, collection or None, method)
            self.search_finished.emit(query, results)

        self._run("search", work)

    @Slot(str)
    def list_documents(self, collection: str) -> None:
        self._run("documents", lambda engine: self._list(engine, collection))

    def _list(self, engine: Engine, collection: str) -> None:
        self.documents_listed.emit(collection, engine.documents(collection))

    @Slot(list, str)
    def remove(self, paths: list[str], collection: str) -> None:
        def work(engine: Engine) -> None:
            engine.remove([Path(p) for p in paths], collection)
            self._list(engine, collection)
            self._emit_status(engine)

        self._run("remove", work)

    @Slot(str, str, str)
    def manage_collection(self, action: str, name: str, new_name: str) -> None:
        """create / rename / delete a collection, then report the new status."""

        def work(engine: Engine) -> None:
            if action == "create":
                engine.create_collection(name)
            elif action == "rename":
                engine.rename_collection(name, new_name)
            elif action == "delete":
                engine.delete_collection(name)
            engine.settings.save(engine.data_dir)
            self._emit_status(engine)
            self.settings_applied.emit(copy.deepcopy(engine.settings))

        self._run("collection", work)

    @Slot(object, bool)
    def apply_settings(self, settings: Settings, load_model: bool) -> None:
        """Save new settings; load the model now when it changed, to report a bad file."""

        def work(engine: Engine) -> None:
            previous = engine.settings
            engine.settings = copy.deepcopy(settings)
            if load_model:
                try:
                    engine.generator  # noqa: B018 - loads (or reloads) the GGUF, may raise
                except Exception:
                    engine.settings.model_path = previous.model_path  # keep a working model
                    self._save_settings(engine)
                    raise
            self._save_settings(engine)

        self._run("settings", work)

    def _save_settings(self, engine: Engine) -> None:
        engine.settings.save(engine.data_dir)
        self.settings_applied.emit(copy.deepcopy(engine.settings))
        self._emit_status(engine)

    def _emit_status(self, engine: Engine) -> None:
        stats = engine.store.stats()
        model = Path(engine.settings.model_path).name if engine.settings.model_path else ""
        self.status_changed.emit(
            Status(
                model=model or "Gemma 3 270M (bundled)",
                adapter=engine.adapter_label(),
                documents=stats.documents,
                failed=stats.failed,
                chunks=stats.chunks,
                bytes=stats.bytes,
                collections=engine.collections(),
                adapter_scale=engine.adapter_scale(),
            )
        )

    @Slot()
    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None


RELAYED = (
    "sources_found",
    "token_received",
    "answer_finished",
    "ingest_progressed",
    "ingest_finished",
    "search_finished",
    "documents_listed",
    "status_changed",
    "settings_applied",
    "failed",
)


class Bridge(QObject):
    """The GUI thread's handle on the worker: request methods, and the worker's signals.

    Signals: the Worker's, re-emitted in the GUI thread (connect to these, not the
    worker's: a plain callable connected to a worker signal would run in the worker thread).
    """

    sources_found = Signal(list)
    token_received = Signal(str)
    answer_finished = Signal(object)
    ingest_progressed = Signal(object)
    ingest_finished = Signal(object)
    search_finished = Signal(str, list)
    documents_listed = Signal(str, list)
    status_changed = Signal(object)
    settings_applied = Signal(object)
    failed = Signal(str, str)

    _ask_requested = Signal(str, str, object)
    _ingest_requested = Signal(list, str)
    _reindex_requested = Signal(list)
    _search_requested = Signal(str, int, str, str)
    _documents_requested = Signal(str)
    _remove_requested = Signal(list, str)
    _collection_requested = Signal(str, str, str)
    _settings_requested = Signal(object, bool)
    _shutdown_requested = Signal()

    def __init__(self, data_dir: Path | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("quire-engine")
        self.worker = Worker(data_dir)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.start)
        for signal, slot in (
            (self._ask_requested, self.worker.ask),
            (self._ingest_requested, self.worker.ingest),
            (self._reindex_requested, self.worker.reindex_watched),
            (self._search_requested, self.worker.search),
            (self._documents_requested, self.worker.list_documents),
            (self._remove_requested, self.worker.remove),
            (self._collection_requested, self.worker.manage_collection),
            (self._settings_requested, self.worker.apply_settings),
            (self._shutdown_requested, self.worker.shutdown),
        ):
            signal.connect(slot)
        for name in RELAYED:  # queued: the bridge lives in the GUI thread
            getattr(self.worker, name).connect(getattr(self, name))
        self.lab = Lab(self.worker, self.thread, self)
        self._index_progress: IngestProgress | None = None
        self.ingest_progressed.connect(self._on_index_progress)

    def start(self, preload: bool = False) -> None:
        """Start the worker thread; connect to the worker's signals before this.

        With `preload`, the models load right after the first status (requests queue behind).
        """
        self.thread.start()
        if preload:
            self.lab.preload()

    def ask(self, question: str, mode: str, options: AskOptions) -> None:
        self.worker.answer_stop.clear()
        self._ask_requested.emit(question, mode, options)

    def stop_answer(self) -> None:
        """Stop the answer being generated (thread-safe engine call)."""
        self.worker.answer_stop.set()
        engine = self.worker.engine
        if engine is not None:
            engine.cancel()

    def ingest(self, paths: list[str], collection: str) -> None:
        self.worker.ingest_cancel.clear()
        self.worker.index_runs.change(+1)
        self._ingest_requested.emit(paths, collection)

    def waiting_note(self) -> str:
        """Why a search or a question sent now waits ("" when nothing holds the engine):
        indexing owns the engine until it ends, and requests queue behind it."""
        if self.worker.index_runs.value <= 0:
            self._index_progress = None
            return ""
        snap = self._index_progress
        where = ""
        if snap is not None:
            eta = snap.eta_s
            left = f", about {human_duration(eta)} left" if eta is not None else ""
            where = f" ({snap.files_done} of {snap.files_total} files{left})"
        return f"Waiting for indexing to finish{where}; this runs right after."

    @Slot(object)
    def _on_index_progress(self, snapshot: IngestProgress) -> None:
        self._index_progress = snapshot

    def cancel_ingest(self) -> None:
        self.worker.ingest_cancel.set()

    def reindex(self, folders: list[str]) -> None:
        self.worker.ingest_cancel.clear()
        self.worker.index_runs.change(+1)
        self._reindex_requested.emit(folders)

    def search(self, query: str, k: int, collection: str, method: str = "hybrid") -> None:
        self._search_requested.emit(query, k, collection, method)

    def list_documents(self, collection: str) -> None:
        self._documents_requested.emit(collection)

    def remove(self, paths: list[str], collection: str) -> None:
        self._remove_requested.emit(paths, collection)

    def manage_collection(self, action: str, name: str, new_name: str = "") -> None:
        self._collection_requested.emit(action, name, new_name)

    def apply_settings(self, settings: Settings, load_model: bool = False) -> None:
        self._settings_requested.emit(copy.deepcopy(settings), load_model)

    def close(self) -> None:
        """Stop whatever runs, close the engine in its own thread, end the thread."""
        self.cancel_ingest()
        self.stop_answer()
        self.lab.stop_evaluation()
        self._shutdown_requested.emit()
        self.thread.quit()
        self.thread.wait()
