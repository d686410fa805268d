"""The index schema: numbered, append-only migrations, row records, FTS5 query building."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.store import Store

DEFAULT_COLLECTION = "default"
MAX_TERMS = 32

STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        "a about above after again against all am an and any are as at be because been before "
        "being below between both but by can could did do does doing down during each few for "
        "from further had has have having he her here hers him his how i if in into is it its "
        "itself just me more most my no nor not now of off on once only or other our ours out "
        "over own same she should so some such than that the their theirs them then there "
        "these they this those through to too under until up very was we were what when where "
        "which while who whom why will with would you your yours near ",
    )
)


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


def fts_terms(text: str) -> list[str]:
    """Searchable terms of free user text: lower-cased, deduplicated, stopwords dropped."""
    terms: list[str] = []
    for piece in text.split():
        word = re.sub(r"^\W+|\W+$", "", piece.replace('"', ""))
        key = word.lower()
        if not re.search(r"\w", word) or key in STOPWORDS or key in terms:
            continue
        terms.append(key)
    return terms[:MAX_TERMS]


def fts_query(text: str, terms: list[str] | None = None) -> str:
    """A safe FTS5 query from free user text (or from `terms`): quoted terms, OR-ed.

    Returns "" when nothing searchable is left. Quoting makes every term a string
    (FTS5 tokenizes it itself), so operators, parentheses and column filters in the
    user's text are inert.
    """
    return " OR ".join(f'"{t}"' for t in (fts_terms(text) if terms is None else terms))


def rare_terms(conn: Any, terms: list[str], cap: int, counts: dict[str, int]) -> list[str]:
    """The rarest terms whose matches add up to at most `cap` rows (at least one term).

    BM25 scoring reads every matching row's column sizes, so an OR with a common term
    costs ~5 us per match (42 ms for 8,400 matches at 100k chunks), while counting a
    term's rows is ~20x cheaper. A common term has a low IDF and moves the ranking
    little; dropping it bounds the cost. `counts` caches row counts per term.
    """
    for term in terms:
        if term not in counts:
            row = conn.execute(
                "SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (f'"{term}"',)
            ).fetchone()
            counts[term] = int(row[0])
    kept: list[str] = []
    total = 0
    for term in sorted(terms, key=lambda t: counts[t]):
        if kept and total + counts[term] > cap:
            break
        kept.append(term)
        total += counts[term]
    return kept


def _m001_initial(store: Store) -> None:
    # Statement by statement: executescript() would COMMIT the migration's transaction.
    _execute_script(
        store.conn,
        """
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
        """,
    )
    store.conn.execute(
        "INSERT INTO collections(name, created_at) VALUES (?, ?)", (DEFAULT_COLLECTION, time.time())
    )
    store.set_meta("embedding_model", store.model)
    store.set_meta("embedding_dim", str(store.dim))
    store.set_meta("quantization", store.quantization)
    store.create_vec_table()


def _execute_script(conn: Any, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


MIGRATIONS: list[Callable[[Store], None]] = [_m001_initial]
