"""Ingestion: walk paths, skip unchanged files, parse and chunk, embed, store.

Parsing and chunking run in worker processes (pypdfium2 is not thread-safe, and pages
then parse on all cores) while the calling thread embeds and writes. Each document is
written in one transaction, so a cancel, crash or kill leaves every document either in
its old version or its new one.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine import chunking, loaders
from engine.embedding import Embedder
from engine.store import Store
from engine.types import Chunk, IngestProgress, IngestReport, UserError

ProgressFn = Callable[[IngestProgress], None]
EMBED_SLICE = 64  # chunks embedded between two cancel checks and progress reports


@dataclass
class Parsed:
    """A parsed, chunked file, or the reason it could not be read."""

    path: Path
    chunks: list[Chunk]
    pages: int
    error: str | None = None


@dataclass
class _Job:
    path: Path
    digest: str
    size: int
    mtime: float


class Ingestor:
    """Brings a collection in line with files on disk."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        chunk_tokens: int = 200,
        overlap: int = 40,
        workers: int | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        self.workers = workers or os.cpu_count() or 1

    def run(
        self,
        paths: Iterable[Path],
        collection: str = "default",
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> IngestReport:
        """Index files and folders; return what was indexed, skipped, removed and failed."""
        start = time.perf_counter()
        cancel = cancel or threading.Event()
        report = IngestReport()
        roots = [Path(p).expanduser().resolve() for p in paths]
        files = self._discover(roots, report)
        report.removed = self._drop_deleted(roots, collection)
        jobs = self._plan(files, collection, report)
        tick = _Ticker(len(files), start, progress)
        tick.files_done = len(files) - len(jobs)
        for parsed, job in self._parse_all(jobs, cancel):
            if cancel.is_set():
                break
            self._store_one(parsed, job, collection, report, tick, cancel)
        report.cancelled = cancel.is_set()
        report.seconds = time.perf_counter() - start
        return report

    def _discover(self, roots: list[Path], report: IngestReport) -> list[Path]:
        """Supported files under the roots, in a stable order; missing roots are failures."""
        found: list[Path] = []
        for root in roots:
            if root.is_dir():
                found.extend(sorted(_walk(root)))
            elif root.is_file():
                found.append(root)
            else:
                report.failed.append((str(root), "no such file or folder"))
        unsupported = [p for p in found if not loaders.is_supported(p)]
        for path in unsupported:
            if path in roots:  # named explicitly: say why it was not indexed
                kinds = ", ".join(sorted(loaders.SUPPORTED_SUFFIXES))
                report.failed.append((str(path), f"unsupported file type (Quire reads {kinds})"))
        return list(dict.fromkeys(p for p in found if loaders.is_supported(p)))

    def _drop_deleted(self, roots: list[Path], collection: str) -> list[str]:
        """Forget documents under a scanned folder whose files are gone."""
        removed: list[str] = []
        folders = [r for r in roots if r.is_dir()]
        for known in self.store.paths(collection):
            path = Path(known)
            if any(path.is_relative_to(f) for f in folders) and not path.exists():
                self.store.remove_document(collection, known)
                removed.append(known)
        return removed

    def _plan(self, files: list[Path], collection: str, report: IngestReport) -> list[_Job]:
        """Files to (re)index: new ones, and those whose content hash changed."""
        jobs: list[_Job] = []
        for path in files:
            try:
                stat = path.stat()
                known = self.store.document(collection, str(path))
                if (
                    known
                    and not known.error
                    and (known.size, known.mtime)
                    == (
                        stat.st_size,
                        stat.st_mtime,
                    )
                ):
                    report.skipped.append(str(path))  # unchanged: not even hashed
                    continue
                digest = _hash(path)
            except OSError as exc:
                report.failed.append((str(path), f"cannot read ({exc.strerror or exc})"))
                continue
            if known and not known.error and known.hash == digest:
                self.store.touch_document(collection, str(path), stat.st_size, stat.st_mtime)
                report.skipped.append(str(path))
                continue
            jobs.append(_Job(path, digest, stat.st_size, stat.st_mtime))
        return jobs

    def _parse_all(
        self, jobs: list[_Job], cancel: threading.Event
    ) -> Iterator[tuple[Parsed, _Job]]:
        """Parse jobs in worker processes (in order), or inline when there is only one."""
        args = (str(self.embedder.folder / "tokenizer.json"), self.chunk_tokens, self.overlap)
        if len(jobs) <= 1 or self.workers <= 1:
            _init_worker(args[0])
            for job in jobs:
                yield parse_file(job.path, *args[1:]), job
            return
        context = multiprocessing.get_context("spawn")  # fork is unsafe beside ORT threads
        workers = min(self.workers, len(jobs))
        with ProcessPoolExecutor(workers, context, _init_worker, (args[0],)) as pool:
            futures: list[Future[Parsed]] = [
                pool.submit(parse_file, job.path, *args[1:]) for job in jobs
            ]
            try:
                for job, future in zip(jobs, futures, strict=True):
                    yield future.result(), job
                    if cancel.is_set():
                        break
            finally:
                for future in futures:
                    future.cancel()

    def _store_one(
        self,
        parsed: Parsed,
        job: _Job,
        collection: str,
        report: IngestReport,
        tick: _Ticker,
        cancel: threading.Event,
    ) -> None:
        name = job.path.name
        tick.current = name
        if parsed.error is not None:
            self.store.record_failure(collection, str(job.path), parsed.error)
            report.failed.append((str(job.path), parsed.error))
            tick.file_done(0)
            return
        texts = [chunking.embedding_text(c, job.path.stem) for c in parsed.chunks]
        vectors: list[np.ndarray] = []
        for start in range(0, len(texts), EMBED_SLICE):
            if cancel.is_set():
                return  # nothing of this document written: its old version stays
            vectors.append(self.embedder.embed(texts[start : start + EMBED_SLICE]))
            tick.chunks(len(vectors[-1]))
        self.store.replace_document(
            collection,
            str(job.path),
            name=name,
            title=job.path.stem,
            hash=job.digest,
            size=job.size,
            mtime=job.mtime,
            pages=parsed.pages,
            chunks=parsed.chunks,
            vectors=_stack(vectors, self.embedder.dim),
        )
        report.indexed.append(str(job.path))
        report.chunks += len(parsed.chunks)
        report.pages += parsed.pages
        tick.file_done(parsed.pages)


class _Ticker:
    """Counts progress and reports it to the caller's callback."""

    def __init__(self, total: int, start: float, callback: ProgressFn | None) -> None:
        self.total, self.start, self.callback = total, start, callback
        self.files_done = self.chunks_done = self.pages_done = 0
        self.current = ""

    def chunks(self, n: int) -> None:
        self.chunks_done += n
        self._emit()

    def file_done(self, pages: int) -> None:
        self.files_done += 1
        self.pages_done += pages
        self._emit()

    def _emit(self) -> None:
        if self.callback:
            elapsed = time.perf_counter() - self.start
            self.callback(
                IngestProgress(
                    self.files_done,
                    self.total,
                    self.chunks_done,
                    self.pages_done,
                    self.current,
                    elapsed,
                )
            )


_TOKENIZER: Any = None  # a tokenizers.Tokenizer, loaded once per worker process


def _init_worker(tokenizer_json: str) -> None:
    """Load the embedder's tokenizer once per worker process, for chunk sizing."""
    global _TOKENIZER
    if _TOKENIZER is None:
        from tokenizers import Tokenizer

        _TOKENIZER = Tokenizer.from_file(tokenizer_json)
        # The bundled tokenizer.json pads and truncates to 128; counting needs neither.
        _TOKENIZER.no_truncation()
        _TOKENIZER.no_padding()


def _count_tokens(text: str) -> int:
    return len(_TOKENIZER.encode(text).ids)


def parse_file(path: Path, chunk_tokens: int, overlap: int) -> Parsed:
    """Load and chunk one file; a user-facing problem becomes `Parsed.error`."""
    try:
        segments = loaders.load(path)
        chunks = chunking.chunk_segments(
            segments, _count_tokens, chunk_tokens, overlap, title=path.stem
        )
    except UserError as exc:
        return Parsed(path, [], 0, str(exc))
    if not chunks:
        return Parsed(path, [], 0, f"{path.name}: no text to index")
    pages = len({s.page for s in segments if s.page is not None})
    return Parsed(path, chunks, pages)


def _walk(root: Path) -> Iterator[Path]:
    """Files under root, skipping hidden files and folders."""
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith("."):
                yield Path(folder) / name


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stack(parts: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
