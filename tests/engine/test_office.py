"""Word, OpenDocument, EPUB and reStructuredText files: indexed with their headings as
sections; a damaged file or a zip bomb is reported and the others are indexed."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from engine.core import Engine
from engine.ingest.loaders import load
from engine.types import UserError


def write_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Kettle care", 1)
    document.add_paragraph("Descale the kettle with vinegar for ten minutes.")
    document.add_heading("Warranty", 2)
    document.add_paragraph("The warranty lasts two years.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Model", "K-200"
    document.save(str(path))
    return path


def write_odt(path: Path) -> Path:
    from odf.opendocument import OpenDocumentText
    from odf.text import H, List, ListItem, P

    document = OpenDocumentText()
    document.text.addElement(H(outlinelevel=1, text="Bicycle care"))
    document.text.addElement(P(text="Oil the chain every 300 kilometres."))
    document.text.addElement(H(outlinelevel=2, text="Tyres"))
    items = List()
    item = ListItem()
    item.addElement(P(text="Inflate road tyres to seven bar."))
    items.addElement(item)
    document.text.addElement(items)
    document.save(str(path))
    return path


def write_epub(path: Path) -> Path:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("garden-1")
    book.set_title("Garden")
    book.set_language("en")
    chapters = []
    for n, (title, text) in enumerate(
        [("Tomatoes", "Tomatoes need six hours of sun."),
         ("Watering", "Water the zucchini every morning before nine.")], 1
    ):  # fmt: skip
        chapter = epub.EpubHtml(title=title, file_name=f"c{n}.xhtml")
        chapter.content = f"<h1>{title}</h1><p>{text}</p>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc = tuple(chapters)
    book.spine = ["nav", *chapters]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    epub.write_epub(str(path), book)
    return path


RST = """Notes
=====

Intro text.

Backups
-------

Use Borg for backups.

.. include:: /etc/passwd

.. raw:: html

   <b>raw html</b>
"""


def test_each_format_has_its_headings_as_sections(tmp_path: Path) -> None:
    docx = load(write_docx(tmp_path / "kettle.docx"))
    assert [(s.section, s.text) for s in docx] == [
        ("Kettle care", "Descale the kettle with vinegar for ten minutes."),
        ("Warranty", "The warranty lasts two years.\nModel | K-200"),
    ]
    odt = load(write_odt(tmp_path / "bike.odt"))
    assert [(s.section, s.text) for s in odt] == [
        ("Bicycle care", "Oil the chain every 300 kilometres."),
        ("Tyres", "Inflate road tyres to seven bar."),  # a list's paragraph, in order
    ]
    epub = load(write_epub(tmp_path / "garden.epub"))
    assert [s.section for s in epub] == ["Tomatoes", "Watering"]  # the spine's order
    (tmp_path / "notes.rst").write_text(RST)
    rst = load(tmp_path / "notes.rst")
    assert [(s.section, s.text) for s in rst] == [
        ("Notes", "Intro text."),
        ("Backups", "Use Borg for backups."),
    ]
    assert "root:" not in " ".join(s.text for s in rst)  # include and raw are off


def test_damaged_files_and_zip_bombs_are_reported_and_the_rest_indexed(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    write_docx(docs / "kettle.docx")
    write_odt(docs / "bike.odt")
    write_epub(docs / "garden.epub")
    (docs / "notes.rst").write_text(RST)
    whole = (docs / "kettle.docx").read_bytes()
    (docs / "cut.docx").write_bytes(whole[: len(whole) // 2])  # a truncated download
    (docs / "fake.epub").write_text("not a zip at all")
    with zipfile.ZipFile(docs / "bomb.odt", "w", zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr("content.xml", b"\0" * (400 * 1024 * 1024))  # 400 MB in ~400 KB
    with pytest.raises(UserError, match="too large to read"):
        load(docs / "bomb.odt")
    engine = Engine(tmp_path / "data")
    report = engine.ingest([docs])
    failed = {Path(p).name: why for p, why in report.failed}
    assert set(failed) == {"cut.docx", "fake.epub", "bomb.odt"}
    assert all("\n" not in why for why in failed.values())
    assert "damaged" in failed["cut.docx"] and "too large" in failed["bomb.odt"]
    assert len(report.indexed) == 4
    found = engine.search("how long do I descale the kettle with vinegar", 3)
    assert (found[0].document, found[0].section) == ("kettle.docx", "Kettle care")
    found = engine.search("zucchini watering time", 3)
    assert (found[0].document, found[0].section) == ("garden.epub", "Watering")
    engine.close()


@pytest.mark.gui
def test_the_reader_shows_a_word_file_as_text(tmp_path: Path, qtbot) -> None:
    from engine.types import SearchResult
    from ui.pdf_view import ReaderPanel

    path = write_docx(tmp_path / "kettle.docx")
    panel = ReaderPanel()
    qtbot.addWidget(panel)
    source = SearchResult(1, path.name, str(path), None, "Kettle care", 0.9,
                          "Descale the kettle with vinegar for ten minutes.")  # fmt: skip
    assert panel.open_source(source)
    text = panel.text_view.toPlainText()
    assert text.startswith("Kettle care") and "PK\x03\x04" not in text
    assert panel.text_view.extraSelections()  # the passage is marked
