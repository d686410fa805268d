"""Exact cosine KNN over the store's float32 vectors, held in memory.

One matrix-vector product over all vectors (BLAS, memory-bound) costs about what a
numpy brute-force scan costs, ~4-10x less than vec0's exact scan of the same vectors,
and the same for any k (docs/search.md, docs/benchmarks.md).

The matrix is read lazily from the `embeddings` table. This connection's own writes are
applied in place when their transaction commits (rows appended, removed rows marked
dead), so a search right after indexing one file does not re-read the whole index;
another connection's commit changes `PRAGMA data_version`, and the next query re-reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

LOAD_BATCH = 4096  # rows fetched per round trip while filling the matrix
COMPACT_DEAD = 0.25  # drop dead rows once they are this share of the matrix


class VectorIndex:
    """Unit vectors of every chunk with their chunk and collection ids."""

    def __init__(self, conn: Any, dim: int) -> None:
        self.conn = conn
        self.dim = dim
        self._version: int | None = None  # data_version the matrix was read at
        self._reset(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, dim), np.float32))

    def _reset(self, ids: np.ndarray, collections: np.ndarray, matrix: np.ndarray) -> None:
        self._n = len(ids)
        self._ids, self._collections, self._matrix = ids, collections, matrix
        self._alive = np.ones(len(ids), dtype=bool)
        self._dead = 0
        self._position = {int(i): n for n, i in enumerate(ids[: self._n])}

    @property
    def loaded(self) -> bool:
        return self._version is not None

    @property
    def nbytes(self) -> int:
        return int(self._matrix.nbytes + self._ids.nbytes + self._collections.nbytes)

    def invalidate(self) -> None:
        """Forget the matrix; the next query reads it again."""
        self._version = None
        self._reset(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        )

    def load(self) -> None:
        """Read the matrix now if it is missing or stale (e.g. at start-up, in the background)."""
        if not self._fresh():
            self._load()

    def search(
        self, query: np.ndarray, k: int, collection_id: int | None = None
    ) -> list[tuple[int, float]]:
        """The k nearest chunks as (chunk id, cosine distance), nearest first."""
        self.load()
        n = self._n
        if k <= 0 or n == 0:
            return []
        scores = self._matrix[:n] @ query
        if self._dead:
            scores[~self._alive[:n]] = -np.inf
        if collection_id is not None:
            scores[self._collections[:n] != collection_id] = -np.inf
        k = min(k, n)
        top = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
        top = top[np.argsort(-scores[top], kind="stable")]
        top = top[np.isfinite(scores[top])]
        return [(int(self._ids[i]), float(1.0 - scores[i])) for i in top]

    def vectors(self, chunk_ids: Sequence[int]) -> np.ndarray | None:
        """Rows for these ids from memory, or None if the matrix is not loaded or lacks one."""
        if not self._fresh():
            return None
        rows = [self._position.get(int(i)) for i in chunk_ids]
        if any(r is None for r in rows):
            return None
        return self._matrix[np.array(rows, dtype=np.int64)]

    def apply(
        self,
        removed: Sequence[int],
        added: Sequence[tuple[int, int, np.ndarray]],
    ) -> None:
        """This connection's committed write: chunk ids removed, (id, collection, vector) added."""
        if not self.loaded:
            return
        for chunk_id in removed:
            row = self._position.pop(int(chunk_id), None)
            if row is not None and self._alive[row]:
                self._alive[row] = False
                self._dead += 1
        if added:
            self._append(added)
        if self._dead > COMPACT_DEAD * max(self._n, 1):
            self._compact()

    def _append(self, added: Sequence[tuple[int, int, np.ndarray]]) -> None:
        """Append rows, doubling capacity when full (amortised O(1) per row)."""
        need = self._n + len(added)
        if need > len(self._ids):
            size = max(need, 2 * len(self._ids), 1024)
            self._ids = _grow(self._ids, size)
            self._collections = _grow(self._collections, size)
            self._matrix = _grow(self._matrix, size)
            self._alive = _grow(self._alive, size)
        stop = self._n + len(added)
        self._ids[self._n : stop] = [a[0] for a in added]
        self._collections[self._n : stop] = [a[1] for a in added]
        self._matrix[self._n : stop] = np.stack([a[2] for a in added])
        self._alive[self._n : stop] = True
        for row in range(self._n, stop):
            self._position[int(self._ids[row])] = row
        self._n = stop

    def _compact(self) -> None:
        keep = np.flatnonzero(self._alive[: self._n])
        self._reset(self._ids[keep], self._collections[keep], self._matrix[keep])

    def _fresh(self) -> bool:
        return self._version is not None and self._version == self._data_version()

    def _data_version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def _load(self) -> None:
        """Scan `embeddings` in rowid order into preallocated arrays, then look up each
        chunk's collection (two sequential scans; a join per row was 3x slower)."""
        version = self._data_version()
        (count,) = self.conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()
        ids = np.empty(count, dtype=np.int64)
        matrix = np.empty((count, self.dim), dtype=np.float32)
        cursor = self.conn.execute("SELECT chunk_id, vector FROM embeddings ORDER BY chunk_id")
        n = 0
        while rows := cursor.fetchmany(LOAD_BATCH):
            rows = rows[: count - n]  # rows committed after the COUNT wait for the next read
            if not rows:
                version = -1
                break
            stop = n + len(rows)
            ids[n:stop] = [r[0] for r in rows]
            blob = b"".join(r[1] for r in rows)
            matrix[n:stop] = np.frombuffer(blob, dtype="<f4").reshape(len(rows), self.dim)
            n = stop
        owners = np.array(
            self.conn.execute(
                "SELECT c.id, d.collection_id FROM chunks c "
                "JOIN documents d ON d.id = c.document_id ORDER BY c.id"
            ).fetchall(),
            dtype=np.int64,
        ).reshape(-1, 2)
        where = np.clip(np.searchsorted(owners[:, 0], ids[:n]), 0, max(len(owners) - 1, 0))
        collections = owners[where, 1] if len(owners) else np.zeros(n, np.int64)
        self._reset(ids[:n], collections, matrix[:n])
        self._version = version


def _grow(array: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, *array.shape[1:]), dtype=array.dtype)
    out[: len(array)] = array
    return out
