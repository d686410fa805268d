"""What the window asks of the engine, as operations on the one engine thread (`Runner`).

Each method submits one operation and returns its `Request` (whose `stop()` stops it);
results come back to the callbacks the caller passed, in the GUI thread, and a failure
goes to the caller's own `failed` (or, when it passed none, to `on_failure`: the window's
banner). Six signals remain, for the state several views show whoever asked for it: the
status, the modes that can run, the settings, a collection's documents, and indexing's
progress and end.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from engine.answer.events import AnswerFinished, AskOptions, SourcesFound, TokenReceived
from engine.answer.remote import normalize_url, save_key
from engine.core import Engine
from engine.eval.evaluation import EvalConfig, EvalReport, Evaluation
from engine.settings import Settings
from engine.types import IngestProgress, IngestReport
from ui.banner import human_duration
from ui.runner import Request, Runner

Failed = Callable[[str], None]


class Bridge(QObject):
    """The window's handle on the engine.

    Signals: status_changed(Status), modes_changed(dict mode -> reason it cannot run or
    None; emitted just before each status), settings_applied(Settings),
    documents_listed(collection, list), ingest_progressed(IngestProgress),
    ingest_finished(IngestReport).
    """

    status_changed = Signal(object)
    modes_changed = Signal(object)
    settings_applied = Signal(object)
    documents_listed = Signal(str, list)
    ingest_progressed = Signal(object)
    ingest_finished = Signal(object)

    def __init__(self, data_dir: Path | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = data_dir
        self.runner = Runner(data_dir, self)
        self.on_failure: Callable[[str], None] = lambda _text: None  # the window sets it
        self._live: set[Request] = set()  # submitted and not ended: stopped on close
        self._indexing: list[Request] = []  # ingest requests queued or running
        self._index_progress: IngestProgress | None = None

    def submit(
        self,
        work: Callable[[Engine, Request], Any],
        done: Callable[[Any], None] | None = None,
        failed: Failed | None = None,
    ) -> Request:
        """Run `work(engine, request)` on the engine thread (see `Runner.submit`)."""
        request: Request | None = None

        def ended(callback: Callable[[Any], None] | None, value: Any) -> None:
            self._live.discard(request)
            if request in self._indexing:
                self._indexing.remove(request)
            if callback is not None:
                callback(value)

        request = self.runner.submit(work, lambda r: ended(done, r), lambda m: ended(failed, m))
        self._live.add(request)
        return request

    def failure(self, prefix: str) -> Failed:
        """A `failed` callback that shows "prefix: message" where the window shows problems."""
        return lambda message: self.on_failure(f"{prefix}: {message}")

    def start(self, preload: bool = False) -> None:
        """Start the engine thread and report its settings and status (the window's first
        snapshot of them); with `preload`, load the models right after (requests queue
        behind)."""
        self.runner.start()
        self.submit(self._settled, None, self.failure("Problem"))
        if preload:
            self.preload()

    def preload(self, done: Callable[[Any], None] | None = None) -> Request:
        """Load the embedder, the vector index and the model; `done` runs after, either way."""
        failed = self.failure("Could not load the models")

        def failed_then_done(message: str) -> None:
            failed(message)
            if done is not None:
                done(None)

        return self.submit(lambda engine, _r: engine.preload(), done, failed_then_done)

    # -- answers ---------------------------------------------------------------------

    def ask(
        self,
        question: str,
        mode: str,
        options: AskOptions,
        sources: Callable[[list, Any], None],
        token: Callable[[str], None],
        done: Callable[[Any], None],
        failed: Failed,
    ) -> Request:
        """Answer in one mode: `sources(list, quote or None)`, `token(text)`..., then
        `done(Answer)`."""

        def work(engine: Engine, request: Request) -> Any:
            for event in engine.ask(question, mode, options, stop=request.cancel):
                if isinstance(event, TokenReceived):
                    request.post(token, event.text)
                elif isinstance(event, SourcesFound):
                    request.post(sources, event.sources, event.quote)
                elif isinstance(event, AnswerFinished):
                    return event.answer
            return None

        return self.submit(work, done, failed)

    def compare(
        self,
        question: str,
        options: AskOptions,
        started: Callable[[dict], None],
        event: Callable[[str, object], None],
        done: Callable[[Any], None],
        failed: Failed,
    ) -> Request:
        """Every mode that can run, in turn: `started(reasons)`, `event(mode, AnswerEvent)`
        for each sources/token/answer, then `done(None)`. A stop ends the whole run."""

        def work(engine: Engine, request: Request) -> None:
            request.post(started, engine.available_modes())
            for mode, answer_event in engine.compare(question, options, stop=request.cancel):
                request.post(event, mode, answer_event)

        return self.submit(work, done, failed)

    def evaluate(
        self,
        path: str,
        config: EvalConfig,
        progress: Callable[[Any], None],
        done: Callable[[EvalReport], None],
        failed: Failed,
    ) -> Request:
        """Score the modes on a question file; a stop keeps the answers given so far."""

        def work(engine: Engine, request: Request) -> EvalReport:
            evaluation = Evaluation(engine, Path(path), config)
            return evaluation.run(lambda p: request.post(progress, p), stop=request.cancel)

        return self.submit(work, done, failed)

    def search(
        self,
        query: str,
        k: int,
        collection: str,
        method: str,
        done: Callable[[list], None],
        failed: Failed,
    ) -> Request:
        return self.submit(
            lambda engine, _r: engine.search(query, k or None, collection or None, method),
            done,
            failed,
        )

    # -- documents -------------------------------------------------------------------

    def ingest(
        self, paths: list[str], collection: str, failed: Failed | None = None, ocr: bool = False
    ) -> Request:
        """Index files and folders (scanned PDFs by OCR with `ocr`); progress and the report
        arrive as signals."""
        request = self.submit(
            lambda engine, r: self._ingest(engine, r, [Path(p) for p in paths], collection, ocr),
            self.ingest_finished.emit,
            failed or self.failure("Could not index"),
        )
        self._indexing.append(request)
        return request

    def reindex(self, folders: list[str], failed: Failed | None = None) -> Request:
        """Re-index watched folders into the collections that hold their documents."""

        def work(engine: Engine, request: Request) -> None:
            try:
                progress = self._progress_for(engine, request, engine.settings.collection)
                paths = [Path(f) for f in folders]
                reports = engine.reindex(paths, progress, stop=request.cancel)
            finally:
                self._report(engine, request)
            for report in reports:
                request.post(self.ingest_finished.emit, report)

        request = self.submit(work, None, failed or self.failure("Could not re-index"))
        self._indexing.append(request)
        return request

    def _ingest(
        self, engine: Engine, request: Request, paths: list[Path], collection: str, ocr: bool
    ) -> IngestReport:
        try:
            progress = self._progress_for(engine, request, collection)
            report = engine.ingest(paths, collection, progress, stop=request.cancel, ocr=ocr)
        finally:
            self._report(engine, request)
        request.post(self.documents_listed.emit, collection, engine.documents(collection))
        return report

    def _progress_for(
        self, engine: Engine, request: Request, collection: str
    ) -> Callable[[IngestProgress], None]:
        """Ingest progress to the window, with the document list and the status (its
        document count) whenever a file is in."""
        listed = [0]

        def progress(snapshot: IngestProgress) -> None:
            request.post(self._progressed, snapshot)
            if snapshot.files_done != listed[0]:  # a document was written: show it
                listed[0] = snapshot.files_done
                docs = engine.documents(collection)
                request.post(self.documents_listed.emit, collection, docs)
                self._report(engine, request)

        return progress

    def _progressed(self, snapshot: IngestProgress) -> None:
        self._index_progress = snapshot
        self.ingest_progressed.emit(snapshot)

    def cancel_ingest(self) -> None:
        """Stop every queued or running ingest; finished files stay indexed."""
        for request in self._indexing:
            request.stop()

    def waiting_note(self) -> str:
        """Why a search or a question sent now waits ("" when nothing holds the engine):
        indexing owns the engine until it ends, and requests queue behind it."""
        if not self._indexing:
            self._index_progress = None
            return ""
        snap = self._index_progress
        where = ""
        if snap is not None:
            eta = snap.eta_s
            left = f", about {human_duration(eta)} left" if eta is not None else ""
            where = f" ({snap.files_done} of {snap.files_total} files{left})"
        return f"Waiting for indexing to finish{where}; this runs right after."

    def queued_note(self) -> str:
        """What a change sent now (an adapter, a setting) says while it waits behind
        indexing ("" when nothing holds the engine)."""
        if not self._indexing:
            return ""
        snap = self._index_progress
        eta = snap.eta_s if snap is not None else None
        left = f" (about {human_duration(eta)} left)" if eta is not None else ""
        return f"Queued: takes effect after indexing{left}."

    def list_documents(self, collection: str, failed: Failed | None = None) -> Request:
        return self.submit(
            lambda engine, r: r.post(
                self.documents_listed.emit, collection, engine.documents(collection)
            ),
            None,
            failed or self.failure("Could not list the documents"),
        )

    def remove(self, paths: list[str], collection: str, failed: Failed | None = None) -> Request:
        def work(engine: Engine, request: Request) -> None:
            engine.remove([Path(p) for p in paths], collection)
            request.post(self.documents_listed.emit, collection, engine.documents(collection))
            self._report(engine, request)

        return self.submit(work, None, failed or self.failure("Could not remove"))

    # -- settings, collections, adapters -----------------------------------------------

    def refresh_status(self) -> None:
        """Report the status again (another Quire, e.g. a CLI ingest, may have changed the
        index); one refresh waits at a time, and one asked for meanwhile runs after it (the
        one in flight may have read the index before the change)."""
        if getattr(self, "_refreshing", False):
            self._refresh_again = True
            return
        self._refreshing, self._refresh_again = True, False

        def done(_result: Any) -> None:
            self._refreshing = False
            if self._refresh_again:
                self.refresh_status()

        def failed(message: str) -> None:
            self._refreshing = False
            self.on_failure(f"Problem: {message}")

        self.submit(self._report, done, failed)

    def _report(self, engine: Engine, request: Request) -> None:
        """Post the modes that can run now, then the status, to the window."""
        request.post(self.modes_changed.emit, engine.available_modes())
        request.post(self.status_changed.emit, engine.status())

    def _settled(self, engine: Engine, request: Request) -> None:
        """Post the engine's settings, modes and status, as they are now, to the window."""
        request.post(self.settings_applied.emit, copy.deepcopy(engine.settings))
        self._report(engine, request)

    def apply_settings(
        self, settings: Settings, load_model: bool = False, failed: Failed | None = None
    ) -> Request:
        """Save new settings; with `load_model`, load the model now to report a bad file
        (the previous model stays when it will not load)."""
        wanted = copy.deepcopy(settings)

        def work(engine: Engine, request: Request) -> None:
            try:
                engine.apply_settings(wanted, load_model)
            finally:
                self._settled(engine, request)

        return self.submit(work, None, failed or self.failure("Could not apply the settings"))

    def set_collection(self, name: str, failed: Failed | None = None) -> Request:
        """Make `name` the collection ingest, search and answers use (saved)."""

        def work(engine: Engine, request: Request) -> None:
            engine.set_collection(name)
            self._settled(engine, request)

        return self.submit(work, None, failed or self.failure("Could not switch collections"))

    def set_watched_folders(self, folders: list[str], failed: Failed | None = None) -> Request:
        """Keep these folders indexed (saved)."""

        def work(engine: Engine, request: Request) -> None:
            engine.set_watched_folders(folders)
            self._settled(engine, request)

        return self.submit(work, None, failed or self.failure("Could not save the folders"))

    def use_server(
        self,
        url: str | None,
        model: str | None = None,
        key: str | None = None,
        done: Callable[[Any], None] | None = None,
        failed: Failed | None = None,
    ) -> Request:
        """Answer with a model server from now on, or with the local model again (`url`
        None). The key goes to `server_key` (mode 0600), never into the settings; "" removes
        it, None leaves it as it is. `done(None)` once the settings and status are posted."""

        def work(engine: Engine, request: Request) -> None:
            wanted = copy.deepcopy(engine.settings)
            wanted.server_url = normalize_url(url) if url else None
            wanted.server_model = (model or None) if url else None
            try:
                if url and key is not None:
                    save_key(engine.data_dir, key)
                engine.apply_settings(wanted)
            finally:
                self._settled(engine, request)

        return self.submit(work, done, failed or self.failure("Could not change the model"))

    def create_collection(self, name: str, failed: Failed | None = None) -> Request:
        """Create a collection, then report the new status."""
        failed = failed or self.failure(f"Could not create {name}")
        return self._change_collections(lambda engine: engine.create_collection(name), failed)

    def rename_collection(self, name: str, new_name: str, failed: Failed | None = None) -> Request:
        """Rename a collection, then report the new status."""
        failed = failed or self.failure(f"Could not rename {name}")
        return self._change_collections(
            lambda engine: engine.rename_collection(name, new_name), failed
        )

    def delete_collection(self, name: str, failed: Failed | None = None) -> Request:
        """Delete a collection and its documents, then report the new status."""
        failed = failed or self.failure(f"Could not delete {name}")
        return self._change_collections(lambda engine: engine.delete_collection(name), failed)

    def _change_collections(self, change: Callable[[Engine], object], failed: Failed) -> Request:
        def work(engine: Engine, request: Request) -> None:
            change(engine)
            engine.save_settings()
            self._settled(engine, request)

        return self.submit(work, None, failed)

    def set_adapter(
        self,
        path: str | None,
        scale: float = 1.0,
        done: Callable[[str | None], None] | None = None,
        failed: Failed | None = None,
    ) -> Request:
        """Check and switch to an adapter (None switches it off); a mismatch changes
        nothing. `done(path or None)`."""

        def work(engine: Engine, request: Request) -> str | None:
            info = engine.set_adapter(Path(path) if path else None, scale)
            engine.update_settings(lora_scale=float(scale))  # saves the adapter too
            self._settled(engine, request)
            return str(info.path) if info else None

        return self.submit(work, done, failed or self.failure("Could not load the adapter"))

    def import_adapter(
        self,
        folder: str,
        scale: float = 1.0,
        done: Callable[[str | None], None] | None = None,
        failed: Failed | None = None,
    ) -> Request:
        """Convert a PEFT folder into the models folder's adapters, then switch to it."""

        def work(engine: Engine, request: Request) -> str | None:
            info = engine.import_adapter(Path(folder), scale)
            engine.save_settings()
            self._settled(engine, request)
            return str(info.path)

        return self.submit(work, done, failed or self.failure("Could not load the adapter"))

    def close(self) -> None:
        """Stop whatever runs or waits, close the engine in its own thread, end the thread."""
        for request in list(self._live):
            request.stop()
        self.runner.close()
