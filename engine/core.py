"""The engine facade: one object the CLI and the GUI's engine thread drive with plain calls.

An `Engine` owns the heavy things (SQLite connection, embedder, `Llama`), so it must be
used from one thread only; an answer is stopped from another thread by setting the
request's own event (`AskOptions.cancel`).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.answer import modes
from engine.answer.followup import Turn, recent, search_query
from engine.answer.generation import Cancelled, Generator, RefusalGate
from engine.answer.llms import Key, Llms
from engine.answer.prompting import BASE_SYSTEM_PROMPT, DONT_KNOW, NOT_COVERED, build_prompt
from engine.answer.remote import QUIRE_PREFIX, RemoteGenerator, Server, load_key, normalize_url
from engine.finetune.trainer import TrainConfig
from engine.index.embedding import Embedder
from engine.index.retrieval import Retriever
from engine.index.store import Store
from engine.ingest.pipeline import Ingestor, ProgressFn
from engine.paths import default_data_dir, ensure_data_dir, models_dir
from engine.reader.rank import Quote, Reader
from engine.settings import Settings
from engine.types import IngestReport, SearchResult, Timings, UserError
from models.lora import AdapterInfo, check_compatible

if TYPE_CHECKING:
    from engine.finetune.job import TrainJob

# A source this far (in cosine) behind the best one is left out of the prompt: on the
# development set the gold passage was never more than 0.10 behind the best one.
SOURCE_MARGIN = 0.15
SEARCH_K = 5  # results of a plain search when none is asked for
INDEX_FILE = "index.sqlite3"


@dataclass
class Answer:
    """A finished (or stopped) answer with its sources and timings."""

    question: str
    mode: str
    answer: str
    sources: list[SearchResult]
    timings: Timings
    cancelled: bool = False
    no_sources: bool = False  # nothing in the documents was relevant enough to offer
    prompt: list[dict[str, str]] = field(default_factory=list)  # the chat messages given
    quote: Quote | None = None  # the reader's sentence that answers, shown first
    not_covered: bool = False  # the reader found no sentence that answers: no generation

    def to_json(self) -> dict[str, Any]:
        return {
            "quote": self.quote.to_json() if self.quote else None,
            "not_covered": self.not_covered,
            "question": self.question,
            "mode": self.mode,
            "answer": self.answer,
            "sources": [s.to_json() for s in self.sources],
            "timings": vars(self.timings).copy(),
            "cancelled": self.cancelled,
            "no_sources": self.no_sources,
        }


@dataclass
class SourcesFound:
    """Retrieval is done: these numbered sources go into the prompt, and the reader's
    quote (None: no reader, or it found nothing that answers) opens the answer."""

    sources: list[SearchResult]
    quote: Quote | None = None


@dataclass
class TokenReceived:
    text: str


@dataclass
class AnswerFinished:
    answer: Answer


AnswerEvent = SourcesFound | TokenReceived | AnswerFinished


@dataclass
class AskOptions:
    """Per-question overrides of the settings; `None` means the setting's value."""

    k: int | None = None
    collection: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = 0
    cancel: threading.Event | None = None  # this request's stop: set it, from any thread
    turns: list[Turn] | None = None  # earlier (question, answer) turns: this is a follow-up


@dataclass(frozen=True)
class Status:
    """What a status bar shows: the model, the adapter, the index and its collections."""

    model: str
    adapter: str | None
    adapter_scale: float
    documents: int
    failed: int
    chunks: int
    bytes: int
    collections: list[Any]


class Engine:
    """Ingest, search and answer over one data dir."""

    def __init__(self, data_dir: Path | None = None, settings: Settings | None = None) -> None:
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        ensure_data_dir(self.data_dir)  # the user's alone (0700); a file there: one line
        self.settings = settings if settings is not None else Settings.load(self.data_dir)
        self.models_dir = models_dir(self.data_dir)
        self._store: Store | None = None
        self._embedder: Embedder | None = None
        self._reader: tuple[Path, Reader] | None = None
        self._shipped_reader: tuple[Path | None] | None = None  # ensure_reader's, once
        self._remote: RemoteGenerator | None = None  # the model server, when one answers
        self.llms = Llms(self.models_dir)  # loaded on first use

    # -- the heavy things, loaded on first use ---------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.data_dir / INDEX_FILE)
        return self._store

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from models.bundled import ensure_embedder

            embedder = Embedder(ensure_embedder(self.models_dir), self.settings.threads)
            if (self.store.model, self.store.dim) != (embedder.name, embedder.dim):
                raise UserError(
                    f"the index in {self.data_dir} was built with {self.store.model} "
                    f"({self.store.dim}-d), not {embedder.name}; re-index or pick that model"
                )
            self._embedder = embedder
        return self._embedder

    @property
    def reader(self) -> Reader | None:
        """The reader that reranks and quotes (the user's, else the shipped one); None when
        it is switched off in the settings or this install has none."""
        folder = self.reader_folder()
        if folder is None:
            return None
        if self._reader is None or self._reader[0] != folder:
            self._reader = (folder, Reader(folder, self.settings.threads))
        return self._reader[1]

    def reader_folder(self) -> Path | None:
        """The reader in use: the user's (settings), else the shipped one, unpacked into
        the models folder the first time it is asked for (not on every search)."""
        if not self.settings.reader:
            return None
        if self.settings.reader_path:
            return Path(self.settings.reader_path).expanduser()
        if self._shipped_reader is None:
            from models.bundled import ensure_reader

            self._shipped_reader = (ensure_reader(self.models_dir),)
        return self._shipped_reader[0]

    def server(self) -> Server | None:
        """The model server that answers instead of the local model (settings), if any."""
        if not self.settings.server_url:
            return None
        return Server(
            normalize_url(self.settings.server_url),
            self.settings.server_model or None,
            load_key(self.data_dir),
            self.settings.server_timeout,
        )

    @property
    def remote(self) -> RemoteGenerator | None:
        """The model server as a generator (kept while its settings stay the same)."""
        server = self.server()
        if server is None:
            self._remote = None
            return None
        if self._remote is None or self._remote.server != server:
            self._remote = RemoteGenerator(server, self.settings.context_size)
        return self._remote

    def model_path(self) -> Path:
        """The GGUF in use: the user's choice, else the bundled default."""
        if self.settings.model_path:
            return Path(self.settings.model_path).expanduser()
        from models.bundled import ensure_llm

        return ensure_llm(self.models_dir)

    @property
    def generator(self) -> Generator:
        """The model in use, for base and rag, and for lora/hybrid with a runtime adapter."""
        return self.llms.base_model(self._model_key())

    def _model_key(self) -> Key:
        return (self.model_path(), self.settings.context_size, self.settings.threads)

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
        self._generator_for(mode)

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

    def _drop_unused(self) -> None:
        """Free the merged grounded model once another model or the user's adapter is used."""
        if not self._grounding("hybrid"):
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
        )

    # -- documents ---------------------------------------------------------------

    def ingest(
        self,
        paths: Sequence[Path],
        collection: str | None = None,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> IngestReport:
        """Index files and folders into a collection (the settings' one by default)."""
        ingestor = Ingestor(self.store, self.embedder, max_file_mb=self.settings.max_file_mb)
        return ingestor.run(paths, collection or self.settings.collection, progress, cancel)

    def reindex(
        self,
        folders: Sequence[Path],
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> list[IngestReport]:
        """Bring watched folders up to date, each into the collections that hold its
        documents (the current one when none does)."""
        docs = self.documents()
        reports: list[IngestReport] = []
        for folder in map(Path, folders):
            owners = {d.collection for d in docs if Path(d.path).is_relative_to(folder)}
            for collection in sorted(owners) or [self.settings.collection]:
                if cancel is not None and cancel.is_set():
                    return reports
                reports.append(self.ingest([folder], collection, progress, cancel))
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
        from engine.index.store import resolved  # a symlink loop stays as named: no RuntimeError

        name = collection or self.settings.collection
        known = self.store.paths(name)
        removed: list[str] = []
        for raw in paths:
            target = resolved(raw)
            hits = [p for p in known if Path(p) == target or Path(p).is_relative_to(target)]
            if not hits:
                raise UserError(f"{target}: not in the index (collection '{name}')")
            for path in hits:
                self.store.remove_document(name, path)
            removed.extend(hits)
        return removed

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
        self, question: str, mode: str = "rag", options: AskOptions | None = None
    ) -> Iterator[AnswerEvent]:
        """Answer `question` in a mode, streaming events: sources, tokens, the answer."""
        opts = options or AskOptions()
        wanted = modes.mode(mode)
        cancel = opts.cancel or threading.Event()
        start = time.perf_counter()
        remote = self.remote
        if remote is not None and wanted.retrieves and self._quire_server(remote):
            yield from self._ask_quire(remote, question, mode, opts, cancel, start)
            return
        sources: list[SearchResult] = []
        query = search_query(question, opts.turns)  # a follow-up with what it follows
        if wanted.retrieves:
            sources = self.sources(query, opts.k, opts.collection)
            if not sources:  # nothing relevant: say so rather than let the model guess
                self.llms.last = None
                yield from _nothing_relevant(question, mode, start)
                return
        retrieval_s = time.perf_counter() - start
        reader = self.reader if wanted.retrieves else None
        rerank_s = reader.last.rerank_s if reader else 0.0
        quote = reader.quote(query, sources) if reader else None
        if reader is not None and not reader.covers(quote):
            self.llms.last = None
            yield from _not_covered(question, mode, sources, start, retrieval_s, reader)
            return
        generator = self._generator_for(mode)
        self.llms.last = generator if isinstance(generator, Generator) else None
        max_tokens = opts.max_tokens or self.settings.max_tokens
        prompt = build_prompt(
            question,
            sources,
            generator.count_tokens,
            generator.context_size - max_tokens,
            self.settings.system_prompt,
            best_last=self._grounding(mode),  # the adapter reads the nearest source best
            quote=_quote_index(sources, quote),
            turns=recent(opts.turns),
        )
        if quote is not None:
            quote.source = next(
                (n for n, s in enumerate(prompt.sources, 1) if s.chunk_id == quote.chunk_id), 0
            )
        yield SourcesFound(prompt.sources, quote)
        pieces: list[str] = []
        cancelled = False
        temperature = self.settings.temperature if opts.temperature is None else opts.temperature
        try:
            pieces_in = generator.stream(
                prompt.messages,
                max_tokens,
                temperature,
                opts.seed,
                cancel=cancel,
                gate=self.refusal_gate(mode, prompt.sources),
                guard=self._user_adapter(mode),
            )
            for piece in pieces_in:
                pieces.append(piece)
                yield TokenReceived(piece)
        except Cancelled:
            cancelled = True
        timings = _total(generator.last_timings, retrieval_s, start)
        timings.rerank_s, timings.quote_s = rerank_s, reader.last.quote_s if reader else 0.0
        text = "".join(pieces).strip()
        yield AnswerFinished(
            Answer(question, mode, text, prompt.sources, timings, cancelled,
                   prompt=prompt.messages, quote=quote)
        )  # fmt: skip

    def _quire_server(self, remote: RemoteGenerator) -> bool:
        remote.resolve_model()
        return remote.is_quire

    def _ask_quire(
        self,
        remote: RemoteGenerator,
        question: str,
        mode: str,
        opts: AskOptions,
        cancel: threading.Event,
        start: float,
    ) -> Iterator[AnswerEvent]:
        """Another Quire (`serve`) finds the sources and answers; they come back with the
        answer, as if found here."""
        self.llms.last = None
        sources: list[SearchResult] = []
        quote: Quote | None = None
        pieces: list[str] = []
        cancelled = False
        temperature = self.settings.temperature if opts.temperature is None else opts.temperature
        max_tokens = opts.max_tokens or self.settings.max_tokens
        try:
            events = remote.ask_quire(
                question, mode, max_tokens, temperature, opts.seed, cancel, opts.turns or ()
            )
            for kind, value in events:
                if kind == "found":
                    sources, quote = value
                    yield SourcesFound(sources, quote)
                else:
                    pieces.append(value)
                    yield TokenReceived(value)
        except Cancelled:
            cancelled = True
        timings = _total(remote.last_timings, 0.0, start)
        extra = remote.last_extra
        yield AnswerFinished(
            Answer(question, mode, "".join(pieces).strip(), sources, timings, cancelled,
                   no_sources=bool(extra.get("no_sources")), quote=quote,
                   not_covered=bool(extra.get("not_covered")))
        )  # fmt: skip

    def chat(
        self, messages: list[dict[str, str]], options: AskOptions | None = None
    ) -> Iterator[AnswerEvent]:
        """The answering model (local, no adapter, or the server) given chat messages as
        they are: no retrieval, no sources. What `serve` offers under the model's name."""
        opts = options or AskOptions()
        start = time.perf_counter()
        generator = self._generator_for("base")
        self.llms.last = generator if isinstance(generator, Generator) else None
        temperature = self.settings.temperature if opts.temperature is None else opts.temperature
        pieces: list[str] = []
        cancelled = False
        try:
            stream = generator.stream(
                messages, opts.max_tokens or self.settings.max_tokens, temperature, opts.seed,
                cancel=opts.cancel,
            )  # fmt: skip
            for piece in stream:
                pieces.append(piece)
                yield TokenReceived(piece)
        except Cancelled:
            cancelled = True
        timings = _total(generator.last_timings, 0.0, start)
        question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        text = "".join(pieces).strip()
        yield AnswerFinished(
            Answer(question, "base", text, [], timings, cancelled, prompt=list(messages))
        )

    def model_id(self) -> str:
        """The answering model's name as an API lists it: the server's model, else the
        GGUF's file name without `.gguf`."""
        remote = self.remote
        if remote is not None:
            return remote.resolve_model()
        return self.model_path().stem

    def answer(self, question: str, mode: str = "rag", options: AskOptions | None = None) -> Answer:
        """`ask` without streaming."""
        for event in self.ask(question, mode, options):
            if isinstance(event, AnswerFinished):
                return event.answer
        raise RuntimeError("ask() ended without an answer")  # a bug, not a user error

    def _generator_for(self, mode: str) -> Generator | RemoteGenerator:
        """The model, with the adapter switched on for lora/hybrid and off for base/rag; or
        the model server, for base/rag, when one is set."""
        needs_adapter = modes.mode(mode).adapter
        remote = self.remote
        if remote is not None:
            if needs_adapter:
                raise UserError(_SERVER_NO_ADAPTER.format(mode=mode, host=remote.server.host))
            return remote
        adapter = self.adapter_path() if needs_adapter else None
        if needs_adapter and adapter is None:
            raise UserError(
                f"mode '{mode}' needs a LoRA adapter: pass --lora FILE or load one in Settings"
            )
        grounded = self._grounding(mode)
        generator = self.llms.grounded_model(self._model_key()) if grounded else None
        if generator is not None:
            generator.use_adapter(None)  # the adapter is in its weights
        else:
            generator = self.generator
            generator.use_adapter(adapter, self.adapter_scale())
        return generator

    # -- adapters ----------------------------------------------------------------------

    def adapter_path(self) -> Path | None:
        """The adapter for lora/hybrid: the user's own, else Quire's grounding adapter when
        the model is the bundled one, else None."""
        if self.settings.lora_path:
            return Path(self.settings.lora_path).expanduser()
        from models.bundled import grounding_adapter

        return grounding_adapter(self.model_path())

    def _user_adapter(self, mode: str) -> bool:
        """Whether `mode` answers with an adapter of the user's own (its loops are cut)."""
        return modes.mode(mode).adapter and not self._grounding(mode)

    def _grounding(self, mode: str) -> bool:
        """Whether `mode` answers with Quire's own grounding adapter."""
        from models.bundled import GROUNDING_ADAPTER

        return modes.mode(mode).adapter and self.adapter_path() == GROUNDING_ADAPTER

    def refusal_gate(self, mode: str, sources: Sequence[SearchResult] = ()) -> RefusalGate | None:
        """Quire's grounding adapter decides answer-or-refuse at its first token: with a
        reader whose card names `grounding_refusal` (chosen together with the reader's own
        bar on held-out questions), at that threshold; else at its own, a higher one when
        the best of `sources` is very close to the question
        (models.bundled.GROUNDING_REFUSAL_SURE). A user's adapter, and the modes without
        one, decide nothing."""
        from models.bundled import GROUNDING_REFUSAL, GROUNDING_REFUSAL_SURE, GROUNDING_RESTART

        if not self._grounding(mode) or self.remote is not None:
            return None
        reader = self.reader
        chosen = reader.card.get("grounding_refusal") if reader is not None else None
        if chosen is not None:  # chosen with the reader's bar, for the sources it ranks
            return RefusalGate(DONT_KNOW, float(chosen), GROUNDING_RESTART)
        close, threshold = GROUNDING_REFUSAL_SURE
        if max((s.score for s in sources), default=0.0) < close:
            threshold = GROUNDING_REFUSAL
        return RefusalGate(DONT_KNOW, threshold, GROUNDING_RESTART)

    def adapter_scale(self) -> float:
        """The user's scale for their own adapter; the grounding adapter's is its own."""
        if self.settings.lora_path:
            return self.settings.lora_scale
        from models.bundled import GROUNDING_SCALE

        return GROUNDING_SCALE

    def adapter_label(self) -> str | None:
        """How the adapter in use is named to the user."""
        from models.bundled import GROUNDING_ADAPTER, GROUNDING_LABEL

        path = self.adapter_path()
        if path is None:
            return None
        return GROUNDING_LABEL if path == GROUNDING_ADAPTER else path.stem

    def default_mode(self) -> str:
        """Hybrid (retrieval + adapter) when an adapter is there, else plain RAG (always
        with a model server: adapters need the local model)."""
        if self.settings.server_url:  # another Quire's model may run its grounding adapter
            return (
                "hybrid" if (self.settings.server_model or "").startswith(QUIRE_PREFIX) else "rag"
            )
        return "hybrid" if self.adapter_path() is not None else "rag"

    def set_adapter(self, path: Path | None, scale: float = 1.0) -> AdapterInfo | None:
        """Choose the adapter for lora/hybrid modes after checking it fits the model.

        A mismatch raises UserError naming both files and changes nothing.
        """
        if path is None:
            self.settings.lora_path = None
            return None
        return self._use_adapter(Path(path), scale)

    def _use_adapter(self, path: Path, scale: float) -> AdapterInfo:
        info = check_compatible(path.expanduser(), self.model_path())
        self.settings.lora_path, self.settings.lora_scale = str(info.path), float(scale)
        self._drop_unused()
        return info

    def import_adapter(self, folder: Path, scale: float = 1.0) -> AdapterInfo:
        """Convert a PEFT adapter folder for the model in use into the models folder's
        adapters (`<name>.gguf`) and switch to it."""
        from models.lora import convert_peft
        from models.registry import adapters_dir

        source = Path(folder).expanduser()
        out = adapters_dir(self.models_dir) / f"{source.name}.gguf"
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_peft(source, out, self.model_path())
        return self._use_adapter(out, scale)

    def available_modes(self) -> dict[str, str | None]:
        """Each mode, with the reason it cannot run now (None when it can)."""
        server = self.server()
        if server is not None and (server.model or "").startswith(QUIRE_PREFIX):
            always = f"{server.model} always answers from its documents"
            return {m.name: None if m.retrieves else always for m in modes.MODES.values()}
        if server is not None:
            hint: str | None = f"adapters need a local GGUF model (answering with {server.host})"
        else:
            hint = None if self.adapter_path() else "load a LoRA adapter first (Settings or --lora)"
        return {m.name: hint if m.adapter else None for m in modes.MODES.values()}

    def train_job(
        self,
        data: Path,
        name: str | None = None,
        config: TrainConfig | None = None,
        base: Path | None = None,
        val: Path | None = None,
    ) -> TrainJob:
        """A LoRA training run on `data` for the current model (or `base`), not yet started.

        Examples are rendered with the system prompt and context size that answers use.
        """
        from engine.finetune.job import TrainJob

        return TrainJob(
            data_path=Path(data).expanduser(),
            base=Path(base).expanduser() if base else self.model_path(),
            models_dir=self.models_dir,
            system_prompt=self.settings.system_prompt or BASE_SYSTEM_PROMPT,
            context_size=self.settings.context_size,
            config=config or TrainConfig(),
            name=name,
            val_path=Path(val).expanduser() if val else None,
        )

    def compare(
        self, question: str, options: AskOptions | None = None
    ) -> Iterator[tuple[str, AnswerEvent]]:
        """The same question in every mode that can run, one after the other."""
        for mode, reason in self.available_modes().items():
            if reason is not None:
                continue
            for event in self.ask(question, mode, options):
                yield mode, event
                if isinstance(event, AnswerFinished) and event.answer.cancelled:
                    return  # a stop stops the whole comparison

    def close(self) -> None:
        self.llms.close()
        if self._store is not None:
            self._store.close()
            self._store = None


_SERVER_NO_ADAPTER = (
    "mode '{mode}' needs a LoRA adapter, and adapters need a local GGUF model: "
    "this answer would come from the model server at {host} (disconnect it in Models, "
    "or leave out --server)"
)


def _nothing_relevant(question: str, mode: str, start: float) -> Iterator[AnswerEvent]:
    """The answer when no passage passed the relevance cutoff: no model call at all."""
    yield SourcesFound([])
    elapsed = time.perf_counter() - start
    timings = Timings(retrieval_s=elapsed, first_token_s=elapsed, total_s=elapsed)
    yield TokenReceived(DONT_KNOW)
    yield AnswerFinished(Answer(question, mode, DONT_KNOW, [], timings, no_sources=True))


def _quote_index(sources: list[SearchResult], quote: Quote | None) -> tuple[int, str] | None:
    """(index of the quote's source in `sources`, its text) for the prompt."""
    if quote is None:
        return None
    n = next((i for i, s in enumerate(sources) if s.chunk_id == quote.chunk_id), None)
    return None if n is None else (n, quote.text)


def _not_covered(
    question: str,
    mode: str,
    sources: list[SearchResult],
    start: float,
    retrieval_s: float,
    reader: Reader,
) -> Iterator[AnswerEvent]:
    """The answer when the reader's best sentence is under its bar: the nearest passages
    are shown, the model is not asked."""
    yield SourcesFound(sources)
    elapsed = time.perf_counter() - start
    timings = Timings(retrieval_s=retrieval_s, first_token_s=elapsed, total_s=elapsed,
                      rerank_s=reader.last.rerank_s, quote_s=reader.last.quote_s)  # fmt: skip
    yield TokenReceived(NOT_COVERED)
    yield AnswerFinished(Answer(question, mode, NOT_COVERED, sources, timings, not_covered=True))


def _total(gen: Timings, retrieval_s: float, start: float) -> Timings:
    """Timings as the user sees them: first token and total count from the question."""
    prep_s = time.perf_counter() - start - gen.total_s  # retrieval + prompt building
    return Timings(
        retrieval_s=retrieval_s,
        first_token_s=prep_s + gen.first_token_s,
        total_s=time.perf_counter() - start,
        tokens=gen.tokens,
        tokens_per_s=gen.tokens_per_s,
    )
