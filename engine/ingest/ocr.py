"""OCR for scanned PDFs: each page rendered by pypdfium2 and read by the `tesseract` program.

Tesseract is found on PATH (Debian's `tesseract-ocr` package); Quire bundles none, so
without it a scanned PDF is reported with what to install. Pages go to tesseract as
grayscale PGM files in a private temporary folder, one subprocess per page, and a stop
request is honoured between pages. Nothing here reaches the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.types import UserError

if TYPE_CHECKING:
    import pypdfium2 as pdfium

DPI = 300  # what tesseract is trained for; 200 misreads small print
PAGE_SECONDS = 120.0  # one page that tesseract has not read by then is given up
LANGUAGE = "eng"  # the language data Debian's tesseract-ocr installs


def tesseract() -> str | None:
    """The path of the `tesseract` program, or None when it is not installed."""
    return shutil.which("tesseract")


def scanned_advice(name: str) -> str:
    """The report for a PDF with no text layer: how to read it, or what to install."""
    if tesseract() is None:
        return f"{name}: no text layer (scanned?); install tesseract-ocr to read it"
    return f"{name}: no text layer (scanned?); read it with OCR"


def read_pages(path: Path, stopped: Callable[[], bool] = lambda: False) -> list[str]:
    """The text of every page, by OCR (an empty string for a blank page).

    Stops between pages once `stopped()` is true and returns the pages read so far.
    """
    import pypdfium2  # only here: the pipeline asks `tesseract()` without loading PDFium

    program = tesseract()
    if program is None:
        raise UserError(scanned_advice(path.name))
    doc = pypdfium2.PdfDocument(path)
    try:
        with tempfile.TemporaryDirectory(prefix="quire-ocr-") as folder:
            image = Path(folder) / "page.pgm"
            texts: list[str] = []
            for index in range(len(doc)):
                if stopped():
                    break
                _write_page(doc, index, image)
                texts.append(_recognise(program, image, path.name, index + 1))
            return texts
    finally:
        doc.close()


def _write_page(doc: pdfium.PdfDocument, index: int, image: Path) -> None:
    """Render one page at DPI in grayscale and write it as a binary PGM."""
    page = doc[index]
    try:
        bitmap = page.render(scale=DPI / 72, grayscale=True)
        pixels = np.ascontiguousarray(bitmap.to_numpy()).reshape(bitmap.height, bitmap.width, -1)
    finally:
        page.close()
    gray = pixels[:, :, 0]
    header = f"P5\n{bitmap.width} {bitmap.height}\n255\n".encode("ascii")
    image.write_bytes(header + gray.tobytes())


def _recognise(program: str, image: Path, name: str, page: int) -> str:
    """Tesseract's text for one page image; UserError when it fails."""
    command = [program, str(image), "-", "-l", LANGUAGE]
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # parse workers already use every core
    try:
        done = subprocess.run(
            command, capture_output=True, timeout=PAGE_SECONDS, env=env, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"{name}: OCR of page {page} took over {PAGE_SECONDS:.0f} s") from exc
    except OSError as exc:
        raise UserError(f"{name}: cannot run tesseract ({exc.strerror or exc})") from exc
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = said[-1] if said else f"exit status {done.returncode}"
        raise UserError(f"{name}: OCR of page {page} failed (tesseract: {detail})")
    return done.stdout.decode("utf-8", "replace")
