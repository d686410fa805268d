"""Plain data passed between the engine's stages and out to the CLI and GUI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Defined in the lowest layer (models imports nothing of engine); re-exported as engine's.
from models.errors import UserError as UserError


class ScannedPDF(UserError):  # noqa: N818 - public name; the UI offers OCR, no error shown
    """A PDF whose `pages` pages have no text layer: OCR may read it (engine/ingest/ocr.py)."""

    def __init__(self, message: str, pages: int = 0) -> None:
        super().__init__(message)
        self.pages = pages

    def __reduce__(self) -> tuple[type[ScannedPDF], tuple[str, int]]:
        return ScannedPDF, (str(self), self.pages)  # pickled from a parse worker intact


@dataclass(frozen=True)
class Segment:
    """A run of text that a chunk may never cross: one PDF page, or one HTML/Markdown section."""

    text: str
    page: int | None = None  # 1-based physical page of a PDF
    section: str | None = None  # nearest heading


@dataclass(frozen=True)
class Chunk:
    """A piece of a segment, sized for the embedder's window."""

    text: str
    page: int | None
    section: str | None
    ordinal: int  # position within the document


@dataclass
class SearchResult:
    """One ranked passage, as `search --json` prints it."""

    rank: int
    document: str  # file name
    path: str  # absolute path
    page: int | None
    section: str | None
    score: float  # cosine similarity to the question (what the relevance cutoff uses)
    text: str
    chunk_id: int = 0
    collection: str = ""
    relevance: float = 0.0  # the search's fused rank score, 0-1 (the order without a reader)
    rerank: float | None = None  # the reader's score (cosine), what the order follows

    def score_label(self) -> str:
        """The number to show beside the result, one that agrees with the order; answers
        saved before relevance existed have only their similarity."""
        if self.rerank is not None:
            return f"reader {self.rerank:.2f}"
        if self.relevance > 0:
            return f"relevance {self.relevance:.2f}"
        return f"similarity {self.score:.2f}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("chunk_id")
        data.pop("collection")
        data["path"], data["document"] = printable(self.path), printable(self.document)
        return data


@dataclass
class Timings:
    """Latency of one answer, in seconds."""

    retrieval_s: float = 0.0
    first_token_s: float = 0.0
    total_s: float = 0.0
    tokens: int = 0
    tokens_per_s: float = 0.0
    rerank_s: float = 0.0  # the reader reordering the candidates (part of retrieval_s)
    quote_s: float = 0.0  # the reader choosing the quote


@dataclass
class IngestReport:
    """What an ingest run did, file by file."""

    indexed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unchanged since the last run
    removed: list[str] = field(default_factory=list)  # deleted from disk since the last run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    scanned: list[str] = field(default_factory=list)  # of the failed: PDFs OCR can read
    chunks: int = 0
    pages: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    left: int = 0  # files a cancel left to do: the next run does them


@dataclass
class IngestProgress:
    """A snapshot of an ingest run, sent after every file and embedding batch."""

    files_done: int
    files_total: int
    chunks_done: int
    pages_done: int
    current: str  # file name being worked on
    elapsed_s: float
    bytes_done: int = 0  # of the files this run (re)indexes: finished files plus the
    bytes_total: int = 0  # share of the current batch's passages already embedded
    current_share: float = 0.0  # of the current file's passages embedded so far (0-1)
    reading: bool = False  # the current file is still being read, before any embedding
    bytes_per_s: float = 0.0  # over about the last minute (0: not known yet)

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left, from the recent byte rate (else the whole run's); None until
        there is a rate."""
        if self.bytes_done <= 0 or self.bytes_total <= 0 or self.elapsed_s < 1.0:
            return None
        if self.bytes_per_s > 0:
            return max(0.0, (self.bytes_total - self.bytes_done) / self.bytes_per_s)
        return max(0.0, self.elapsed_s * (self.bytes_total - self.bytes_done) / self.bytes_done)


def printable(text: str) -> str:
    """`text` with the bytes of a file name that are not UTF-8 (Python keeps them as
    surrogate escapes, which cannot be printed or stored as text) shown as U+FFFD."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


@dataclass(frozen=True)
class Status:
    """What a status bar shows: the model, the adapter, the index and its collections."""

    model: str
    adapter: str | None
    adapter_scale: float
    documents: int
    failed: int
    chunks: int
    bytes: int
    collections: list[Any]
    bundled: bool  # the bundled model answers (no model of the user's, no server)
    default_mode: str  # the mode answers start in (modes.preferred)
