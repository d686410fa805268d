"""PDF text per physical page, with each page's section taken from the bookmarks.

Text and bookmarks come from pypdfium2: on real manuals it keeps the spaces between words
that pypdf drops, and it is ~50x faster (docs/pdf-text.md has the figures). pypdf is the
fallback for files PDFium cannot open; a PDF with no text layer (a scan) is read by OCR
(`ocr.py`) when asked for. `extract_pages` is a plain top-level function so that
it can run in a process pool (PDFium is not thread-safe).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium

from engine.ingest.ocr import read_pages, scanned_advice, tesseract
from engine.types import ScannedPDF, Segment, UserError

_PDFIUM_ERR_PASSWORD = 4
_BULLETS = "•◦▪‣∙·-–*"
_SHORT_LINE = 0.75  # a line shorter than this share of a full line ends its paragraph
_MARGIN_LINES = 2  # lines at the top and bottom of a page checked for running headers

Outline = list[tuple[int, str]]  # (1-based page, title) in document order


def extract_pages(path: Path, ocr: bool = False) -> list[Segment]:
    """Cleaned text of each page with text (1-based `page`), split where a bookmark starts.

    A PDF with pages but no text layer raises `ScannedPDF`, or with `ocr` (and tesseract
    installed) is read page by page by OCR.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path.name}: file not found ({path})")
    pages, outline = _read(path)
    if not pages:
        raise UserError(f"{path.name}: the PDF has no pages")
    if not any(text.strip() for text in pages):
        pages = _read_scanned(path, len(pages), ocr)
    segments = build_segments(pages, outline)
    if not segments:
        raise UserError(f"{path.name}: no readable text found in the PDF")
    return segments


def _read_scanned(path: Path, count: int, ocr: bool) -> list[str]:
    """The pages of a PDF with no text layer, by OCR when asked for and installed."""
    if not ocr or tesseract() is None:
        raise ScannedPDF(scanned_advice(path.name), count)
    pages = read_pages(path)
    if not any(text.strip() for text in pages):
        raise UserError(f"{path.name}: no text layer, and OCR found no text on its {count} pages")
    return pages


def _read(path: Path) -> tuple[list[str], Outline]:
    """Raw page texts and outline: PDFium first, pypdf when PDFium cannot open the file."""
    try:
        return _read_pdfium(path)
    except pdfium.PdfiumError as exc:
        if exc.err_code == _PDFIUM_ERR_PASSWORD:
            raise UserError(f"{path.name}: the PDF is encrypted and needs a password") from exc
    return _read_pypdf(path)


def _read_pdfium(path: Path) -> tuple[list[str], Outline]:
    doc = pdfium.PdfDocument(path)
    try:
        pages = [_pdfium_page_text(doc, i) for i in range(len(doc))]
        outline = [
            (dest.get_index() + 1, title)
            for mark in doc.get_toc()
            if (dest := mark.get_dest()) is not None
            and dest.get_index() is not None
            and (title := _clean_title(mark.get_title()))
        ]
    finally:
        doc.close()
    return pages, outline


def _pdfium_page_text(doc: pdfium.PdfDocument, index: int) -> str:
    page = doc[index]
    try:
        textpage = page.get_textpage()
        try:
            return str(textpage.get_text_range())
        finally:
            textpage.close()
    except pdfium.PdfiumError:
        return ""  # one broken page should not lose the rest of the document
    finally:
        page.close()


def _read_pypdf(path: Path) -> tuple[list[str], Outline]:
    import pypdf  # only needed for files PDFium rejects

    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UserError(f"{path.name}: the PDF is encrypted and needs a password")
        pages = [page.extract_text() or "" for page in reader.pages]
    except UserError:
        raise
    except Exception as exc:  # pypdf raises assorted built-in errors on damaged files
        raise UserError(
            f"{path.name}: cannot read this PDF; it is damaged, truncated or not a PDF"
        ) from exc
    try:
        outline = list(_pypdf_outline(reader, reader.outline))
    except Exception:  # noqa: BLE001 - a broken outline only costs the section names
        outline = []
    return pages, outline


def _pypdf_outline(reader: Any, items: Iterable[Any]) -> Iterator[tuple[int, str]]:
    for item in items:
        if isinstance(item, list):
            yield from _pypdf_outline(reader, item)
            continue
        index = reader.get_destination_page_number(item)
        title = _clean_title(str(item.title or ""))
        if index is not None and index >= 0 and title:
            yield index + 1, title


def _clean_title(title: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", title).split())


def build_segments(pages: list[str], outline: Outline) -> list[Segment]:
    """Turn raw page texts into segments: one per page, or per bookmarked part of a page."""
    page_lines = [_split_lines(text) for text in pages]
    _drop_running_lines(page_lines)
    by_page: dict[int, list[str]] = {}
    for number, title in outline:
        by_page.setdefault(number, []).append(title)
    full = _doc_full_width(page_lines)
    segments: list[Segment] = []
    section: str | None = None
    for number, lines in enumerate(page_lines, start=1):
        parts, section = _split_at_headings(lines, by_page.get(number, []), section)
        width = _full_width(lines) or full
        for part_section, part_lines in parts:
            text = join_lines(part_lines, width)
            if any(ch.isalnum() for ch in text):
                segments.append(Segment(text=text, page=number, section=part_section))
    return segments


def _split_lines(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text.replace("\ufffe", "").replace("\u00ad", ""))
    text = re.sub(r"(?:\s?\.){5,}", " ... ", text)  # table-of-contents dot leaders
    text = re.sub(r" ?\u2190-\r?\n", "", text)  # DocBook's mark for a wrapped code line
    return [" ".join(line.split()) for line in text.splitlines()]


def _margin_key(line: str) -> str:
    """A margin line with its page number (arabic or roman) taken out."""
    return " ".join(re.sub(r"\b[ivxlcdm]+\b|[\d/]+", " ", line.lower()).split())


def _drop_running_lines(page_lines: list[list[str]]) -> None:
    """Remove running headers and footers: margin lines repeated on many pages."""
    if len(page_lines) < 4:
        return
    counts: Counter[str] = Counter()
    for lines in page_lines:
        counts.update({_margin_key(line) for line in _margins(lines) if line})
    threshold = max(3, int(0.3 * len(page_lines)))
    running = {key for key, count in counts.items() if count >= threshold}
    for i, lines in enumerate(page_lines):
        kept = [line for line in lines if line]
        n = len(kept)
        page_lines[i] = [
            line
            for j, line in enumerate(kept)
            if not ((j < _MARGIN_LINES or j >= n - _MARGIN_LINES) and _margin_key(line) in running)
        ]


def _margins(lines: list[str]) -> list[str]:
    kept = [line for line in lines if line]
    return kept[:_MARGIN_LINES] + kept[-_MARGIN_LINES:]


def _split_at_headings(
    lines: list[str], titles: list[str], section: str | None
) -> tuple[list[tuple[str | None, list[str]]], str | None]:
    """Split a page where its bookmarked headings start; return the parts and the last section."""
    parts: list[tuple[str | None, list[str]]] = []
    start = 0
    for title in titles:
        at = _find_heading(lines, title, start)
        if at is None:
            section = title  # heading not found on the page: it still starts here
            continue
        parts.append((section, lines[start:at]))
        section, start = title, at
    parts.append((section, lines[start:]))
    return parts, section


def _find_heading(lines: list[str], title: str, start: int) -> int | None:
    """Index of the line holding a heading (maybe numbered: '4.3 Title'), or None."""
    want = title.casefold()
    for i in range(start, len(lines)):
        line = lines[i].casefold()
        if line == want:
            return i
        if line.endswith(want) and re.fullmatch(r"[\w.]{1,12}\.?\s", line[: -len(want)]):
            return i
    return None


def _full_width(lines: list[str]) -> int:
    """Length of a full line of running text on this page (0 when too few lines to tell)."""
    lengths = sorted(len(line) for line in lines if len(line.split()) >= 4)
    if len(lengths) < 5:
        return 0
    return lengths[int(0.9 * (len(lengths) - 1))]


def _doc_full_width(page_lines: list[list[str]]) -> int:
    widths = sorted(w for lines in page_lines if (w := _full_width(lines)))
    return widths[len(widths) // 2] if widths else 80


def join_lines(lines: list[str], full: int) -> str:
    """Join wrapped lines into paragraphs (one per output line), undoing end-of-line hyphens.

    A line well short of a full line ends its paragraph; a bullet or numbered item starts one.
    """
    paragraphs: list[str] = []
    current = ""
    for line in lines:
        if not line:
            continue
        if current and not current.strip(_BULLETS):  # a bullet alone on its line
            current = f"{current} {line}"
        elif current and _starts_item(line):
            paragraphs.append(current)
            current = line
        else:
            current = _glue(current, line) if current else line
        if len(line) < _SHORT_LINE * full and line.strip(_BULLETS):
            paragraphs.append(current)
            current = ""
    if current:
        paragraphs.append(current)
    return "\n".join(paragraphs)


def _starts_item(line: str) -> bool:
    return line[0] in "•◦▪‣" or re.match(r"\d{1,2}[.)]\s", line) is not None


def _glue(left: str, right: str) -> str:
    if len(left) > 1 and left.endswith("-") and left[-2].isalpha() and right[:1].islower():
        return left[:-1] + right
    return f"{left} {right}"
