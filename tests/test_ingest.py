"""engine.ingest: documents embedded together land with their own vectors; cancel and re-ingest."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine import ingest
from engine.ingest import Ingestor
from engine.store import Store
from engine.types import IngestProgress

TOPICS = {
    "tomatoes.txt": "Tomatoes need six to eight hours of direct sunlight and deep watering.",
    "invoices.txt": "Send the invoice within thirty days and keep a copy for the tax office.",
    "penguins.txt": "Emperor penguins huddle together through the Antarctic winter darkness.",
    "engines.txt": "Check the engine oil level with the dipstick before every long journey.",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in TOPICS.items():
        (docs / name).write_text(f"{text}\n\n" + "More notes follow. " * len(name))
    return docs


@pytest.fixture
def store(tmp_path: Path, embedder: Any) -> Iterator[Store]:
    with Store(tmp_path / "index.sqlite3", model=embedder.name, dim=embedder.dim) as s:
        yield s


def test_documents_batched_together_keep_their_own_vectors(
    folder: Path, store: Store, embedder: Any
) -> None:
    report = Ingestor(store, embedder, workers=1).run([folder])
    assert sorted(Path(p).name for p in report.indexed) == sorted(TOPICS)
    for name, text in TOPICS.items():
        ((top, _),) = store.vector_search(embedder.embed_query(text), 1)
        assert store.fetch([top])[0].document == name


def test_cancel_while_embedding_writes_no_half_batch(
    folder: Path, store: Store, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "EMBED_SLICE", 1)
    cancel = threading.Event()

    def progress(p: IngestProgress) -> None:
        if p.chunks_done >= 1:
            cancel.set()

    report = Ingestor(store, embedder, workers=1).run([folder], progress=progress, cancel=cancel)
    assert report.cancelled and report.indexed == []
    assert store.documents() == [] and store.vector_search(np.ones(embedder.dim), 3) == []


def test_unchanged_files_are_skipped_without_hashing(
    folder: Path, store: Store, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    Ingestor(store, embedder, workers=1).run([folder])

    def no_hash(path: Path) -> str:
        raise AssertionError(f"{path} hashed")

    monkeypatch.setattr(ingest, "_hash", no_hash)
    again = Ingestor(store, embedder, workers=1).run([folder])
    assert len(again.skipped) == len(TOPICS) and again.indexed == []
