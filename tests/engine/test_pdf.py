"""PDF text per page: page numbers, bookmark sections, cleaning, encryption, broken files."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pypdf
import pypdfium2
import pytest

from engine.ingest import pdf
from engine.ingest.loaders import load
from engine.ingest.pdf import extract_pages
from engine.types import UserError
from tests.factory import write_pdf

FILLER = [
    "Quire keeps every document on this computer and never sends text away.",
    "The index is rebuilt only for files whose contents changed since then.",
    "Each answer cites the document and the page where the passage was found.",
    "Large manuals are split into pages and then into short overlapping parts.",
]


def with_outline(src: Path, dst: Path, items: list[tuple[str, int]], **encrypt: str) -> Path:
    """Copy a PDF adding bookmarks (title, 0-based page) and optionally encrypting it."""
    writer = pypdf.PdfWriter(clone_from=src)
    for title, index in items:
        writer.add_outline_item(title=title, page_number=index)
    if encrypt:
        writer.encrypt(algorithm="RC4-128", **encrypt)
    with dst.open("wb") as handle:
        writer.write(handle)
    return dst


@pytest.fixture
def manual(tmp_path: Path) -> Path:
    """Four pages with a running header; page 2 is blank; page 4 starts a new chapter mid-page."""
    header = "Quire Handbook {} / 4"
    pages = [
        [header.format(1), "1 Introduction", *FILLER, "Short closing line."],
        [],
        [
            header.format(3),
            *reversed(FILLER),
            "The configuration file of the app is described in the next exam-",
            "ple.",
        ],
        [header.format(4), "Last words of the introduction.", "2 Setup", *FILLER[:2], "Done."],
    ]
    raw = write_pdf(tmp_path / "raw.pdf", pages)
    return with_outline(raw, tmp_path / "manual.pdf", [("Introduction", 0), ("Setup", 3)])


def test_pages_are_numbered_physically_and_blank_pages_skipped(manual: Path) -> None:
    segments = extract_pages(manual)
    assert sorted({s.page for s in segments}) == [1, 3, 4]
    page3 = " ".join(s.text for s in segments if s.page == 3)
    assert "The configuration file of the app" in page3
    assert "The configuration file" not in " ".join(s.text for s in segments if s.page != 3)


def test_sections_follow_bookmarks_and_split_a_page_at_its_heading(manual: Path) -> None:
    segments = extract_pages(manual)
    assert {s.section for s in segments if s.page in (1, 3)} == {"Introduction"}
    page4 = [s for s in segments if s.page == 4]
    assert [s.section for s in page4] == ["Introduction", "Setup"]
    assert "Last words of the introduction." in page4[0].text
    assert page4[1].text.startswith("2 Setup")
    assert "Done." in page4[1].text


def test_running_headers_dropped_and_hyphenated_words_joined(manual: Path) -> None:
    text = "\n".join(s.text for s in extract_pages(manual))
    assert "Quire Handbook" not in text
    assert "in the next example." in text
    # Wrapped lines of one paragraph become one line; a short line ends the paragraph.
    assert "never sends text away. The index is rebuilt" in text
    lines = text.split("\n")
    assert "1 Introduction" in lines
    assert any(line.endswith("overlapping parts. Short closing line.") for line in lines)


def test_loader_dispatches_pdf_by_suffix(manual: Path) -> None:
    assert load(manual) == extract_pages(manual)


def test_encrypted_with_empty_password_opens(manual: Path, tmp_path: Path) -> None:
    locked = with_outline(manual, tmp_path / "locked.pdf", [], user_password="", owner_password="o")
    assert pypdf.PdfReader(locked).is_encrypted
    assert "Each answer cites" in " ".join(s.text for s in extract_pages(locked))


def test_encrypted_with_password_is_a_clear_error(manual: Path, tmp_path: Path) -> None:
    locked = with_outline(manual, tmp_path / "secret.pdf", [], user_password="s3cret")
    with pytest.raises(UserError, match=r"^secret\.pdf: .*encrypted and needs a password"):
        extract_pages(locked)


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a PDF at all\n" * 20, b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog"],
    ids=["empty", "garbage", "truncated-header"],
)
def test_broken_files_raise_user_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(content)
    with pytest.raises(UserError, match=r"^broken\.pdf: ") as info:
        load(path)
    assert "\n" not in str(info.value)


def test_truncated_pdf_never_crashes(manual: Path, tmp_path: Path) -> None:
    data = manual.read_bytes()
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(data[: len(data) * 2 // 3])
    try:
        segments = extract_pages(cut)
    except UserError as exc:  # either outcome is right, which pytest.raises cannot say
        assert str(exc).startswith("cut.pdf: ")  # noqa: PT017
    else:  # PDFium repairs what it can: whatever comes back keeps real page numbers
        assert segments and all(s.page in (1, 3, 4) for s in segments)


def test_pdf_without_text_mentions_scans(tmp_path: Path) -> None:
    blank = write_pdf(tmp_path / "scan.pdf", [[], []])
    with pytest.raises(UserError, match="scanned"):
        extract_pages(blank)


def test_missing_pdf(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^nowhere\.pdf: file not found"):
        extract_pages(tmp_path / "nowhere.pdf")


def test_pypdf_fallback_when_pdfium_cannot_open(
    manual: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise pypdfium2.PdfiumError("Failed to load document", err_code=3)

    monkeypatch.setattr(pdf.pdfium, "PdfDocument", refuse)
    segments = extract_pages(manual)
    assert sorted({s.page for s in segments}) == [1, 3, 4]
    assert [s.section for s in segments if s.page == 4] == ["Introduction", "Setup"]


def test_runs_in_a_process_pool(manual: Path) -> None:
    with ProcessPoolExecutor(max_workers=1) as pool:
        assert pool.submit(extract_pages, manual).result() == extract_pages(manual)


def test_real_manual_pages_and_sections(corpus: Path) -> None:
    segments = extract_pages(corpus / "freedombox-manual.pdf")
    assert max(s.page or 0 for s in segments) <= 303
    text = "\n".join(s.text for s in segments)
    assert "FreedomBox Manual 15 / 278" not in text  # running header
    trouble = [s for s in segments if s.section == "Troubleshooting" and s.page == 40]
    assert trouble and trouble[0].text.startswith("4.2.5 Troubleshooting")
    assert "xz -d before writing it" in trouble[0].text


def repaired_pdf(path: Path) -> Path:
    """A PDF that PDFium rejects and pypdf reads after repairs it logs as warnings (junk
    before the header, so every offset is off): 'incorrect startxref pointer(1)'."""
    good = write_pdf(path.with_name("source.pdf"), [["The pump runs at noon and stops at dusk."]])
    path.write_bytes(b"junk" * 400 + good.read_bytes())  # PDFium looks 1 KB in
    good.unlink()
    return path


def test_library_warnings_go_to_the_log_not_the_terminal(
    tmp_path: Path,
    embedder: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Issue 22: pypdf's repairs reached the user as 'quire: incorrect startxref
    pointer(1)'. A worker keeps them and the ingest logs them at INFO (the app's log)."""
    from engine.index.store import Store
    from engine.ingest.pipeline import Ingestor

    bad = repaired_pdf(tmp_path / "repaired.pdf")
    caplog.set_level("INFO", logger="engine.ingest.pipeline")
    with Store(tmp_path / "index.sqlite3", model=embedder.name, dim=embedder.dim) as store:
        report = Ingestor(store, embedder, workers=1).run([bad])
    assert report.indexed == [str(bad)]
    notes = [r.getMessage() for r in caplog.records if r.name == "engine.ingest.pipeline"]
    assert "repaired.pdf: pypdf._reader: incorrect startxref pointer(1)" in notes
    assert all(r.levelname == "INFO" for r in caplog.records if r.name == "engine.ingest.pipeline")
    assert "startxref" not in capfd.readouterr().err  # the worker printed nothing
