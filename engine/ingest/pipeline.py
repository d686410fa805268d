"""Ingestion: walk paths, skip unchanged files, parse and chunk, embed, store.

Parsing and chunking run in worker processes (pypdfium2 is not thread-safe, and pages
then parse on all cores) while the calling thread embeds and writes. Each document is
written in one transaction, so a cancel, crash or kill leaves every document either in
its old version or its new one.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from engine.index.embedding import Embedder
from engine.index.schema import printable
from engine.index.store import Store, resolved
from engine.ingest import chunking, loaders
from engine.ingest.ocr import tesseract
from engine.ingest.progress import ProgressFn, Ticker
from engine.settings import Settings
from engine.types import Chunk, IngestReport, ScannedPDF, UserError

log = logging.getLogger(__name__)
EMBED_SLICE = 64  # chunks embedded between two cancel checks and progress reports
BEAT_SECONDS = 1.0  # progress while a worker reads a big file, and a cancel check
# Chunks gathered across documents before embedding: one length-sorted pass over many
# small documents pads less and keeps ONNX batches full (measured in docs/benchmarks.md).
EMBED_BATCH = 256
# Below this many bytes of files, parse in this process: starting two spawn workers costs
# ~0.9 CPU-s and ~1-2 s of wall time, more than parsing a few pages (docs/benchmarks.md).
INLINE_BYTES = 2 << 20
# A file still being read after this long is reported and skipped, and its worker killed,
# so that one document that sends a parser into a loop cannot stall the others: a minute,
# plus six seconds per MB (the largest manuals here parse at well over 1 MB/s).
PARSE_SECONDS = 60.0
PARSE_SECONDS_PER_MB = 6.0
OCR_PAGE_SECONDS = 30.0  # and this per page of a scan read by OCR (~1 s a page here)


# A file's parse may grow its worker's address space by this much, plus this many bytes per
# byte of the file: a 1 MB PDF whose content stream inflates to 400 MB took PDFium past
# 5.9 GB. Real files need far less: the 23 MB FreedomBox manual 30 MB, a 50 MB text file
# 400 MB (tests/e2e/test_hostile.py has the bomb).
PARSE_MEMORY = 512 << 20
PARSE_MEMORY_PER_BYTE = 16
# Files parsed in this process when they are few and small: plain text, whose parsers are
# linear (tests/e2e/test_hostile.py). Anything else may hold a bomb, and is read in a worker.
INLINE_SUFFIXES = loaders.TEXT_SUFFIXES | loaders.MARKDOWN_SUFFIXES | loaders.HTML_SUFFIXES


def parse_deadline(size: int) -> float:
    """Seconds a file of `size` bytes may take to parse in a worker."""
    return PARSE_SECONDS + PARSE_SECONDS_PER_MB * size / 1e6


def parse_memory(size: int) -> int:
    """Bytes of memory a worker may add to parse a file of `size` bytes."""
    return PARSE_MEMORY + PARSE_MEMORY_PER_BYTE * size


def too_large(path: Path, memory: int) -> str:
    """The report for a file whose parse went past its memory budget."""
    return f"{path.name}: too large to read (past its {memory >> 20} MB memory budget); skipped"


@dataclass
class Parsed:
    """A parsed, chunked file, or the reason it could not be read."""

    path: Path
    chunks: list[Chunk]
    pages: int
    error: str | None = None
    chars: int = 0  # of text, before chunking (what max_file_mb bounds for a PDF)
    notes: list[str] = field(default_factory=list)  # what libraries logged while reading
    scanned: bool = False  # a PDF with no text layer (`pages` counts its pages)


@dataclass
class _Job:
    path: Path
    digest: str
    size: int
    mtime: float
    ocr_pages: int | None = None  # a scanned PDF's pages, when it is to be read by OCR


class Ingestor:
    """Brings a collection in line with files on disk."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        chunk_tokens: int = 200,
        overlap: int = 40,
        workers: int | None = None,
        deadline: Callable[[int], float] = parse_deadline,
        parser: Callable[[Path, int, int], Parsed] | None = None,
        memory: Callable[[int], int] = parse_memory,
        max_file_mb: float = Settings.max_file_mb,
        ocr: bool = False,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        self.workers = workers or os.cpu_count() or 1
        self.deadline = deadline  # seconds allowed to parse a file of n bytes in a worker
        self.parser = parser or parse_file  # a module-level function: workers import it
        self.memory = memory  # bytes of memory a worker may add to parse a file of n bytes
        self.max_file_mb = max_file_mb  # larger text files, and PDFs with more text, fail
        self.ocr = ocr  # read PDFs with no text layer by OCR, once the other files are in

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
        roots = [resolved(p) for p in paths]
        files = self._discover(roots, report)
        report.removed = self._drop_deleted(roots, collection)
        jobs = self._plan(files, collection, report)
        tick = Ticker(len(files), start, progress)
        tick.files_done = len(files) - len(jobs)
        tick.bytes_total = sum(job.size for job in jobs)
        pending: list[tuple[Parsed, _Job]] = []
        scans: list[_Job] = []  # read by OCR when the first pass is over
        first, then = self._parse_all(jobs, cancel, tick), self._parse_all(scans, cancel, tick)
        for parsed, job in chain(first, then):
            if cancel.is_set():
                break
            if self._wants_ocr(parsed, job, report):
                scans.append(replace(job, ocr_pages=parsed.pages))
                continue
            self._vet(parsed, job)
            if parsed.error is not None:
                self._record_failure(parsed, job, collection, report, tick)
                continue
            pending.append((parsed, job))
            if sum(len(p.chunks) for p, _ in pending) >= EMBED_BATCH:
                self._embed_and_store(pending, collection, report, tick, cancel)
                pending = []
        if pending and not cancel.is_set():
            self._embed_and_store(pending, collection, report, tick, cancel)
        report.cancelled = cancel.is_set()
        report.left = tick.total - tick.files_done if report.cancelled else 0
        report.seconds = time.perf_counter() - start
        return report

    def _discover(self, roots: list[Path], report: IngestReport) -> list[Path]:
        """Supported files under the roots, in a stable order, each file once (a symlink
        and its target are one document); missing roots are failures."""
        found: list[Path] = []
        for root in roots:
            if root.is_dir():
                found.extend(sorted(_walk(root)))
            elif root.exists() or root.is_symlink():
                found.append(root)  # a file, or something _plan reports (a pipe, a loop)
            else:
                report.failed.append((str(root), "no such file or folder"))
        unsupported = [p for p in found if not loaders.is_supported(p)]
        for path in unsupported:
            if path in roots:  # named explicitly: say why it was not indexed
                kinds = ", ".join(sorted(loaders.SUPPORTED_SUFFIXES))
                report.failed.append((str(path), f"unsupported file type (Quire reads {kinds})"))
        unique: dict[Path, Path] = {}
        for path in found:
            if loaders.is_supported(path):
                unique.setdefault(resolved(path), path)
        return list(unique.values())

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
        """Files to (re)index: new ones, and those whose content hash changed. Files that
        cannot be read (a pipe, a device, a symlink loop) are failed, and kept in `docs`."""
        jobs: list[_Job] = []
        for path in files:
            try:
                info = path.stat()
                known = self.store.document(collection, str(path))
                good = known if known and not known.error else None
                if good and (good.size, good.mtime) == (info.st_size, info.st_mtime):
                    report.skipped.append(str(path))  # unchanged: not even hashed
                    continue
                if info.st_size > self.max_file_mb * 1e6 and _plain_text(path):
                    raise UserError(self._over_limit(path, info.st_size))  # not even read
                digest = _hash(path)
            except (OSError, UserError) as exc:
                reason = str(exc) if isinstance(exc, UserError) else _os_reason(exc)
                self._fail(collection, path, reason, report)
                continue
            if good and good.hash == digest:
                self.store.touch_document(collection, str(path), info.st_size, info.st_mtime)
                report.skipped.append(str(path))
                continue
            jobs.append(_Job(path, digest, info.st_size, info.st_mtime))
        return jobs

    def _vet(self, parsed: Parsed, job: _Job) -> None:
        """Log what libraries said while reading the file (for the app's log, not the
        terminal), and fail a file holding more text than max_file_mb."""
        for note in parsed.notes:
            log.info("%s: %s", printable(job.path.name), note)
        if parsed.error is None and parsed.chars > self.max_file_mb * 1e6:
            parsed.error = self._over_limit(job.path, parsed.chars, " of text")

    def _wants_ocr(self, parsed: Parsed, job: _Job, report: IngestReport) -> bool:
        """Whether to read this scanned PDF by OCR now; else, when OCR could read it, it is
        noted in the report as one (its failure says how)."""
        if not parsed.scanned or tesseract() is None:
            return False
        if self.ocr and job.ocr_pages is None:
            return True
        report.scanned.append(str(job.path))
        return False

    def _over_limit(self, path: Path, size: int, what: str = "") -> str:
        return (
            f"{path.name}: {size / 1e6:.3g} MB{what}, larger than the {self.max_file_mb:g} MB "
            "limit (max_file_mb in settings); skipped"
        )

    def _parse_all(
        self, jobs: list[_Job], cancel: threading.Event, tick: Ticker
    ) -> Iterator[tuple[Parsed, _Job]]:
        """Parse jobs in worker processes (in order), or inline when they are a little
        plain text: a PDF's memory has no bound but the worker's (see _parse_within)."""
        if not jobs:
            return
        args = (str(self.embedder.folder / "tokenizer.json"), self.chunk_tokens, self.overlap)
        small = sum(job.size for job in jobs) < INLINE_BYTES
        if small and all(_plain_text(job.path) for job in jobs):
            _init_worker(args[0])
            for job in jobs:
                yield self.parser(job.path, *args[1:]), job
            return
        left = jobs
        while left and not cancel.is_set():
            left, broken = yield from self._parse_pooled(left, args, cancel, tick)
            if broken:  # a worker died: the first file not read, or one read beside it?
                yield from self._parse_pooled(left[:1], args, cancel, tick)  # alone, it tells
                left = left[1:]

    def _parse_pooled(
        self,
        jobs: list[_Job],
        args: tuple[str, int, int],
        cancel: threading.Event,
        tick: Ticker,
    ) -> Generator[tuple[Parsed, _Job], None, tuple[list[_Job], bool]]:
        """Parse in worker processes, yielding in order. A file past its deadline is
        yielded as failed and its workers are killed; so is a file alone in a pool whose
        worker dies (out of memory). Returns the jobs still to parse (none when all were)
        and whether a worker died while several files were being read."""
        context = multiprocessing.get_context("spawn")  # fork is unsafe beside ORT threads
        workers = min(self.workers, len(jobs))
        pool = ProcessPoolExecutor(workers, context, _init_worker, (args[0], os.getpid()))
        started = pool.submit(os.getpid)  # done: a worker ran, so a break is a file's doing
        futures: list[Future[Parsed]] = [
            pool.submit(
                _parse_within, self.memory(job.size), self._parser(job), job.path, *args[1:]
            )
            for job in jobs
        ]
        done = False  # all read: else the workers still reading are killed, not waited for
        try:
            for i, (job, future) in enumerate(zip(jobs, futures, strict=True)):
                limit = self.deadline(job.size) + OCR_PAGE_SECONDS * (job.ocr_pages or 0)
                try:  # it is running: earlier ones are done
                    parsed = _wait(future, limit, cancel, partial(tick.reading, job.path.name))
                except TimeoutError:
                    reason = f"{job.path.name}: still being read after {limit:.0f} s; skipped"
                    yield Parsed(job.path, [], 0, reason), job
                    return jobs[i + 1 :], False
                except BrokenProcessPool:
                    if not started.done() or started.exception() is not None:
                        raise  # no worker ever started: not any file's fault
                    if len(jobs) > 1:
                        return jobs[i:], True
                    yield Parsed(job.path, [], 0, too_large(job.path, self.memory(job.size))), job
                    return [], False
                if parsed is None or cancel.is_set():
                    return [], False
                yield parsed, job
            done = True
            return [], False
        finally:
            for future in futures:
                future.cancel()
            if not done:
                _kill_workers(pool)
            pool.shutdown(wait=done, cancel_futures=True)

    def _parser(self, job: _Job) -> Callable[[Path, int, int], Parsed]:
        return self.parser if job.ocr_pages is None else partial(parse_file, ocr=True)

    def _record_failure(
        self, parsed: Parsed, job: _Job, collection: str, report: IngestReport, tick: Ticker
    ) -> None:
        tick.current = printable(job.path.name)
        self._fail(collection, job.path, parsed.error or "unreadable", report)
        tick.file_done(0, job.size)

    def _fail(self, collection: str, path: Path, reason: str, report: IngestReport) -> None:
        """Report a file that could not be indexed, and keep the reason in `docs`."""
        reason = printable(reason)  # it names the file, which may not be UTF-8
        self.store.record_failure(collection, str(path), reason)
        report.failed.append((str(path), reason))

    def _embed_and_store(
        self,
        pending: list[tuple[Parsed, _Job]],
        collection: str,
        report: IngestReport,
        tick: Ticker,
        cancel: threading.Event,
    ) -> None:
        """Embed the chunks of several documents slice by slice, in document order (each
        document's longest chunks first), and write each document in its own transaction
        the moment its last chunk is embedded: a cancel, a crash or a kill keeps every
        finished file and never half of one."""
        texts: list[str] = []
        owner: list[tuple[int, int]] = []  # (document, chunk) of each text, in embedding order
        for doc, (parsed, job) in enumerate(pending):
            title = printable(job.path.stem)
            own = [chunking.embedding_text(c, title) for c in parsed.chunks]
            for i in sorted(range(len(own)), key=lambda i: -len(own[i])):
                texts.append(own[i])
                owner.append((doc, i))
        vectors = [
            np.empty((len(parsed.chunks), self.embedder.dim), dtype=np.float32)
            for parsed, _ in pending
        ]
        left = [len(parsed.chunks) for parsed, _ in pending]
        for doc, count in enumerate(left):
            if count == 0:  # nothing to embed (an empty page): written at once
                self._finish(pending[doc], vectors[doc], collection, report, tick)
        for start in range(0, len(texts), EMBED_SLICE):
            if cancel.is_set():
                return
            piece = range(start, min(start + EMBED_SLICE, len(texts)))
            embedded = self.embedder.embed([texts[i] for i in piece], sort_by_length=False)
            for row, i in zip(embedded, piece, strict=True):
                doc, chunk = owner[i]
                vectors[doc][chunk] = row
                left[doc] -= 1
                if left[doc] == 0:
                    self._finish(pending[doc], vectors[doc], collection, report, tick)
            doc = owner[piece[-1]][0]
            parsed, job = pending[doc]
            share = 1 - left[doc] / len(parsed.chunks) if left[doc] else 0.0
            tick.chunks(len(piece), job.path.name, share, job.size, parsed.pages)

    def _finish(
        self,
        item: tuple[Parsed, _Job],
        vectors: np.ndarray,
        collection: str,
        report: IngestReport,
        tick: Ticker,
    ) -> None:
        """Commit one fully embedded document and count it."""
        parsed, job = item
        self._write(parsed, job, collection, vectors)
        report.indexed.append(str(job.path))
        report.chunks += len(parsed.chunks)
        report.pages += parsed.pages
        tick.current = printable(job.path.name)
        tick.file_done(parsed.pages, job.size)

    def _write(self, parsed: Parsed, job: _Job, collection: str, vectors: np.ndarray) -> None:
        self.store.replace_document(
            collection,
            str(job.path),
            name=job.path.name,
            title=job.path.stem,
            hash=job.digest,
            size=job.size,
            mtime=job.mtime,
            pages=parsed.pages,
            chunks=parsed.chunks,
            vectors=vectors,
        )


_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
_TOKENIZER: Any = None  # a tokenizers.Tokenizer, loaded once per worker process


def _init_worker(tokenizer_json: str, parent: int | None = None) -> None:
    """Load the embedder's tokenizer once per worker process, for chunk sizing.

    In a worker (`parent` given), first tie its life to the parent's: a kill -9 of an
    ingest left its spawn workers, and so the resource tracker, running.
    """
    if parent is not None:
        _end_with_parent(parent)
        # Ctrl+C reaches the whole process group: the parent stops cleanly (and kills
        # the workers); a worker's own KeyboardInterrupt only printed a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        logging.getLogger().addHandler(_NOTES)  # library warnings: kept, not printed
        logging.captureWarnings(True)
    global _TOKENIZER
    if _TOKENIZER is None:
        from tokenizers import Tokenizer

        _TOKENIZER = Tokenizer.from_file(tokenizer_json)
        # The bundled tokenizer.json pads and truncates to 128; counting needs neither.
        _TOKENIZER.no_truncation()
        _TOKENIZER.no_padding()


def _end_with_parent(parent: int) -> None:
    """Have Linux kill this process when its parent dies (PR_SET_PDEATHSIG); elsewhere
    the pool's own broken-pipe handling is all there is."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """End a pool's worker processes now (a parse that never returns holds one)."""
    kill = getattr(pool, "kill_workers", None)  # Python 3.14
    if kill is not None:
        kill()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()


def _wait(
    future: Future[Parsed], limit: float, cancel: threading.Event, beat: Callable[[], None]
) -> Parsed | None:
    """The future's result, or None once `cancel` is set; TimeoutError after `limit` s.
    Calls `beat` about every second meanwhile (progress through a big file)."""
    end = time.monotonic() + limit
    while True:
        try:
            return future.result(timeout=max(0.0, min(BEAT_SECONDS, end - time.monotonic())))
        except TimeoutError:  # concurrent.futures raises the builtin one
            if cancel.is_set():
                return None
            if time.monotonic() >= end:
                raise
            beat()


def _plain_text(path: Path) -> bool:
    """Plain text, Markdown or HTML: its size on disk is its size as text, and its parsers
    are linear (tests/e2e/test_hostile.py); a PDF's text is known only once read."""
    return path.suffix.lower() in INLINE_SUFFIXES


def _parse_within(
    memory: int, parser: Callable[[Path, int, int], Parsed], path: Path, *args: int
) -> Parsed:
    """`parser(path, *args)` in a worker whose address space may grow by `memory` bytes
    meanwhile: past that an allocation fails, and PDFium, which then aborts, takes the
    worker down with it (the parent reports the file as too large to read)."""
    _NOTES.take()
    with _address_space_limit(memory):
        try:
            parsed = parser(path, *args)
        except MemoryError:
            parsed = Parsed(path, [], 0, too_large(path, memory))
    parsed.notes = _NOTES.take()
    return parsed


class _Notes(logging.Handler):
    """What libraries log in a worker while it reads a file, sent back with the file.

    A worker has no logging set up, so pypdf's repairs ("incorrect startxref pointer(1)")
    reached the user's terminal through logging's last-resort handler; the parent logs
    them at INFO instead, which the app's log keeps and the CLI does not print.
    """

    KEEP = 20  # per file: a damaged PDF can repeat one warning a thousand times

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.messages) < self.KEEP:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):  # a library's own bad format string
                message = str(record.msg)
            self.messages.append(f"{record.name}: {message}")

    def take(self) -> list[str]:
        messages, self.messages = self.messages, []
        return messages


_NOTES = _Notes()


@contextmanager
def _address_space_limit(extra: int) -> Iterator[None]:
    """Lower RLIMIT_AS to this process's size plus `extra` bytes, then put it back; where
    there is no /proc (not Linux), the parse deadline alone bounds a file."""
    try:
        import resource

        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (ImportError, OSError, ValueError, IndexError):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = pages * resource.getpagesize() + extra
    limit = min(x for x in (limit, soft, hard) if x != resource.RLIM_INFINITY)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _count_tokens(text: str) -> int:
    return len(_TOKENIZER.encode(text).ids)


def parse_file(path: Path, chunk_tokens: int, overlap: int, ocr: bool = False) -> Parsed:
    """Load and chunk one file (a scanned PDF by OCR with `ocr`); a user-facing problem
    becomes `Parsed.error`."""
    try:
        segments = loaders.load(path, ocr)
        chunks = chunking.chunk_segments(
            segments, _count_tokens, chunk_tokens, overlap, title=printable(path.stem)
        )
    except ScannedPDF as exc:
        return Parsed(path, [], exc.pages, str(exc), scanned=True)
    except UserError as exc:
        return Parsed(path, [], 0, str(exc))
    if not chunks:
        return Parsed(path, [], 0, f"{path.name}: no text to index")
    pages = len({s.page for s in segments if s.page is not None})
    return Parsed(path, chunks, pages, chars=sum(len(s.text) for s in segments))


def _walk(root: Path) -> Iterator[Path]:
    """Files under root, skipping hidden files and folders."""
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith("."):
                yield Path(folder) / name


def _os_reason(exc: OSError) -> str:
    return f"cannot read ({exc.strerror or exc})"


def _hash(path: Path) -> str:
    """SHA-256 of a regular file's content; UserError for anything else (see open_regular)."""
    digest = hashlib.sha256()
    with loaders.open_regular(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def owners(
    documents: Sequence[Any], folders: Sequence[Path], current: str
) -> list[tuple[Path, str]]:
    """(folder, collection) for re-indexing watched folders: each into the collections that
    hold documents under it, the `current` one when none does."""
    jobs: list[tuple[Path, str]] = []
    for folder in map(Path, folders):
        held = {d.collection for d in documents if Path(d.path).is_relative_to(folder)}
        jobs.extend((folder, collection) for collection in sorted(held) or [current])
    return jobs
