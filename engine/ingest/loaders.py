"""Load a document into segments by its suffix: PDF, plain text, Markdown, HTML, Word,
OpenDocument, EPUB or reStructuredText.

Every problem with the file itself raises `UserError` with one line naming the file.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from engine.ingest.office import OFFICE_SUFFIXES, RST_SUFFIXES
from engine.types import Segment, UserError

PDF_SUFFIXES = frozenset({".pdf"})
TEXT_SUFFIXES = frozenset({".txt", ".text", ".log"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
SUPPORTED_SUFFIXES = (
    PDF_SUFFIXES | TEXT_SUFFIXES | MARKDOWN_SUFFIXES | HTML_SUFFIXES | OFFICE_SUFFIXES
) | RST_SUFFIXES

# UTF-32 first: its little-endian BOM starts with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_LIST_OR_CODE = re.compile(r"^(\s{2,}|\t|[-*+•]\s|\d{1,3}[.)]\s)")
# Codecs Python knows that no document is written in: a <meta charset> naming one is
# ignored (`undefined` always raises; punycode and idna are for host names).
_NOT_DOCUMENT_CHARSETS = frozenset(
    {"undefined", "punycode", "idna", "unicode-escape", "raw-unicode-escape", "utf-7"}
)


def is_supported(path: Path | str) -> bool:
    """Whether `load` knows this file type (by suffix, case-insensitive)."""
    return Path(path).suffix.lower() in SUPPORTED_SUFFIXES


def load(path: Path, ocr: bool = False) -> list[Segment]:
    """The segments of one document; raises UserError for anything wrong with the file
    (`ScannedPDF` for a PDF with no text layer, unless `ocr` reads it)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise UserError(f"{path.name}: unsupported file type; supported: {supported}")
    if not path.exists():
        raise UserError(f"{path.name}: file not found ({path})")
    if not path.is_file():
        raise UserError(f"{path.name}: not a regular file ({path})")
    if suffix in PDF_SUFFIXES:
        from engine.ingest.pdf import extract_pages

        segments = extract_pages(path, ocr)
    elif suffix in OFFICE_SUFFIXES:
        from engine.ingest.office import extract

        segments = extract(path)
    else:
        segments = _load_text_file(path, suffix)
    if not segments:
        raise UserError(f"{path.name}: no text found in the file")
    return segments


def _load_text_file(path: Path, suffix: str) -> list[Segment]:
    raw = read_bytes(path)
    if not raw.strip():
        raise UserError(f"{path.name}: the file is empty")
    parse: Callable[[str], list[Segment]]
    if suffix in HTML_SUFFIXES:
        from engine.ingest.html import extract_html, sniff_charset

        text = decode_text(raw, path.name, sniff_charset(raw))
        parse = extract_html
    else:
        text = decode_text(raw, path.name)
        parse = _parse_markdown if suffix in MARKDOWN_SUFFIXES else _parse_plain
        if suffix in RST_SUFFIXES:
            from engine.ingest.office import extract_rst

            parse = extract_rst
        if suffix == ".log":
            parse = _parse_lines
    try:
        segments = parse(text)
    except UserError as exc:  # the parser's own, e.g. html.ParseTimeoutError
        raise UserError(f"{path.name}: {exc}; skipped") from exc
    if not segments:
        raise UserError(f"{path.name}: no text found in the file")
    return segments


def read_bytes(path: Path) -> bytes:
    """The file's bytes, with OS errors turned into one-line UserErrors."""
    try:
        with open_regular(path) as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise UserError(f"{path.name}: file not found ({path})") from exc
    except PermissionError as exc:
        raise UserError(f"{path.name}: permission denied; check the file's permissions") from exc
    except OSError as exc:
        raise UserError(f"{path.name}: cannot read the file ({exc.strerror or exc})") from exc


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading; UserError for a pipe, device, socket or folder.

    Opened without blocking and checked on the open handle: a FIFO named `pipe.txt`
    would block `open()` forever, and `/dev/zero` behind a symlink never ends.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UserError(f"{Path(path).name}: {file_kind(mode)}, not a regular file; skipped")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words, from its `st_mode`."""
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


def decode_text(raw: bytes, name: str, declared: str | None = None) -> str:
    """Decode text: BOM, then a declared charset, UTF-16 without BOM, UTF-8, else cp1252.

    Raises UserError when the bytes look like a binary file rather than text.
    """
    text = _decode(raw, declared)
    if text is None or _looks_binary(text):
        raise UserError(f"{name}: looks like a binary file, not text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode(raw: bytes, declared: str | None) -> str | None:
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return raw[len(bom) :].decode(encoding, errors="replace")
    if b"\x00" in raw:
        utf16 = _utf16_without_bom(raw)
        return raw.decode(utf16, errors="replace") if utf16 else None
    for candidate in (_document_charset(declared), "utf-8", "cp1252"):
        if candidate:
            try:
                return raw.decode(candidate)
            except (LookupError, ValueError):  # ValueError covers every UnicodeError
                continue
    return raw.decode("latin-1")


def _document_charset(declared: str | None) -> str | None:
    """`declared` if it names a text encoding a document can use, else None."""
    if not declared:
        return None
    try:
        info = codecs.lookup(declared)
    except LookupError:
        return None
    if info.name in _NOT_DOCUMENT_CHARSETS or not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def _utf16_without_bom(raw: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' when NULs sit in every other byte (mostly-ASCII UTF-16)."""
    sample = raw[:8192]
    half = len(sample) // 2
    if half == 0:
        return None
    even = sample[0 : 2 * half : 2].count(0) / half
    odd = sample[1 : 2 * half : 2].count(0) / half
    if odd > 0.3 and even < 0.05:
        return "utf-16-le"
    if even > 0.3 and odd < 0.05:
        return "utf-16-be"
    return None


def _looks_binary(text: str) -> bool:
    sample = text[:8192]
    if not sample:
        return False
    bad = len(_CONTROL.findall(sample)) + sample.count("\ufffd")
    return bad / len(sample) > 0.05


def _parse_markdown(text: str) -> list[Segment]:
    from engine.ingest.markdown import extract_markdown

    return extract_markdown(text)


def _parse_plain(text: str) -> list[Segment]:
    body = reflow(text)
    return [Segment(text=body)] if any(ch.isalnum() for ch in body) else []


def _parse_lines(text: str) -> list[Segment]:
    body = "\n".join(line.strip() for line in text.splitlines() if line.strip())
    return [Segment(text=body)] if any(ch.isalnum() for ch in body) else []


def reflow(text: str) -> str:
    """Join hard-wrapped lines into paragraphs (one per output line).

    Blank lines end paragraphs; list items and indented lines keep their own line.
    """
    paragraphs: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if not line.strip() or _LIST_OR_CODE.match(line):
            if current:
                paragraphs.append(" ".join(current))
            current = []
        if line.strip():
            current.append(line.strip())
    if current:
        paragraphs.append(" ".join(current))
    return "\n".join(" ".join(p.split()) for p in paragraphs)
