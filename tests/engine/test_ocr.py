"""OCR of scanned PDFs: tesseract reads each page; without it the report says what to install."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from engine.ingest import ocr
from engine.ingest.pdf import extract_pages
from engine.types import ScannedPDF, UserError
from tests.factory import write_scanned_pdf

PAGES = [
    ["The lighthouse keeper writes the weather in a logbook."],
    ["Harbour fees are paid at the office beside the fish market."],
]
needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="tesseract is not installed (apt install tesseract-ocr)",
)


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    return write_scanned_pdf(tmp_path / "scan.pdf", PAGES)


@pytest.fixture
def no_tesseract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH on which no tesseract can be found."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_scan_has_no_text_layer_and_the_report_says_to_install_tesseract(
    scan: Path, no_tesseract: None
) -> None:
    for asked in (False, True):
        with pytest.raises(ScannedPDF) as info:
            extract_pages(scan, ocr=asked)
        assert (
            str(info.value)
            == "scan.pdf: no text layer (scanned?); install tesseract-ocr to read it"
        )
        assert info.value.pages == 2


@needs_tesseract
def test_scan_offers_ocr_where_tesseract_is_installed(scan: Path) -> None:
    with pytest.raises(
        ScannedPDF, match=r"^scan\.pdf: no text layer \(scanned\?\); read it with OCR$"
    ):
        extract_pages(scan)


@needs_tesseract
def test_ocr_reads_each_page_with_its_page_number(scan: Path) -> None:
    segments = extract_pages(scan, ocr=True)
    by_page = {s.page: s.text for s in segments}
    assert sorted(by_page) == [1, 2]
    assert "lighthouse keeper" in by_page[1] and "logbook" in by_page[1]
    assert "Harbour fees" in by_page[2] and "fish market" in by_page[2]


@needs_tesseract
def test_ocr_stops_between_pages(scan: Path) -> None:
    asked: list[int] = []

    def stopped() -> bool:
        asked.append(1)
        return len(asked) > 1  # stop once the first page is read

    texts = ocr.read_pages(scan, stopped)
    assert len(texts) == 1 and "lighthouse" in texts[0]


def test_a_failing_tesseract_is_one_line_naming_the_file_and_page(
    scan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "tesseract"
    broken.write_text("#!/bin/sh\necho 'Error opening data file eng.traineddata' >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(UserError) as info:
        extract_pages(scan, ocr=True)
    message = str(info.value)
    assert message.startswith("scan.pdf: OCR of page 1 failed") and "eng.traineddata" in message
    assert "\n" not in message
