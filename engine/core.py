"""The engine facade: one object the CLI and the GUI's engine thread drive with plain calls.

An `Engine` owns the heavy things (SQLite connection, embedder, `Llama`) and the settings,
so it must be used from one thread only. Every call that can take long takes a keyword
`stop` (a `threading.Event`): set it from any thread and the call ends early, keeping what
is done. Callers change settings through its intents (`apply_settings`, `set_collection`,
`set_watched_folders`, `update_settings`), never by editing `engine.settings`.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.answer import asking, grounding
from engine.answer.events import Answer, AnswerEvent, AnswerFinished, AskOptions
from engine.answer.generation import Generator, RefusalGate
from engine.answer.remote import RemoteGenerator, Server
from engine.finetune.trainer import TrainConfig
from engine.index.embedding import Embedder
from engine.index.retrieval import Retriever
from engine.index.store import Store
from engine.ingest.pipeline import Ingestor, ProgressFn, owners
from engine.parts import INDEX_FILE as INDEX_FILE  # where callers have always found it
from engine.parts import Parts
from engine.paths import default_data_dir, ensure_data_dir, models_dir
from engine.reader.rank import Reader
from engine.settings import Settings
from engine.types import IngestReport, SearchResult, Status
from models.lora import AdapterInfo

if TYPE_CHECKING:
    from engine.finetune.job import TrainJob

# A source this far (in cosine) behind the best one is left out of the prompt: on the
# development set the gold passage was never more than 0.10 behind the best one.
SOURCE_MARGIN = 0.15
SEARCH_K = 5  # results of a plain search when none is asked for


class Engine:
    """Ingest, search and answer over one data dir."""

    def __init__(self, data_dir: Path | None = None, settings: Settings | None = None) -> None:
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        ensure_data_dir(self.data_dir)  # the user's alone (0700); a file there: one line
        self.settings = settings if settings is not None else Settings.load(self.data_dir)
        self.models_dir = models_dir(self.data_dir)
        self.parts = Parts(self.data_dir, self.models_dir, lambda: self.settings)
        self.llms = self.parts.llms
        self.grounding = grounding.Grounding(self.parts, lambda: self.settings)

    # -- the heavy things, loaded on first use ---------------------------------------

    @property
    def store(self) -> Store:
        return self.parts.store

    @property
    def embedder(self) -> Embedder:
        return self.parts.embedder

    @property
    def reader(self) -> Reader | None:
        """The reader that reranks and quotes; None when switched off or not shipped."""
        return self.parts.reader

    def reader_folder(self) -> Path | None:
        return self.parts.reader_folder()

    def server(self) -> Server | None:
        return self.parts.server()

    @property
    def remote(self) -> RemoteGenerator | None:
        """The model server as a generator, when one answers instead of the local model."""
        return self.parts.remote

    def model_path(self) -> Path:
        """The GGUF in use: the user's choice, else the bundled default."""
        return self.parts.model_path()

    @property
    def generator(self) -> Generator:
        """The model in use, for base and rag, and for lora/hybrid with a runtime adapter."""
        return self.parts.base_model()

    def preload(self) -> None:
        """Load the embedder, the vector index and the default mode's model, so the first
        answer is quick (on the very first start this folds in the grounding adapter)."""
        self.embedder  # noqa: B018 - loads it
        self.reader  # noqa: B018 - loads it
        load_index = getattr(self.store, "load_index", None)
        if load_index is not None:
            load_index()
        self.load(self.default_mode())

    def load(self, mode: str) -> None:
        """Load the model `mode` answers with (for lora/hybrid with Quire's grounding
        adapter, the copy with the adapter folded in), so that no answer pays for it."""
        self.grounding.generator_for(mode)

    @property
    def last_refusal_odds(self) -> float | None:
        """The refusal gate's first-token odds in the last answer (None: no gate ran)."""
        last = self.llms.last
        return last.last_refusal_odds if last is not None else None

    # -- settings and status ---------------------------------------------------------

    def apply_settings(self, settings: Settings, load_model: bool = False) -> None:
        """Use and save new settings. With `load_model`, the model loads now, and a file
        that will not load keeps the previous model (saved so) and raises."""
        previous = self.settings
        self.settings = copy.deepcopy(settings)
        if load_model:
            try:
                self.generator  # noqa: B018 - loads (or reloads) the GGUF, may raise
            except Exception:
                self.settings.model_path = previous.model_path
                self.save_settings()
                raise
        self.save_settings()
        self._drop_unused()

    def update_settings(self, save: bool = True, **changes: Any) -> None:
        """Change some settings by name (`model_path=...`); saved unless `save` is False
        (a command's one-off choice, such as `ask --model`)."""
        self.settings = dataclasses.replace(self.settings, **changes)
        if save:
            self.save_settings()
        self._drop_unused()

    def reload_settings(self) -> None:
        """Read `settings.json` again: another process (the app) may have saved it."""
        self.settings = Settings.load(self.data_dir)
        self._drop_unused()

    def set_collection(self, name: str) -> None:
        """The collection ingest, search and answers use from now on (saved)."""
        self.update_settings(collection=name)

    def set_watched_folders(self, folders: Sequence[str | Path]) -> None:
        """The folders kept indexed (saved; none: None)."""
        self.update_settings(watched_folders=[str(f) for f in folders] or None)

    def _drop_unused(self) -> None:
        """Free the merged grounded model once another model or the user's adapter is used."""
        held = self.llms.grounded is not None or self.llms.merge_failed  # else nothing to do
        if held and not grounding.is_shipped(self.adapter_path()):
            self.llms.drop_grounded()

    def save_settings(self) -> None:
        self.settings.save(self.data_dir)

    def status(self) -> Status:
        stats = self.store.stats()
        model = Path(self.settings.model_path).name if self.settings.model_path else ""
        remote = self.remote
        if remote is not None:
            model = remote.name
        return Status(
            model=model or "Gemma 3 270M (bundled)",
            adapter=self.adapter_label() if remote is None else None,
            adapter_scale=self.adapter_scale(),
            documents=stats.documents,
            failed=stats.failed,
            chunks=stats.chunks,
            bytes=stats.bytes,
            collections=self.collections(),
            bundled=not model,
            default_mode=self.default_mode(),
        )

    # -- documents ---------------------------------------------------------------

    def ingest(
        self,
        paths: Sequence[Path],
        collection: str | None = None,
        progress: ProgressFn | None = None,
        *,
        stop: threading.Event | None = None,
        ocr: bool = False,
    ) -> IngestReport:
        """Index files and folders into a collection (the settings' one by default); with
        `ocr`, PDFs with no text layer are read by OCR where tesseract is installed."""
        ingestor = Ingestor(
            self.store, self.embedder, max_file_mb=self.settings.max_file_mb, ocr=ocr
        )
        return ingestor.run(paths, collection or self.settings.collection, progress, stop)

    def reindex(
        self,
        folders: Sequence[Path],
        progress: ProgressFn | None = None,
        *,
        stop: threading.Event | None = None,
    ) -> list[IngestReport]:
        """Bring watched folders up to date, each into the collections that hold its
        documents (the current one when none does)."""
        jobs = owners(self.documents(), folders, self.settings.collection)
        reports: list[IngestReport] = []
        for folder, collection in jobs:
            if stop is not None and stop.is_set():
                break
            reports.append(self.ingest([folder], collection, progress, stop=stop))
        return reports

    def collections(self) -> list[Any]:
        """Collections with their document and chunk counts."""
        return list(self.store.collections())

    def create_collection(self, name: str) -> None:
        self.store.create_collection(name)

    def rename_collection(self, old: str, new: str) -> None:
        self.store.rename_collection(old, new)
        if self.settings.collection == old:
            self.settings.collection = new

    def delete_collection(self, name: str) -> None:
        self.store.delete_collection(name)
        if self.settings.collection == name:
            self.settings.collection = "default"

    def documents(self, collection: str | None = None) -> list[Any]:
        return list(self.store.documents(collection))

    def remove(self, paths: Sequence[Path], collection: str | None = None) -> list[str]:
        """Forget documents (a folder forgets everything under it); returns what went."""
        return self.store.forget(collection or self.settings.collection, paths)

    # -- search and answers ---------------------------------------------------------

    def search(
        self,
        query: str,
        k: int | None = None,
        collection: str | None = None,
        method: str = "hybrid",
        rerank: bool = True,
    ) -> list[SearchResult]:
        """The best passages; with `rerank` (and a reader), in the reader's order."""
        retriever = Retriever(self.store, self.embedder)
        return retriever.search(
            query,
            k=k or max(SEARCH_K, self.settings.top_k),
            collection=collection,
            min_score=self.settings.min_score,
            method=method,
            reader=self.reader if rerank else None,
        )

    def sources(
        self, question: str, k: int | None = None, collection: str | None = None
    ) -> list[SearchResult]:
        """The passages an answer is given: the search's best (past the relevance cutoff,
        near-copies merged), less any that fall far behind the best one."""
        found = self.search(
            question, k or self.settings.top_k, collection or self.settings.collection
        )
        best = max((s.score for s in found), default=0.0)
        return [s for s in found if s.score >= best - SOURCE_MARGIN]

    def ask(
        self,
        question: str,
        mode: str = "rag",
        options: AskOptions | None = None,
        *,
        stop: threading.Event | None = None,
    ) -> Iterator[AnswerEvent]:
        """Answer `question` in a mode, streaming events: sources, tokens, the answer."""
        opts = options or AskOptions()
        return asking.ask(self, question, mode, opts, stop or threading.Event())

    def chat(
        self,
        messages: list[dict[str, str]],
        options: AskOptions | None = None,
        *,
        stop: threading.Event | None = None,
    ) -> Iterator[AnswerEvent]:
        """The answering model (local, no adapter, or the server) given chat messages as
        they are: no retrieval, no sources. What `serve` offers under the model's name."""
        return asking.chat(self, messages, options or AskOptions(), stop)

    def model_id(self) -> str:
        """The answering model's name as an API lists it: the server's model, else the
        GGUF's file name without `.gguf`."""
        remote = self.remote
        if remote is not None:
            return remote.resolve_model()
        return self.model_path().stem

    def answer(
        self,
        question: str,
        mode: str = "rag",
        options: AskOptions | None = None,
        *,
        stop: threading.Event | None = None,
    ) -> Answer:
        """`ask` without streaming."""
        for event in self.ask(question, mode, options, stop=stop):
            if isinstance(event, AnswerFinished):
                return event.answer
        raise RuntimeError("ask() ended without an answer")  # a bug, not a user error

    # -- adapters (the policy: engine/answer/grounding.py) ------------------------------

    def adapter_path(self) -> Path | None:
        return self.grounding.adapter_path()

    def refusal_gate(
        self, mode: str, sources: Sequence[SearchResult] = (), quote: float | None = None
    ) -> RefusalGate | None:
        return self.grounding.refusal_gate(mode, sources, quote)

    def adapter_scale(self) -> float:
        return self.grounding.scale()

    def adapter_label(self) -> str | None:
        """How the adapter in use is named to the user."""
        return grounding.label(self.adapter_path())

    def default_mode(self) -> str:
        return self.grounding.default_mode()

    def available_modes(self) -> dict[str, str | None]:
        """Each mode, with the reason it cannot run now (None when it can)."""
        return self.grounding.available_modes()

    def set_adapter(self, path: Path | None, scale: float = 1.0) -> AdapterInfo | None:
        """Choose the adapter for lora/hybrid modes after checking it fits the model (a
        mismatch raises UserError naming both files and changes nothing)."""
        if path is None:
            self.update_settings(save=False, lora_path=None)
            return None
        return self._use_adapter(Path(path), scale)

    def _use_adapter(self, path: Path, scale: float) -> AdapterInfo:
        info = self.grounding.check_adapter(path)
        self.update_settings(save=False, lora_path=str(info.path), lora_scale=float(scale))
        return info

    def import_adapter(self, folder: Path, scale: float = 1.0) -> AdapterInfo:
        """Convert a PEFT adapter folder for the model in use into the models folder's
        adapters (`<name>.gguf`) and switch to it."""
        return self._use_adapter(self.grounding.import_peft(Path(folder)), scale)

    def train_job(
        self,
        data: Path,
        name: str | None = None,
        config: TrainConfig | None = None,
        base: Path | None = None,
        val: Path | None = None,
    ) -> TrainJob:
        """A LoRA training run on `data` for the current model (or `base`), not yet started;
        examples are rendered with the system prompt and context size answers use."""
        from engine.finetune.job import TrainJob

        return TrainJob.for_model(
            data, base or self.model_path(), self.models_dir, self.settings, name, config, val
        )

    def compare(
        self,
        question: str,
        options: AskOptions | None = None,
        *,
        stop: threading.Event | None = None,
    ) -> Iterator[tuple[str, AnswerEvent]]:
        """The same question in every mode that can run, one after the other."""
        for mode, reason in self.available_modes().items():
            if reason is not None:
                continue
            for event in self.ask(question, mode, options, stop=stop):
                yield mode, event
            if stop is not None and stop.is_set():
                return  # a stop stops the whole comparison, also one as a mode ends

    def close(self) -> None:
        self.parts.close()
