"""The index: one SQLite file holding collections, documents, chunks, FTS5 and vec0.

`Store` is the one owner of the schema. Writes for one document happen in one
transaction, so a crash leaves the old version or the new one, never half of each.
One Store per thread: SQLite connections are not shared across threads.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import describe
from engine.index.fts import fts_query, fts_terms, rare_terms
from engine.index.schema import (
    DEFAULT_COLLECTION,
    ChunkRow,
    CollectionInfo,
    DocumentRecord,
    StoreStats,
    migrations,
    printable,
    take_legacy_version,
)
from engine.index.sqlite import connect, driver, migrate, user_version
from engine.index.vectors import VectorIndex
from engine.paths import private_file
from engine.types import Chunk, UserError

DEFAULT_MODEL = "all-MiniLM-L6-v2-int8"
DEFAULT_DIM = 384
QUANTIZATIONS = ("binary", "float")
DEFAULT_QUANTIZATION = "float"  # exact; binary loses recall at 100k (docs/search.md)
OVERSAMPLE = 10  # binary KNN candidates per result, rescored by exact cosine
MAX_KNN = 4096  # vec0's limit on k
FTS_WEIGHTS = "1.0, 0.5, 0.5"  # text, section, title
KEYWORD_ROWS = 2000  # rows BM25 scores at most, unless the rarest term alone has more
# Index files this process found intact, by (path, (size, mtime)): a file once checked
# is not checked again by the next thread's Store until it changes.
_CHECKED: set[tuple[str, tuple[int, int] | None]] = set()


class Store:
    """The index file. `quantization` picks vec0's column: "binary" or "float"."""

    def __init__(
        self,
        path: Path,
        model: str | None = None,
        dim: int | None = None,
        quantization: str | None = None,
        readonly: bool = False,
        memory_index: bool = True,
    ) -> None:
        self.path = Path(path)
        if not readonly and self.path.parent.is_dir():
            with contextlib.suppress(OSError):  # connect() says what is wrong, in one line
                private_file(self.path)  # created 0600: the index holds your documents' text
        self.conn: Any = connect(self.path, readonly=readonly)
        self._check_intact()
        meta = self._read_meta()
        self.model = meta.get("embedding_model") or model or DEFAULT_MODEL
        self.dim = int(meta.get("embedding_dim") or dim or DEFAULT_DIM)
        if dim is not None and dim != self.dim:
            self.conn.close()
            raise UserError(
                f"index {self.path} was built with {self.model} ({self.dim}-d, not {dim}-d); "
                "re-index or pick that model"
            )
        self.quantization = meta.get("quantization") or quantization or DEFAULT_QUANTIZATION
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}")
        # Vector KNN from a matrix in memory (exact, ~4x faster than vec0); False: vec0.
        self.memory_index = memory_index
        self.index = VectorIndex(self.conn, self.dim)
        self._term_rows: dict[str, int] = {}  # FTS row count per term, until the next write
        self._removed: list[int] = []  # chunk ids the open write transaction deletes
        self._added: list[tuple[int, int, np.ndarray]] = []  # (chunk, collection, vector)
        if not readonly:
            self._migrate()
            if quantization and quantization != self.quantization:
                self.set_quantization(quantization)

    # -- schema ---------------------------------------------------------------

    def _check_intact(self) -> None:
        """Check the file's pages when opened (PRAGMA quick_check: 25 ms for a 22 MB
        index): a damaged page of vectors or FTS passed `docs` and `ingest` ("skipped
        unchanged") and failed only `search`. Now all say what search says."""
        try:
            info = self.path.stat()
        except OSError:  # in memory, or gone: nothing to remember it by
            info = None
        key = (str(resolved(self.path)), (info.st_size, info.st_mtime_ns) if info else None)
        if key in _CHECKED:
            return
        try:
            rows = self.conn.execute("PRAGMA quick_check(1)").fetchall()
        except BaseException:
            self.conn.close()
            raise  # not a database, unreadable...: errors.describe names it
        if [tuple(row) for row in rows] != [("ok",)]:
            self.conn.close()
            error = driver().DatabaseError(f"database disk image is malformed ({rows[0][0]})")
            raise describe(error, self.path) or error
        _CHECKED.add(key)

    def _read_meta(self) -> dict[str, str]:
        has = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
        if not has:
            return {}
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def _migrate(self) -> None:
        steps = migrations(self.model, self.dim, self.quantization)
        try:
            migrate(self.conn, steps, legacy=take_legacy_version)
        except BaseException:
            self.conn.close()
            raise

    @property
    def schema_version(self) -> int:
        return user_version(self.conn)

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _create_vec_table(self) -> None:
        """The vec0 table, partitioned by collection (measured: faster than a metadata column)."""
        column = (
            f"embedding bit[{self.dim}]"
            if self.quantization == "binary"
            else f"embedding float[{self.dim}] distance_metric=cosine"
        )
        self.conn.execute(
            "CREATE VIRTUAL TABLE vec_chunks USING vec0(chunk_id INTEGER PRIMARY KEY, "
            f"collection_id INTEGER PARTITION KEY, {column})"
        )

    def set_quantization(self, quantization: str) -> None:
        """Rebuild the vec0 table for another quantization from the stored float vectors."""
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}")
        with self._transaction():
            self.conn.execute("DROP TABLE vec_chunks")
            self.quantization = quantization
            self._create_vec_table()
            self.set_meta("quantization", quantization)
            rows = self.conn.execute(
                "SELECT e.chunk_id, d.collection_id, e.vector FROM embeddings e "
                "JOIN chunks c ON c.id = e.chunk_id JOIN documents d ON d.id = c.document_id"
            )
            self._insert_vec(rows)

    def _transaction(self) -> _Transaction:
        """A write; the vector rows it removes and adds reach the in-memory index on commit
        (our own commits do not change data_version, so the index must be told)."""
        self._removed, self._added = [], []
        return _Transaction(self.conn, self._on_commit, self.index.invalidate)

    def _on_commit(self) -> None:
        self._term_rows.clear()
        self.index.apply(self._removed, self._added)
        self._removed, self._added = [], []

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- collections ----------------------------------------------------------

    def _collection_id(self, name: str, create: bool = False) -> int:
        row = self.conn.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()
        if row:
            return int(row[0])
        if not create:
            raise UserError(f"no collection named {name!r}; see the collections list")
        cur = self.conn.execute(
            "INSERT INTO collections(name, created_at) VALUES (?, ?)", (name, time.time())
        )
        return int(cur.lastrowid)

    def create_collection(self, name: str) -> None:
        name = name.strip()
        if not name:
            raise UserError("a collection needs a name")
        if self.conn.execute("SELECT 1 FROM collections WHERE name = ?", (name,)).fetchone():
            raise UserError(f"a collection named {name!r} already exists")
        self._collection_id(name, create=True)

    def rename_collection(self, old: str, new: str) -> None:
        cid = self._collection_id(old)
        if self.conn.execute("SELECT 1 FROM collections WHERE name = ?", (new,)).fetchone():
            raise UserError(f"a collection named {new!r} already exists")
        self.conn.execute("UPDATE collections SET name = ? WHERE id = ?", (new, cid))

    def delete_collection(self, name: str) -> None:
        """Delete a collection and everything indexed in it (the default one is only emptied)."""
        cid = self._collection_id(name)
        with self._transaction():
            docs = self.conn.execute("SELECT id FROM documents WHERE collection_id = ?", (cid,))
            self._delete_chunks([row[0] for row in docs.fetchall()])
            self.conn.execute("DELETE FROM documents WHERE collection_id = ?", (cid,))
            if name != DEFAULT_COLLECTION:
                self.conn.execute("DELETE FROM collections WHERE id = ?", (cid,))

    def collections(self) -> list[CollectionInfo]:
        rows = self.conn.execute(
            "SELECT c.name, COUNT(d.id), COALESCE(SUM(d.chunk_count), 0) FROM collections c "
            "LEFT JOIN documents d ON d.collection_id = c.id AND d.hash IS NOT NULL "
            "GROUP BY c.id ORDER BY c.name"
        )
        return [CollectionInfo(str(n), int(d), int(c)) for n, d, c in rows.fetchall()]

    # -- documents ------------------------------------------------------------

    _DOC_SQL = (
        "SELECT d.id, c.name, d.path, d.name, d.title, d.hash, d.size, d.mtime, d.pages, "
        "d.chunk_count, d.indexed_at, d.error FROM documents d "
        "JOIN collections c ON c.id = d.collection_id "
    )

    def document(self, collection: str, path: str | Path) -> DocumentRecord | None:
        """The record for `path` in `collection`, or None if it was never seen."""
        row = self.conn.execute(
            self._DOC_SQL + "WHERE c.name = ? AND d.path = ?", (collection, _key(path))
        ).fetchone()
        return _record(row) if row else None

    def documents(self, collection: str | None = None) -> list[DocumentRecord]:
        """Every indexed and failed document, by collection and path."""
        where, args = ("WHERE c.name = ? ", (collection,)) if collection else ("", ())
        rows = self.conn.execute(self._DOC_SQL + where + "ORDER BY c.name, d.path", args)
        return [_record(row) for row in rows.fetchall()]

    def paths(self, collection: str = DEFAULT_COLLECTION) -> list[str]:
        rows = self.conn.execute(
            "SELECT d.path FROM documents d JOIN collections c ON c.id = d.collection_id "
            "WHERE c.name = ? ORDER BY d.path",
            (collection,),
        )
        return [_path(row[0]) for row in rows.fetchall()]

    def replace_document(
        self,
        collection: str,
        path: str | Path,
        name: str,
        title: str | None,
        hash: str,
        size: int,
        mtime: float,
        pages: int | None,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
    ) -> int:
        """Swap in the new version of one document, atomically. Returns its id."""
        vectors = self._check_vectors(vectors, len(chunks))
        with self._transaction():
            cid = self._collection_id(collection, create=True)
            doc_id = self._document_id(cid, _key(path), printable(name))
            self._delete_chunks([doc_id])  # before the title changes: FTS deletes need the old one
            title = None if title is None else printable(title)
            self.conn.execute(
                "UPDATE documents SET name = ?, title = ?, hash = ?, size = ?, mtime = ?, "
                "pages = ?, chunk_count = ?, indexed_at = ?, error = NULL WHERE id = ?",
                (
                    printable(name),
                    title,
                    hash,
                    size,
                    mtime,
                    pages,
                    len(chunks),
                    time.time(),
                    doc_id,
                ),
            )
            ids = self._insert_chunks(doc_id, title, chunks)
            self._insert_vectors(cid, ids, vectors)
        return doc_id

    def record_failure(self, collection: str, path: str | Path, reason: str) -> None:
        """Note that `path` failed to index; an earlier good version stays searchable."""
        with self._transaction():
            cid = self._collection_id(collection, create=True)
            self.conn.execute(
                "INSERT INTO documents(collection_id, path, name, error) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(collection_id, path) DO UPDATE SET error = excluded.error",
                (cid, _key(path), printable(Path(path).name), printable(reason)),
            )

    def touch_document(self, collection: str, path: str | Path, size: int, mtime: float) -> None:
        """Record a new size and mtime for a file whose content hash did not change."""
        with self._transaction():
            self.conn.execute(
                "UPDATE documents SET size = ?, mtime = ? WHERE path = ? AND collection_id = "
                "(SELECT id FROM collections WHERE name = ?)",
                (size, mtime, _key(path), collection),
            )

    def remove_document(self, collection: str, path: str | Path) -> bool:
        """Forget `path`; returns False if it was not in the index."""
        record = self.document(collection, path)
        if record is None:
            return False
        with self._transaction():
            self._delete_chunks([record.id])
            self.conn.execute("DELETE FROM documents WHERE id = ?", (record.id,))
        return True

    def forget(self, collection: str, paths: Sequence[str | Path]) -> list[str]:
        """Forget documents (a folder: everything under it); returns what went. A path that
        names nothing indexed raises UserError before anything is forgotten."""
        known = self.paths(collection)
        removed: list[str] = []
        for raw in paths:
            target = resolved(raw)  # a symlink loop stays as named: no RuntimeError
            hits = [p for p in known if Path(p) == target or Path(p).is_relative_to(target)]
            if not hits:
                raise UserError(f"{target}: not in the index (collection '{collection}')")
            removed.extend(hits)
        removed = list(dict.fromkeys(removed))  # a folder and a file in it: once
        for path in removed:
            self.remove_document(collection, path)
        return removed

    def _check_vectors(self, vectors: np.ndarray, n: int) -> np.ndarray:
        array = np.ascontiguousarray(vectors, dtype="<f4")
        if array.shape != (n, self.dim):
            raise ValueError(f"expected vectors of shape ({n}, {self.dim}), got {array.shape}")
        return array

    def _document_id(self, cid: int, path: str | bytes, name: str) -> int:
        """The id of (collection, path), inserting an empty row if it is new."""
        self.conn.execute(
            "INSERT INTO documents(collection_id, path, name) VALUES (?, ?, ?) "
            "ON CONFLICT(collection_id, path) DO NOTHING",
            (cid, path, name),
        )
        row = self.conn.execute(
            "SELECT id FROM documents WHERE collection_id = ? AND path = ?", (cid, path)
        ).fetchone()
        return int(row[0])

    def _delete_chunks(self, doc_ids: Iterable[int]) -> None:
        """Remove the chunks, FTS rows and vectors of these documents (inside a transaction)."""
        for doc_id in doc_ids:
            rows = self.conn.execute(
                "SELECT c.id, c.text, c.section, d.title FROM chunks c "
                "JOIN documents d ON d.id = c.document_id WHERE c.document_id = ?",
                (doc_id,),
            ).fetchall()
            self.conn.executemany(
                "INSERT INTO chunks_fts(chunks_fts, rowid, text, section, title) "
                "VALUES ('delete', ?, ?, ?, ?)",
                rows,
            )
            self.conn.executemany(
                "DELETE FROM vec_chunks WHERE chunk_id = ?", [(r[0],) for r in rows]
            )
            self.conn.executemany(
                "DELETE FROM reader_vectors WHERE chunk_id = ?", [(r[0],) for r in rows]
            )
            self._removed.extend(r[0] for r in rows)
            self.conn.execute("DELETE FROM chunks WHERE document_id = ?", (doc_id,))

    def _insert_chunks(self, doc_id: int, title: str | None, chunks: Sequence[Chunk]) -> list[int]:
        ids: list[int] = []
        for chunk in chunks:
            cur = self.conn.execute(
                "INSERT INTO chunks(document_id, ordinal, page, section, text) VALUES (?,?,?,?,?)",
                (doc_id, chunk.ordinal, chunk.page, chunk.section, chunk.text),
            )
            ids.append(int(cur.lastrowid))
        self.conn.executemany(
            "INSERT INTO chunks_fts(rowid, text, section, title) VALUES (?, ?, ?, ?)",
            [(i, c.text, c.section, title) for i, c in zip(ids, chunks, strict=True)],
        )
        return ids

    def _insert_vectors(self, cid: int, ids: list[int], vectors: np.ndarray) -> None:
        self._added.extend((i, cid, vectors[n]) for n, i in enumerate(ids))
        rows = [(i, cid, vectors[n].tobytes()) for n, i in enumerate(ids)]
        self.conn.executemany(
            "INSERT INTO embeddings(chunk_id, vector) VALUES (?, ?)", [(r[0], r[2]) for r in rows]
        )
        self._insert_vec(rows)

    def _insert_vec(self, rows: Iterable[tuple[int, int, bytes]]) -> None:
        value = "vec_quantize_binary(vec_f32(?))" if self.quantization == "binary" else "?"
        self.conn.executemany(
            f"INSERT INTO vec_chunks(chunk_id, collection_id, embedding) VALUES (?, ?, {value})",
            rows,
        )

    # -- search ---------------------------------------------------------------

    def _search_filter(self, collection: str | None) -> tuple[str, tuple[int, ...]]:
        if collection is None:
            return "", ()
        return " AND collection_id = ?", (self._collection_id(collection),)

    def load_index(self) -> None:
        """Read the in-memory vector index now (e.g. in the background after start-up)."""
        if self.memory_index:
            self.index.load()

    def vector_search(
        self, qvec: np.ndarray, k: int, collection: str | None = None
    ) -> list[tuple[int, float]]:
        """The k nearest chunks by cosine distance (0 = same direction), nearest first."""
        query = np.ascontiguousarray(qvec, dtype="<f4").reshape(-1)
        if query.shape != (self.dim,):
            raise ValueError(f"expected a ({self.dim},) query vector, got {query.shape}")
        if self.memory_index:
            cid = None if collection is None else self._collection_id(collection)
            return self.index.search(query, k, cid)
        where, args = self._search_filter(collection)
        if self.quantization == "float":
            sql = "SELECT chunk_id, distance FROM vec_chunks WHERE embedding MATCH ? AND k = ?"
            rows = self.conn.execute(sql + where, (query.tobytes(), min(k, MAX_KNN), *args))
            return [(int(i), float(d)) for i, d in rows.fetchall()]
        sql = (
            "SELECT chunk_id FROM vec_chunks "
            "WHERE embedding MATCH vec_quantize_binary(vec_f32(?)) AND k = ?"
        )
        rows = self.conn.execute(
            sql + where, (query.tobytes(), min(k * OVERSAMPLE, MAX_KNN), *args)
        )
        ids = [int(row[0]) for row in rows.fetchall()]
        distances = 1.0 - self.vectors(ids) @ query
        order = np.argsort(distances, kind="stable")[:k]
        return [(ids[n], float(distances[n])) for n in order]

    def keyword_search(
        self, query: str, k: int, collection: str | None = None
    ) -> list[tuple[int, float]]:
        """The k best chunks by FTS5 BM25 (SQLite's sign: lower is better), best first."""
        terms = fts_terms(query)
        if not terms:
            return []
        match = fts_query(query, rare_terms(self.conn, terms, KEYWORD_ROWS, self._term_rows))
        sql = f"SELECT f.rowid, bm25(chunks_fts, {FTS_WEIGHTS}) AS score FROM chunks_fts f "
        args: tuple[Any, ...] = (match,)
        if collection is not None:
            sql += "JOIN chunks c ON c.id = f.rowid JOIN documents d ON d.id = c.document_id "
            sql += "WHERE chunks_fts MATCH ? AND d.collection_id = ? "
            args += (self._collection_id(collection),)
        else:
            sql += "WHERE chunks_fts MATCH ? "
        rows = self.conn.execute(sql + "ORDER BY score LIMIT ?", (*args, k))
        return [(int(i), float(s)) for i, s in rows.fetchall()]

    def fetch(self, chunk_ids: Sequence[int]) -> list[ChunkRow]:
        """Chunks with their document, in the order asked (unknown ids are skipped)."""
        if not chunk_ids:
            return []
        marks = ",".join("?" * len(chunk_ids))
        rows = self.conn.execute(
            "SELECT c.id, d.name, d.path, d.title, c.page, c.section, c.ordinal, c.text, k.name "
            "FROM chunks c JOIN documents d ON d.id = c.document_id "
            f"JOIN collections k ON k.id = d.collection_id WHERE c.id IN ({marks})",
            list(chunk_ids),
        ).fetchall()
        by_id = {row[0]: ChunkRow(row[0], row[1], _path(row[2]), *row[3:]) for row in rows}
        return [by_id[i] for i in chunk_ids if i in by_id]

    def vectors(self, chunk_ids: Sequence[int]) -> np.ndarray:
        """The float32 embeddings of these chunks, (n, dim), in the order asked."""
        if not chunk_ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        cached = self.index.vectors(list(chunk_ids))
        if cached is not None:
            return cached
        marks = ",".join("?" * len(chunk_ids))
        rows = self.conn.execute(
            f"SELECT chunk_id, vector FROM embeddings WHERE chunk_id IN ({marks})", list(chunk_ids)
        ).fetchall()
        by_id = dict(rows)
        blob = b"".join(by_id[i] for i in chunk_ids)
        return np.frombuffer(blob, dtype="<f4").reshape(len(chunk_ids), self.dim).copy()

    def reader_vectors(self, reader: str, chunk_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The reader's stored passage vectors of these chunks (those it has)."""
        if not chunk_ids:
            return {}
        marks = ",".join("?" * len(chunk_ids))
        rows = self.conn.execute(
            "SELECT chunk_id, vector FROM reader_vectors "
            f"WHERE reader = ? AND chunk_id IN ({marks})",
            [reader, *chunk_ids],
        ).fetchall()
        return {int(i): np.frombuffer(blob, dtype="<f4").copy() for i, blob in rows}

    def put_reader_vectors(self, reader: str, vectors: dict[int, np.ndarray]) -> None:
        """Keep the reader's vectors of these chunks (one transaction)."""
        rows = [(reader, i, np.asarray(v, dtype="<f4").tobytes()) for i, v in vectors.items()]
        with self._transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO reader_vectors(reader, chunk_id, vector) VALUES (?, ?, ?)",
                rows,
            )

    def stats(self) -> StoreStats:
        docs, failed, chunks = self.conn.execute(
            "SELECT COUNT(hash), COUNT(error), COALESCE(SUM(chunk_count), 0) FROM documents"
        ).fetchone()
        size = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )
        return StoreStats(int(docs), int(failed), int(chunks), size)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception; callbacks after each."""

    def __init__(
        self, conn: Any, on_commit: Callable[[], None], on_rollback: Callable[[], None]
    ) -> None:
        self.conn = conn
        self.on_commit, self.on_rollback = on_commit, on_rollback

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type:
            self._rollback()
            return
        try:
            self.conn.execute("COMMIT")
        except BaseException:  # e.g. SQLITE_FULL on commit: the old version stays
            self._rollback()
            raise
        self.on_commit()

    def _rollback(self) -> None:
        """Roll back if SQLite has not already: after SQLITE_FULL it has, and a second
        ROLLBACK raised "cannot rollback - no transaction is active" over the real error."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self.on_rollback()


def _key(path: str | Path) -> str | bytes:
    """How a path is stored: its text, or the bytes of a file name that is not UTF-8 (a
    BLOB: SQLite text must be UTF-8), so that it reads back as the same path."""
    text = str(resolved(path))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def _path(stored: str | bytes) -> str:
    """A stored path as Python names the file (undecodable bytes as surrogate escapes)."""
    return os.fsdecode(stored) if isinstance(stored, bytes) else stored


def _record(row: Sequence[Any]) -> DocumentRecord:
    return DocumentRecord(row[0], row[1], _path(row[2]), *row[3:])


def resolved(path: str | Path) -> Path:
    """The absolute path with symlinks resolved; a symlink loop stays as it is named."""
    path = Path(path).expanduser()
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError("Symlink loop")
        return Path(os.path.abspath(path))
