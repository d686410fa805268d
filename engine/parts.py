"""The heavy things one engine loads on first use and keeps: the index (`Store`), the
embedder, the reader, the model server and the GGUF models (`Llms`).

Owned by the engine's thread, like the engine. The settings are read at each use (through
the engine, which owns them), so a change takes effect the next time a part is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.answer.generation import Generator
from engine.answer.llms import Key, Llms
from engine.answer.remote import RemoteGenerator, Server, load_key, normalize_url
from engine.index.embedding import Embedder
from engine.index.store import Store
from engine.reader.rank import Reader
from engine.settings import Settings
from engine.types import UserError

INDEX_FILE = "index.sqlite3"


class Parts:
    """The index, embedder, reader, model server and models of one data dir."""

    def __init__(self, data_dir: Path, models_dir: Path, settings: Callable[[], Settings]):
        self.data_dir, self.models_dir, self._settings = data_dir, models_dir, settings
        self.llms = Llms(models_dir)  # loaded on first use
        self._store: Store | None = None
        self._embedder: Embedder | None = None
        self._reader: tuple[Path, Reader] | None = None
        self._shipped_reader: tuple[Path | None] | None = None  # ensure_reader's, once
        self._remote: RemoteGenerator | None = None  # the model server, when one answers

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.data_dir / INDEX_FILE)
        return self._store

    @property
    def embedder(self) -> Embedder:
        """The bundled embedder; one the index was not built with is a UserError."""
        if self._embedder is None:
            from models.bundled import ensure_embedder

            embedder = Embedder(ensure_embedder(self.models_dir), self._settings().threads)
            if (self.store.model, self.store.dim) != (embedder.name, embedder.dim):
                raise UserError(
                    f"the index in {self.data_dir} was built with {self.store.model} "
                    f"({self.store.dim}-d), not {embedder.name}; re-index or pick that model"
                )
            self._embedder = embedder
        return self._embedder

    @property
    def embedder_loaded(self) -> bool:
        return self._embedder is not None

    @property
    def reader(self) -> Reader | None:
        """The reader that reranks and quotes (the user's, else the shipped one); None when
        it is switched off in the settings or this install has none."""
        folder = self.reader_folder()
        if folder is None:
            return None
        if self._reader is None or self._reader[0] != folder:
            self._reader = (folder, Reader(folder, self._settings().threads))
        return self._reader[1]

    def reader_folder(self) -> Path | None:
        """The reader in use: the user's (settings), else the shipped one, unpacked into
        the models folder the first time it is asked for (not on every search)."""
        settings = self._settings()
        if not settings.reader:
            return None
        if settings.reader_path:
            return Path(settings.reader_path).expanduser()
        if self._shipped_reader is None:
            from models.bundled import ensure_reader

            self._shipped_reader = (ensure_reader(self.models_dir),)
        return self._shipped_reader[0]

    def server(self) -> Server | None:
        """The model server that answers instead of the local model (settings), if any."""
        settings = self._settings()
        if not settings.server_url:
            return None
        return Server(
            normalize_url(settings.server_url),
            settings.server_model or None,
            load_key(self.data_dir),
            settings.server_timeout,
        )

    @property
    def remote(self) -> RemoteGenerator | None:
        """The model server as a generator (kept while its settings stay the same)."""
        server = self.server()
        if server is None:
            self._remote = None
            return None
        if self._remote is None or self._remote.server != server:
            self._remote = RemoteGenerator(server, self._settings().context_size)
        return self._remote

    def model_path(self) -> Path:
        """The GGUF in use: the user's choice, else the bundled default."""
        path = self._settings().model_path
        if path:
            return Path(path).expanduser()
        from models.bundled import ensure_llm

        return ensure_llm(self.models_dir)

    def model_key(self) -> Key:
        """What the model in use is loaded with: its GGUF, context size and threads."""
        settings = self._settings()
        return (self.model_path(), settings.context_size, settings.threads)

    def base_model(self) -> Generator:
        """The model in use, loaded (for base and rag; lora/hybrid add a runtime adapter)."""
        return self.llms.base_model(self.model_key())

    def close(self) -> None:
        self.llms.close()
        if self._store is not None:
            self._store.close()
            self._store = None
