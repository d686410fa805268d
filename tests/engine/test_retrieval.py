"""engine.index.retrieval: hybrid search over a real index with the real bundled embedder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.index.retrieval import Retriever, fused
from engine.index.store import Store
from engine.types import Chunk

PASSAGES = {
    "errors.md": [
        "Error ZX-4417 is raised when the sync daemon runs out of disk space.",
        "Error ZX-7441 is raised when the sync daemon is stopped by the user.",
        "Error ZX-4471 is raised when the sync daemon cannot reach the ledger service.",
        "Error ZX-4741 is raised when the sync daemon finds a corrupt journal.",
        "Error ZX-1447 is raised when the sync daemon has no licence key.",
    ],
    "garden.md": [
        "Tomatoes need six to eight hours of direct sunlight and regular deep watering.",
        "Prune the lower leaves of tomato plants to keep fungal disease away.",
    ],
    "money.md": [
        "To lower your monthly outgoings, cancel subscriptions you no longer use.",
        "An emergency fund should cover three to six months of essential expenses.",
    ],
    "pets.md": [
        "Cats groom themselves for hours every day and rarely need a bath.",
        "A dog that is left alone all day may chew furniture out of boredom.",
    ],
    "travel.md": [
        "Book train tickets early: fares across Europe rise sharply near the date.",
        "Pack a universal power adapter; wall sockets differ between countries.",
    ],
}

# (query, words of the passage with the answer)
QUERIES = [
    ("what does ZX-4471 mean", "ledger service"),  # a rare code among look-alikes: keyword
    ("how can I cut my spending", "monthly outgoings"),  # a paraphrase: meaning only
    ("my puppy destroys the sofa when I go to work", "chew furniture"),  # paraphrase
]


@pytest.fixture
def retriever(tmp_path: Path, embedder: Any) -> Iterator[Retriever]:
    store = Store(tmp_path / "index.sqlite3", model=embedder.name, dim=embedder.dim)
    for name, texts in PASSAGES.items():
        chunks = [Chunk(text=t, page=None, section=None, ordinal=i) for i, t in enumerate(texts)]
        path = tmp_path / name
        store.replace_document(
            "default", path, name, None, name, 1, 0.0, None, chunks, embedder.embed(texts)
        )
    yield Retriever(store, embedder)
    store.close()


def _found(retriever: Retriever, method: str, k: int = 2) -> int:
    return sum(
        any(gold in r.text for r in retriever.search(q, k=k, method=method)) for q, gold in QUERIES
    )


def test_hybrid_finds_keyword_only_and_meaning_only_matches(retriever: Retriever) -> None:
    keyword = retriever.search("ZX-4471", k=5, method="keyword")
    assert [r.text for r in keyword] == [PASSAGES["errors.md"][2]]
    assert retriever.search("how can I cut my spending", k=5, method="keyword") == []
    hybrid, vector, kw = (_found(retriever, m) for m in ("hybrid", "vector", "keyword"))
    assert hybrid == len(QUERIES)
    assert hybrid >= vector and hybrid >= kw


def test_results_carry_source_and_cosine_score(retriever: Retriever, embedder: Any) -> None:
    results = retriever.search("watering tomatoes in the sun", k=3)
    assert [r.rank for r in results] == [1, 2, 3]
    top = results[0]
    assert top.document == "garden.md" and Path(top.path).is_absolute()
    expected = float(
        embedder.embed([top.text])[0]
        @ embedder.embed_query(top_query := "watering tomatoes in the sun")
    )
    assert top.score == pytest.approx(expected, abs=1e-3), top_query
    assert all(0.0 <= r.score <= 1.0 for r in results)
    assert retriever.last_timing.total_s > 0 and retriever.last_timing.vector_s > 0


def test_min_score_drops_weak_matches(retriever: Retriever) -> None:
    everything = retriever.search("tomato plants", k=10)
    strong = retriever.search("tomato plants", k=10, min_score=0.4)
    assert 0 < len(strong) < len(everything)
    assert all(r.score >= 0.4 for r in strong)


def test_collection_filter_and_empty_query(
    retriever: Retriever, tmp_path: Path, embedder: Any
) -> None:
    text = "Error ZX-4471 also appears in the archive."
    retriever.store.replace_document(
        "archive",
        tmp_path / "old.md",
        "old.md",
        None,
        "h",
        1,
        0.0,
        None,
        [Chunk(text=text, page=None, section=None, ordinal=0)],
        embedder.embed([text]),
    )
    assert {r.document for r in retriever.search("ZX-4471", collection="archive")} == {"old.md"}
    assert "old.md" not in {r.document for r in retriever.search("ZX-4471", collection="default")}
    assert retriever.search("   ") == []


def test_rrf_rewards_agreement() -> None:
    assert fused([[1, 2, 3], [3, 4]])[0][0] == 3
    assert [item for item, _ in fused([[1, 2], []])] == [1, 2]


def test_fused_relevance_is_a_share_of_the_best_possible() -> None:
    ranked = dict(fused([[1, 2, 3], [1, 4]]))
    assert ranked[1] == pytest.approx(1.0)  # first in both lists
    assert ranked[2] < ranked[1] and ranked[4] < ranked[1]
    assert ranked[3] < ranked[2]


@pytest.mark.parametrize("method", ["hybrid", "vector", "keyword"])
def test_shown_relevance_agrees_with_the_order(retriever: Retriever, method: str) -> None:
    """Cosine similarity can rise down a hybrid list; the number users see must not."""
    disagreements = 0
    for query in ("sync daemon error", "ZX-4471", "tomato", "save money", "dog", "train fares"):
        results = retriever.search(query, k=10, method=method)
        shown = [r.relevance for r in results]
        assert shown == sorted(shown, reverse=True), (query, shown)
        assert all(0.0 < x <= 1.0 for x in shown)
        assert all(r.score_label() == f"relevance {r.relevance:.2f}" for r in results)
        cosine = [r.score for r in results]
        disagreements += cosine != sorted(cosine, reverse=True)
    if method == "hybrid":
        assert disagreements > 0  # why relevance exists: similarity alone would disagree


def test_unknown_method_is_rejected(retriever: Retriever) -> None:
    with pytest.raises(ValueError, match="method"):
        retriever.search("x", method="magic")


def test_query_vector_is_unit_length(embedder: Any) -> None:
    assert float(np.linalg.norm(embedder.embed_query("hello"))) == pytest.approx(1.0, abs=1e-4)
