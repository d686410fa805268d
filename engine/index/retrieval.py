"""Hybrid retrieval: vector KNN and FTS5 BM25, fused by reciprocal rank fusion."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from engine.index.store import Store
from engine.types import SearchResult

if TYPE_CHECKING:
    from engine.reader.rank import Reader

METHODS = ("hybrid", "vector", "keyword")  # the one list: the CLI, the Search tab and eval read it
RRF_K = 60
# Passages this similar to a better-ranked one are the same text (a manual's PDF and its
# HTML copy, chunked at other boundaries): they take one place in the results, not two.
DUPLICATE_COSINE = 0.95
CANDIDATES = 20  # what a reader reranks


class QueryEmbedder(Protocol):
    def embed_query(self, text: str) -> np.ndarray: ...


@dataclass
class RetrievalTiming:
    """Seconds spent in each stage of the last search."""

    embed_s: float = 0.0
    vector_s: float = 0.0
    keyword_s: float = 0.0
    rerank_s: float = 0.0
    total_s: float = 0.0


def fused(rankings: list[list[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: (id, relevance) ordered by the sum of 1/(k + rank) over the
    lists, as a share of the most it can be (first in every list), so 1.0 is the best."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    best = len(rankings) / (k + 1) or 1.0
    return sorted(((item, score / best) for item, score in scores.items()), key=lambda x: -x[1])


class Retriever:
    """Searches one Store with one embedder. Use it on the thread that owns the Store."""

    def __init__(self, store: Store, embedder: QueryEmbedder) -> None:
        self.store = store
        self.embedder = embedder
        self.last_timing = RetrievalTiming()

    def search(
        self,
        query: str,
        k: int = 5,
        collection: str | None = None,
        min_score: float = 0.0,
        method: str = "hybrid",
        reader: Reader | None = None,
    ) -> list[SearchResult]:
        """The top-k passages for `query`, best first.

        `score` is the cosine similarity of the passage to the query (0-1), whatever the
        method, so `min_score` means the same thing for all three. `relevance` is the
        search's own order (see `fused`). With a `reader`, the best `CANDIDATES` (past the
        cutoff, near-copies merged) are put in the reader's order (`rerank`) and cut to k.
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {method!r}")
        timing = RetrievalTiming()
        start = time.perf_counter()
        if not query.strip() or k <= 0:
            self.last_timing = timing
            return []
        qvec = np.asarray(self.embedder.embed_query(query), dtype=np.float32)
        timing.embed_s = time.perf_counter() - start
        depth = max(k, CANDIDATES) if reader is not None else k
        ranked = self._candidates(query, qvec, depth, collection, method, timing)
        results = self._results(ranked, qvec, depth, min_score)
        if reader is not None:
            t = time.perf_counter()
            results = reader.rerank(self.store, query, results)[:k]
            timing.rerank_s = time.perf_counter() - t
        timing.total_s = time.perf_counter() - start
        self.last_timing = timing
        return results

    def _candidates(
        self,
        query: str,
        qvec: np.ndarray,
        k: int,
        collection: str | None,
        method: str,
        timing: RetrievalTiming,
    ) -> list[tuple[int, float]]:
        depth = k if method != "hybrid" else max(50, 5 * k)
        lists: list[list[int]] = []
        if method in ("hybrid", "vector"):
            t = time.perf_counter()
            lists.append([i for i, _ in self.store.vector_search(qvec, depth, collection)])
            timing.vector_s = time.perf_counter() - t
        if method in ("hybrid", "keyword"):
            t = time.perf_counter()
            lists.append([i for i, _ in self.store.keyword_search(query, depth, collection)])
            timing.keyword_s = time.perf_counter() - t
        return fused(lists)

    def _results(
        self, ranked: list[tuple[int, float]], qvec: np.ndarray, k: int, min_score: float
    ) -> list[SearchResult]:
        if not ranked:
            return []
        order = [i for i, _ in ranked]
        vectors = self.store.vectors(order)
        similarity = np.clip(vectors @ qvec, 0.0, 1.0)
        kept: list[tuple[int, float, float]] = []
        kept_rows: list[int] = []
        for row, ((i, relevance), score) in enumerate(zip(ranked, similarity, strict=True)):
            if score < min_score or _duplicate(vectors, row, kept_rows):
                continue
            kept.append((i, float(score), relevance))
            kept_rows.append(row)
            if len(kept) == k:
                break
        rows = {row.chunk_id: row for row in self.store.fetch([i for i, _, _ in kept])}
        return [
            SearchResult(
                rank=rank,
                document=rows[i].document,
                path=rows[i].path,
                page=rows[i].page,
                section=rows[i].section,
                score=round(score, 4),
                text=rows[i].text,
                chunk_id=i,
                collection=rows[i].collection,
                relevance=round(relevance, 4),
            )
            for rank, (i, score, relevance) in enumerate(kept, start=1)
        ]


def _duplicate(vectors: np.ndarray, row: int, kept_rows: list[int]) -> bool:
    """Whether passage `row` is a near-copy of one already kept."""
    if not kept_rows:
        return False
    return bool(np.max(vectors[kept_rows] @ vectors[row]) >= DUPLICATE_COSINE)
