"""Search latency and recall on synthetic indexes.

Builds an index of random unit vectors with cluster structure and synthetic text in a
temp dir, then times vector-only, keyword-only and hybrid queries (the Retriever,
query embedding excluded), a numpy brute-force scan of the same vectors, and recall@10
of each vec0 quantization against exact search.

    .venv/bin/python benchmarks/search.py              # 10k and 100k chunks
    .venv/bin/python benchmarks/search.py --sizes 10000 --million
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.retrieval import Retriever  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.types import Chunk  # noqa: E402

DIM = 384
CHUNKS_PER_DOC = 100
CLUSTERS = 200
VOCAB = 20000
WORDS_PER_CHUNK = 60
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
        self.words = np.array([f"w{i}x{(i * 7919) % 997}" for i in range(VOCAB)])
        self.n = n

    def text(self, i: int) -> str:
        rng = np.random.default_rng(i)
        ranks = rng.zipf(1.1, WORDS_PER_CHUNK * 4)
        ids = ranks[(ranks > STOPWORD_RANKS) & (ranks < VOCAB)][:WORDS_PER_CHUNK]
        return " ".join(self.words[ids])

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
    store = Store(path, model="synthetic", dim=DIM, quantization=quantization)
    for start in range(0, corpus.n, CHUNKS_PER_DOC):
        stop = min(start + CHUNKS_PER_DOC, corpus.n)
        chunks = [Chunk(corpus.text(i), 1 + i % 20, None, i - start) for i in range(start, stop)]
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


def timed(fn: Callable[[str, np.ndarray], object], queries: list[tuple[str, np.ndarray]]) -> str:
    fn(*queries[0])  # warm the page cache
    times = []
    for text, vec in queries:
        start = time.perf_counter()
        fn(text, vec)
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return f"median {np.median(ms):7.2f} ms   p95 {np.percentile(ms, 95):7.2f} ms"


def recall_at_10(store: Store, corpus: Corpus, queries: list[tuple[str, np.ndarray]]) -> float:
    ids = np.array([r[0] for r in store.conn.execute("SELECT id FROM chunks ORDER BY id")])
    found = 0
    for _, vec in queries:
        exact = set(ids[np.argpartition(-(corpus.vectors @ vec), 10)[:10]].tolist())
        found += len(exact & {i for i, _ in store.vector_search(vec, 10)})
    return found / (10 * len(queries))


def brute_force(vectors: np.ndarray) -> Callable[[str, np.ndarray], object]:
    def scan(_text: str, vec: np.ndarray) -> object:
        scores = vectors @ vec
        top = np.argpartition(-scores, 10)[:10]
        return top[np.argsort(-scores[top])]

    return scan


def searcher(retriever: Retriever, method: str) -> Callable[[str, np.ndarray], object]:
    return lambda text, _vec: retriever.search(text, k=10, method=method)


def run(n: int, count: int, folder: Path) -> None:
    corpus = Corpus(n)
    queries = corpus.queries(count)
    start = time.perf_counter()
    store = build(folder / f"index{n}.sqlite3", corpus, "float")
    print(f"\n== {n:,} chunks (built in {time.perf_counter() - start:.0f} s) ==")
    print(f"numpy brute force      {timed(brute_force(corpus.vectors), queries)}")
    for quantization in ("float", "binary"):
        store.set_quantization(quantization)
        print(f"-- {quantization}: recall@10 {recall_at_10(store, corpus, queries):.3f}")
        retriever = Retriever(store, FixedEmbedder(queries))
        for method in ("vector", "keyword", "hybrid"):
            print(f"{method:8s} k=10         {timed(searcher(retriever, method), queries)}")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--million", action="store_true", help="also 1M chunks (slow build)")
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    sizes = args.sizes + ([1_000_000] if args.million else [])
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            run(n, args.queries, Path(tmp))


if __name__ == "__main__":
    main()
