"""The index schema: numbered, append-only migrations of a bare connection, and row records.

A step never calls `Store`: once released it must read the same forever, whatever
`Store` becomes. Change the schema by appending a step (`engine.index.sqlite.migrate` runs them).
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from typing import Any

from engine.index.sqlite import Step, execute_script
from engine.types import printable as printable  # where it lived first

DEFAULT_COLLECTION = "default"


@dataclass(frozen=True)
class DocumentRecord:
    """One file in the index: indexed (hash set) and/or failed (error set)."""

    id: int
    collection: str
    path: str
    name: str
    title: str | None
    hash: str | None
    size: int | None
    mtime: float | None
    pages: int | None
    chunks: int
    indexed_at: float | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        """The record as `docs --json` prints it: the path shown, not stored, exactly."""
        return asdict(self) | {"path": printable(self.path)}


@dataclass(frozen=True)
class ChunkRow:
    """A stored chunk with the document it came from."""

    chunk_id: int
    document: str
    path: str
    title: str | None
    page: int | None
    section: str | None
    ordinal: int
    text: str
    collection: str


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    documents: int
    chunks: int


@dataclass(frozen=True)
class StoreStats:
    documents: int
    failed: int
    chunks: int
    bytes: int


def migrations(model: str, dim: int, quantization: str) -> list[Step]:
    """The index's steps, oldest first. A new index records the embedding model, dimension
    and vec0 quantization it is given; later steps must take the connection alone."""
    return [
        functools.partial(m001_initial, model=model, dim=dim, quantization=quantization),
        m002_reader_vectors,
    ]


def take_legacy_version(conn: Any) -> int:
    """The version of an index from before `PRAGMA user_version` counted steps: meta's
    `schema_version` row, removed here since user_version replaces it."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.execute("DELETE FROM meta WHERE key = 'schema_version'")
    return int(row[0]) if row else 0


_M001_TABLES = """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE collections (
            id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            path TEXT NOT NULL, name TEXT NOT NULL, title TEXT, hash TEXT, size INTEGER,
            mtime REAL, pages INTEGER, chunk_count INTEGER NOT NULL DEFAULT 0,
            indexed_at REAL, error TEXT, UNIQUE (collection_id, path));
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL, page INTEGER, section TEXT, text TEXT NOT NULL);
        CREATE INDEX chunks_document ON chunks(document_id);
        CREATE TABLE embeddings (
            chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
            vector BLOB NOT NULL);
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, section, title, content='', tokenize='porter unicode61');
        """


def m001_initial(conn: Any, model: str, dim: int, quantization: str) -> None:
    """Collections, documents, chunks, their float vectors, FTS5, and vec0 partitioned by
    collection (measured faster than a metadata column)."""
    execute_script(conn, _M001_TABLES)
    vector = (
        f"embedding bit[{dim}]"
        if quantization == "binary"
        else f"embedding float[{dim}] distance_metric=cosine"
    )
    conn.execute(
        "CREATE VIRTUAL TABLE vec_chunks USING vec0(chunk_id INTEGER PRIMARY KEY, "
        f"collection_id INTEGER PARTITION KEY, {vector})"
    )
    conn.execute(
        "INSERT INTO collections(name, created_at) VALUES (?, ?)", (DEFAULT_COLLECTION, time.time())
    )
    conn.executemany(
        "INSERT INTO meta(key, value) VALUES (?, ?)",
        [("embedding_model", model), ("embedding_dim", str(dim)), ("quantization", quantization)],
    )


def m002_reader_vectors(conn: Any) -> None:
    """Passage vectors of the reader (engine.reader.rank), per reader, filled as passages are
    first reranked: a retrained reader has its own rows, and none is ever stale."""
    conn.execute(
        "CREATE TABLE reader_vectors (reader TEXT NOT NULL, chunk_id INTEGER NOT NULL, "
        "vector BLOB NOT NULL, PRIMARY KEY (reader, chunk_id)) WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX reader_vectors_chunk ON reader_vectors(chunk_id)")
