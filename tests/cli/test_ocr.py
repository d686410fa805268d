"""`ingest --ocr` end to end: a scanned PDF is offered OCR, then read by it and searchable."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from tests.cli.test_cli import quire
from tests.factory import write_scanned_pdf


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
def test_ingest_offers_ocr_for_a_scan_and_ocr_makes_it_searchable(tmp_path: Path) -> None:
    scan = write_scanned_pdf(tmp_path / "scan.pdf", [["Penguin chicks hatch in early July."]])
    data = tmp_path / "data"
    first = quire(data, "ingest", str(scan))
    assert first.returncode == 1
    hint = "scan.pdf: no text layer (scanned?); read it with OCR: ingest --ocr "
    hint += shlex.quote(str(scan))
    assert hint in first.stderr
    second = quire(data, "ingest", "--ocr", str(scan))
    assert second.returncode == 0, second.stderr
    assert "Indexed 1 files (1 pages" in second.stderr
    found = json.loads(quire(data, "search", "when do penguin chicks hatch", "--json").stdout)
    top = found["results"][0]
    assert top["document"] == "scan.pdf" and top["page"] == 1 and "early July" in top["text"]
