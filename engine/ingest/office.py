"""Word (.docx), OpenDocument (.odt), EPUB and reStructuredText files as segments, one per
section, named by the heading above it (as HTML and Markdown are).

Each format is read by a library made for it: python-docx, odfpy, EbookLib (its XHTML
pages then go through Quire's HTML reader), docutils. The first three are zip files, so
a file is checked before it is opened: a damaged archive, or one that would inflate past
MAX_UNPACKED (a zip bomb), is one line naming the file, and the other files are indexed.
reStructuredText is parsed with its file-reading directives (`include`, `raw`) off: a
document never makes Quire read another file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from engine.types import Segment, UserError

OFFICE_SUFFIXES = frozenset({".docx", ".odt", ".epub"})
RST_SUFFIXES = frozenset({".rst", ".rest"})
MAX_UNPACKED = 300 * 1024 * 1024  # bytes an archive may inflate to
MAX_RATIO = 200  # and no member may inflate more than this (text compresses ~5-10x)


def extract(path: Path) -> list[Segment]:
    """The segments of a .docx, .odt or .epub file; UserError for a damaged one."""
    suffix = path.suffix.lower()
    check_archive(path)
    try:
        if suffix == ".docx":
            return _sections(_docx_blocks(path))
        if suffix == ".odt":
            return _sections(_odt_blocks(path))
        return _epub_segments(path)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file: any parser failure is its own
        kind = {".docx": "Word", ".odt": "OpenDocument", ".epub": "EPUB"}[suffix]
        raise UserError(f"{path.name}: damaged or not a {kind} file ({_why(exc)})") from None


def check_archive(path: Path) -> None:
    """A zip file that is whole and small enough once unpacked."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"{path.name}: damaged or not a {path.suffix[1:]} file ({exc})") from None
    unpacked = sum(m.file_size for m in members)
    bomb = any(m.file_size > MAX_RATIO * max(m.compress_size, 1024) for m in members)
    if unpacked > MAX_UNPACKED or bomb:
        raise UserError(
            f"{path.name}: would unpack to {unpacked / 1e6:,.0f} MB; too large to read "
            "(a damaged file or a zip bomb)"
        )


def extract_rst(text: str) -> list[Segment]:
    """reStructuredText by its sections; its directives may not read files or raw HTML."""
    from docutils import nodes
    from docutils.core import publish_doctree

    settings = {
        "file_insertion_enabled": False, "raw_enabled": False, "report_level": 5,
        "halt_level": 5, "warning_stream": False, "input_encoding": "unicode",
    }  # fmt: skip
    try:
        tree = publish_doctree(text, settings_overrides=settings)
    except Exception as exc:  # noqa: BLE001 - docutils' own failures: the text is broken
        raise UserError(f"not valid reStructuredText ({_why(exc)})") from None
    blocks: list[tuple[str, str]] = []
    title = tree.get("title")
    if title:
        blocks.append(("heading", str(title)))

    def walk(node: Any) -> None:
        for child in node.children:
            if isinstance(child, nodes.section):
                heading = child.next_node(nodes.title)
                blocks.append(("heading", heading.astext() if heading else ""))
                walk(child)
            elif isinstance(child, (nodes.title, nodes.comment, nodes.system_message)):
                continue
            elif isinstance(child, nodes.Element):
                blocks.append(("text", child.astext()))

    walk(tree)
    return _sections(blocks)


# -- the formats ----------------------------------------------------------------------


def _docx_blocks(path: Path) -> Iterator[tuple[str, str]]:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = docx.Document(str(path))
    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = Paragraph(child, document)
            style = (paragraph.style.name if paragraph.style is not None else "") or ""
            kind = "heading" if style.startswith(("Heading", "Title")) else "text"
            yield kind, paragraph.text
        elif tag == "tbl":
            table = Table(child, document)
            for row in table.rows:
                yield "text", " | ".join(cell.text.strip() for cell in row.cells)


def _odt_blocks(path: Path) -> Iterator[tuple[str, str]]:
    from odf import teletype
    from odf.opendocument import load

    document = load(str(path))
    for node in _odt_walk(document.text):
        qname = getattr(node, "qname", ("", ""))[1]
        if qname == "h":
            yield "heading", teletype.extractText(node)
        elif qname == "p":
            yield "text", teletype.extractText(node)


def _odt_walk(node: Any) -> Iterator[Any]:
    """Headings and paragraphs in document order (lists and tables hold paragraphs too)."""
    for child in node.childNodes:
        qname = getattr(child, "qname", ("", ""))[1]
        if qname in ("h", "p"):
            yield child
        elif getattr(child, "childNodes", None):
            yield from _odt_walk(child)


def _epub_segments(path: Path) -> list[Segment]:
    import ebooklib
    from ebooklib import epub

    from engine.ingest.html import extract_html

    book = epub.read_epub(str(path), options={"ignore_ncx": True})
    by_id = {item.get_id(): item for item in book.get_items_of_type(ebooklib.ITEM_DOCUMENT)}
    order = [by_id[idref] for idref, _ in book.spine if idref in by_id]
    order += [item for item in by_id.values() if item not in order]
    segments: list[Segment] = []
    for item in order:
        html = item.get_content().decode("utf-8", errors="replace")
        segments += extract_html(html)
    return segments


# -- shared -------------------------------------------------------------------------


def _sections(blocks: Iterable[tuple[str, str]]) -> list[Segment]:
    """("heading" | "text", text) blocks in order -> one segment per section."""
    segments: list[Segment] = []
    section: str | None = None
    lines: list[str] = []

    def close() -> None:
        text = "\n".join(line for line in lines if line.strip()).strip()
        if text:
            segments.append(Segment(text=text, section=section))
        lines.clear()

    for kind, value in blocks:
        value = " ".join(value.split()) if kind == "heading" else value.strip()
        if kind == "heading":
            close()
            section = value or section
        elif value:
            lines.append(value)
    close()
    return segments


def _why(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0][:160]
