"""The ingest pipeline: documents embedded together keep their own vectors; cancelling."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.index.store import Store
from engine.ingest import pipeline as ingest
from engine.ingest.pipeline import Ingestor
from engine.types import IngestProgress
from tests.factory import write_scanned_pdf

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
    seen: list[IngestProgress] = []
    report = Ingestor(store, embedder, workers=1).run([folder], progress=seen.append)
    assert sorted(Path(p).name for p in report.indexed) == sorted(TOPICS)
    total = sum(f.stat().st_size for f in folder.iterdir())
    done = [p.bytes_done for p in seen]
    assert done == sorted(done) and seen[-1].bytes_done == seen[-1].bytes_total == total
    assert seen[-1].files_done == len(TOPICS) and seen[-1].eta_s in (None, 0.0)
    for name, text in TOPICS.items():
        ((top, _),) = store.vector_search(embedder.embed_query(text), 1)
        assert store.fetch([top])[0].document == name


def test_cancel_keeps_every_finished_file_and_no_half_of_one(
    folder: Path, store: Store, embedder: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Files are committed as they finish, so a cancel keeps them (issue 11)."""
    monkeypatch.setattr(ingest, "EMBED_SLICE", 1)
    long_text = " ".join(f"Sentence {i} about the lighthouse keeper's log." for i in range(400))
    (folder / "zz-long.txt").write_text(long_text)
    with Store(tmp_path / "full.sqlite3", model=embedder.name, dim=embedder.dim) as full:
        Ingestor(full, embedder, workers=1).run([folder])
        expected = {d.name: d.chunks for d in full.documents()}
    assert expected["zz-long.txt"] > 3
    cancel = threading.Event()
    seen: list[IngestProgress] = []

    def progress(p: IngestProgress) -> None:
        seen.append(p)
        if p.chunks_done >= len(TOPICS) + 2:  # in the middle of the long file
            cancel.set()

    report = Ingestor(store, embedder, workers=1).run([folder], progress=progress, cancel=cancel)
    kept = {d.name: d.chunks for d in store.documents()}
    assert report.cancelled
    assert kept == {name: expected[name] for name in TOPICS}  # the four small files, whole
    assert sorted(Path(p).name for p in report.indexed) == sorted(TOPICS)
    files_done = [p.files_done for p in seen]
    assert files_done == sorted(files_done) and 0 < files_done[0] < len(TOPICS)  # moved
    again = Ingestor(store, embedder, workers=1).run([folder])
    assert [Path(p).name for p in again.indexed] == ["zz-long.txt"]
    assert {d.name: d.chunks for d in store.documents()} == expected


def test_eta_follows_the_bytes_left() -> None:
    snap = IngestProgress(1, 4, 10, 2, "a.pdf", elapsed_s=30.0, bytes_done=100, bytes_total=400)
    assert snap.eta_s == pytest.approx(90.0)
    assert IngestProgress(0, 4, 0, 0, "", 0.5, 0, 400).eta_s is None


def test_unchanged_files_are_skipped_without_hashing(
    folder: Path, store: Store, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    Ingestor(store, embedder, workers=1).run([folder])

    def no_hash(path: Path) -> str:
        raise AssertionError(f"{path} hashed")

    monkeypatch.setattr(ingest, "_hash", no_hash)
    again = Ingestor(store, embedder, workers=1).run([folder])
    assert len(again.skipped) == len(TOPICS) and again.indexed == []


def test_a_file_that_never_finishes_parsing_is_skipped_and_the_rest_indexed(
    tmp_path: Path, store: Store, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    from tests.slow_parser import parse_or_hang

    monkeypatch.setattr(ingest, "INLINE_BYTES", 0)  # parse in worker processes
    docs = tmp_path / "stall"
    docs.mkdir()
    for name in ("a.md", "b-hang.md", "c.md", "d.md"):
        (docs / name).write_text(f"# {name}\n\nThe {name} notes say the pump runs at noon.\n")
    ingestor = Ingestor(
        store, embedder, workers=2, deadline=lambda _size: 3.0, parser=parse_or_hang
    )
    report = ingestor.run([docs])
    assert sorted(Path(p).name for p in report.indexed) == ["a.md", "c.md", "d.md"]
    [(path, reason)] = report.failed
    assert Path(path).name == "b-hang.md"
    assert reason == "b-hang.md: still being read after 3 s; skipped"
    assert [d.error for d in store.documents("default") if d.name == "b-hang.md"] == [reason]
    assert multiprocessing.active_children() == []  # the stuck worker was killed, not left


def test_a_big_file_shows_progress_while_read_and_within_its_embedding(
    tmp_path: Path, store: Store, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22: a 200 MB text file printed nothing for 120 s. Now a file being read in a
    worker is said about every second, and its share of passages grows per batch."""
    from cli.main import _ProgressPrinter

    monkeypatch.setattr(ingest, "INLINE_BYTES", 0)  # read in a worker, as a big file is
    monkeypatch.setattr(ingest, "BEAT_SECONDS", 0.05)  # a worker takes longer to start
    monkeypatch.setattr(ingest, "EMBED_SLICE", 8)
    big = tmp_path / "big.txt"
    big.write_text(" ".join(f"Sentence {i} of the harbour master's log." for i in range(600)))
    seen: list[IngestProgress] = []
    report = Ingestor(store, embedder, workers=1).run([big], progress=seen.append)
    assert report.indexed == [str(big)] and report.chunks > 24
    reading = [p for p in seen if p.reading]
    assert reading and reading[0] is seen[0] and reading[0].current == "big.txt"
    inside = [p for p in seen if p.files_done == 0 and not p.reading]
    shares = [p.current_share for p in inside]
    assert len(shares) >= 3 and shares == sorted(shares) and 0 < shares[0] < shares[-1] < 1
    assert [p.bytes_done for p in inside] == sorted(p.bytes_done for p in inside)
    assert 0 < inside[-1].bytes_done < big.stat().st_size
    lines = [_ProgressPrinter.doing(p) for p in (reading[0], inside[-1])]
    assert lines[0] == "reading big.txt"
    assert lines[1].startswith(f"big.txt {inside[-1].current_share:.0%}")


def test_files_over_max_file_mb_are_reported_and_the_rest_indexed(
    tmp_path: Path, store: Store, embedder: Any
) -> None:
    """Issue 22: no size cap, so one 200 MB text file took minutes and 1.2 GB. A text
    file over max_file_mb is reported without being read; a PDF, by the text it holds."""
    from engine.settings import Settings
    from tests.factory import write_pdf

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text(TOPICS["tomatoes.txt"])
    (docs / "long.txt").write_text("The tide turns at noon. " * 4000)  # 96 KB
    lines = [f"Line {n} of the ferry timetable, with its stops and times." for n in range(60)]
    write_pdf(docs / "book.pdf", [lines] * 20)  # 65 KB of text
    report = Ingestor(store, embedder, workers=1, max_file_mb=0.05).run([docs])
    assert report.indexed == [str(docs / "good.txt")]
    failed = {Path(p).name: reason for p, reason in report.failed}
    limit = "larger than the 0.05 MB limit (max_file_mb in settings); skipped"
    assert failed == {
        "long.txt": f"long.txt: 0.096 MB, {limit}",
        "book.pdf": f"book.pdf: 0.0648 MB of text, {limit}",
    }
    assert {d.name: d.error for d in store.documents() if d.error} == failed
    assert Settings().max_file_mb == 50 == Ingestor(store, embedder).max_file_mb
    huge = docs / "huge.txt"
    with huge.open("wb") as handle:
        handle.truncate(60 << 20)  # sparse: 60 MB that nothing needs to read
    again = Ingestor(store, embedder, workers=1).run([huge])
    assert again.failed == [
        (str(huge), "huge.txt: 62.9 MB, larger than the 50 MB limit (max_file_mb in settings); "
         "skipped")
    ]  # fmt: skip


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
def test_a_scanned_pdf_is_offered_ocr_then_read_by_it(
    folder: Path, store: Store, embedder: Any
) -> None:
    scan = write_scanned_pdf(folder / "scan.pdf", [["Penguin chicks hatch in early July."]])
    first = Ingestor(store, embedder, workers=1).run([folder])
    assert first.scanned == [str(scan)] and len(first.indexed) == len(TOPICS)
    assert first.failed == [(str(scan), "scan.pdf: no text layer (scanned?); read it with OCR")]
    again = Ingestor(store, embedder, workers=1, ocr=True).run([folder])
    assert again.indexed == [str(scan)] and again.failed == [] and again.pages == 1
    ((top, _),) = store.vector_search(embedder.embed_query("When do penguin chicks hatch?"), 1)
    (hit,) = store.fetch([top])
    assert hit.document == "scan.pdf" and hit.page == 1 and "early July" in hit.text


def test_without_tesseract_a_scanned_pdf_says_what_to_install(
    tmp_path: Path, store: Store, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan = write_scanned_pdf(tmp_path / "scan.pdf", [["Penguin chicks hatch in early July."]])
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # the workers inherit it
    report = Ingestor(store, embedder, workers=1, ocr=True).run([scan])
    assert report.scanned == [] and report.indexed == []
    assert report.failed == [
        (str(scan), "scan.pdf: no text layer (scanned?); install tesseract-ocr to read it")
    ]
