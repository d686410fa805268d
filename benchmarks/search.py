"""Search latency and recall on synthetic indexes.

Builds an index of random unit vectors with cluster structure and synthetic text in a
temp dir, then times vector-only, keyword-only and hybrid queries (the Retriever,
query embedding excluded), a numpy brute-force scan of the same vectors, and recall@10
of each quantization against exact search. Vector search runs on the Store's in-memory
matrix (engine/index/vectors.py); vec0 (float and binary) is timed beside it for comparison.

    .venv/bin/python benchmarks/search.py              # 10k and 100k chunks
    .venv/bin/python benchmarks/search.py --sizes 100000 --million --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.index.retrieval import Retriever
from engine.index.store import Store
from engine.types import Chunk

DIM = 384
CHUNKS_PER_DOC = 100
CLUSTERS = 200
VOCAB = 20000
WORDS_PER_CHUNK = 60
BLOCK = 1000  # chunks whose text is drawn together
STOPWORD_RANKS = 100  # the head of the Zipf curve: stopwords, which queries drop anyway


class Corpus:
    """Synthetic chunks: clustered unit vectors and Zipf-distributed made-up words."""

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        centers = _unit(rng.standard_normal((CLUSTERS, DIM)))
        self.labels = rng.integers(0, CLUSTERS, n)
        noise = rng.standard_normal((n, DIM)).astype(np.float32) * 0.06
        self.vectors = _unit(centers[self.labels] + noise)
        # Zipf (s=1.1) over ranks STOPWORD_RANKS..VOCAB, sampled by inverse CDF
        # (numpy's zipf() rejection sampler is ~100x slower near s=1).
        self.vocab = [f"w{i}x{(i * 7919) % 997}" for i in range(STOPWORD_RANKS, VOCAB)]
        weights = np.arange(STOPWORD_RANKS, VOCAB, dtype=np.float64) ** -1.1
        self.cdf = np.cumsum(weights) / weights.sum()
        self.n = n

    def texts(self, block: int) -> list[str]:
        """The texts of chunks block*BLOCK .. +BLOCK, drawn in one go (1M chunks in ~1 min)."""
        rng = np.random.default_rng((7, block))
        ranks = np.searchsorted(self.cdf, rng.random((BLOCK, WORDS_PER_CHUNK)))
        return [" ".join([self.vocab[r] for r in row]) for row in ranks.tolist()]

    def text(self, i: int) -> str:
        return self.texts(i // BLOCK)[i % BLOCK]

    def queries(self, count: int) -> list[tuple[str, np.ndarray]]:
        """Query text: a few words of a random chunk; vector: that chunk's, perturbed."""
        picks = self.rng.integers(0, self.n, count)
        noise = self.rng.standard_normal((count, DIM)).astype(np.float32) * 0.04
        vecs = _unit(self.vectors[picks] + noise)
        return [
            (" ".join(self.text(int(p)).split()[:4]), v) for p, v in zip(picks, vecs, strict=True)
        ]


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build(path: Path, corpus: Corpus, quantization: str) -> Store:
    """An index of the corpus, 100 chunks a document, one transaction per document."""
    store = Store(path, model="synthetic", dim=DIM, quantization=quantization)
    for block in range(0, -(-corpus.n // BLOCK)):
        texts = corpus.texts(block)
        for start in range(block * BLOCK, min((block + 1) * BLOCK, corpus.n), CHUNKS_PER_DOC):
            stop = min(start + CHUNKS_PER_DOC, corpus.n)
            chunks = [
                Chunk(texts[i - block * BLOCK], 1 + i % 20, None, i - start)
                for i in range(start, stop)
            ]
            name = f"doc{start // CHUNKS_PER_DOC}.txt"
            store.replace_document(
                "default", path.parent / name, name, None, name, 1, 0.0, 20, chunks,
                corpus.vectors[start:stop],
            )  # fmt: skip
    return store


class FixedEmbedder:
    """Hands back the prepared vector for each benchmark query."""

    def __init__(self, queries: list[tuple[str, np.ndarray]]) -> None:
        self.table = dict(queries)

    def embed_query(self, text: str) -> np.ndarray:
        return self.table[text]


def timed(fn: Callable[[str, np.ndarray], object], queries: list[tuple[str, np.ndarray]]) -> float:
    """Median milliseconds of fn over the queries (after one warm-up call)."""
    fn(*queries[0])
    times = []
    for text, vec in queries:
        start = time.perf_counter()
        fn(text, vec)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def exact_top(vectors: np.ndarray, vec: np.ndarray, k: int = 10) -> set[int]:
    return set(np.argpartition(-(vectors @ vec), k)[:k].tolist())


def recall_store(store: Store, corpus: Corpus, queries: list[tuple[str, np.ndarray]]) -> float:
    """recall@10 of Store.vector_search (chunk ids are 1..n in corpus order)."""
    found = 0
    for _, vec in queries:
        got = {i - 1 for i, _ in store.vector_search(vec, 10)}
        found += len(exact_top(corpus.vectors, vec) & got)
    return found / (10 * len(queries))


def recall_int8(corpus: Corpus, queries: list[tuple[str, np.ndarray]]) -> float:
    """recall@10 of int8 scalar quantization (vec_quantize_int8 'unit': x*127), float query."""
    found = 0
    for _, vec in queries:
        scores = np.concatenate(
            [
                np.rint(corpus.vectors[s : s + 100_000] * 127).astype(np.float32) @ vec
                for s in range(0, corpus.n, 100_000)
            ]
        )
        found += len(exact_top(corpus.vectors, vec) & set(np.argpartition(-scores, 10)[:10]))
    return found / (10 * len(queries))


def recall_binary(corpus: Corpus, queries: list[tuple[str, np.ndarray]], pool: int) -> float:
    """recall@10 of a Hamming prefilter of `pool` candidates, rescored by exact cosine."""
    bits = np.packbits(corpus.vectors > 0, axis=1).view(np.uint64)
    found = 0
    for _, vec in queries:
        qbits = np.packbits(vec > 0).view(np.uint64)
        dist = np.bitwise_count(bits ^ qbits).sum(axis=1, dtype=np.uint16)
        cand = np.argpartition(dist, pool)[:pool]
        best = cand[np.argpartition(-(corpus.vectors[cand] @ vec), 10)[:10]]
        found += len(exact_top(corpus.vectors, vec) & set(best.tolist()))
    return found / (10 * len(queries))


def brute_force(vectors: np.ndarray) -> Callable[[str, np.ndarray], object]:
    def scan(_text: str, vec: np.ndarray) -> object:
        scores = vectors @ vec
        top = np.argpartition(-scores, 10)[:10]
        return top[np.argsort(-scores[top])]

    return scan


def searcher(retriever: Retriever, method: str) -> Callable[[str, np.ndarray], object]:
    return lambda text, _vec: retriever.search(text, k=10, method=method)


def run(n: int, count: int, folder: Path, vec0: bool) -> dict[str, float]:
    """Figures for one index size; vec0 (float, binary) too when asked (slow at 1M)."""
    corpus = Corpus(n)
    queries = corpus.queries(count)
    start = time.perf_counter()
    store = build(folder / f"index{n}.sqlite3", corpus, "binary")
    out: dict[str, float] = {"chunks": n, "build_s": time.perf_counter() - start}
    print(f"\n== {n:,} chunks (built in {out['build_s']:.0f} s), {count} queries ==")
    retriever = Retriever(store, FixedEmbedder(queries))
    start = time.perf_counter()
    store.vector_search(queries[0][1], 10)
    out["index_load_ms"] = (time.perf_counter() - start) * 1000
    out["numpy_ms"] = timed(brute_force(corpus.vectors), queries)
    for method in ("vector", "keyword", "hybrid"):
        out[f"memory_{method}_ms"] = timed(searcher(retriever, method), queries)
    out["recall_float"] = recall_store(store, corpus, queries)
    out["recall_int8"] = recall_int8(corpus, queries)
    out["recall_binary_100"] = recall_binary(corpus, queries, 100)
    out["recall_binary_1000"] = recall_binary(corpus, queries, 1000)
    if vec0:
        store.memory_index = False
        out["recall_vec0_binary"] = recall_store(store, corpus, queries)
        out["vec0_binary_hybrid_ms"] = timed(searcher(retriever, "hybrid"), queries)
        store.set_quantization("float")
        out["vec0_float_vector_ms"] = timed(searcher(retriever, "vector"), queries)
        out["vec0_float_hybrid_ms"] = timed(searcher(retriever, "hybrid"), queries)
    out["hybrid_over_numpy"] = out["memory_hybrid_ms"] / out["numpy_ms"]
    out["load"] = os.getloadavg()[0]
    for key, value in out.items():
        print(f"  {key:24s} {value:10.3f}")
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--million", action="store_true", help="also 1M chunks (slow build)")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--no-vec0", action="store_true", help="skip the vec0 comparison")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    sizes = args.sizes + ([1_000_000] if args.million else [])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            vec0 = not args.no_vec0 and n < 1_000_000
            results.append(run(n, args.queries, Path(tmp), vec0))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
