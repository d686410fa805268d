"""Compare pypdf and pypdfium2 on real PDFs: speed, text quality proxies, and bookmarks.

Usage: .venv/bin/python benchmarks/pdf_text.py [FOLDER]   (default: ../shared/corpus)

Quality proxies over whitespace-separated words: the share longer than 20 characters (words
run together when inter-word spaces are lost), the mean word length, and the share of
alphabetic words found whole in the MiniLM tokenizer's vocabulary.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pypdf
import pypdfium2 as pdfium

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = REPO.parent / "shared" / "corpus"


def minilm_vocab() -> set[str]:
    """Whole-word entries of the MiniLM WordPiece vocabulary (no '##' pieces)."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")  # not imported: it prints on import
    if spec is None or spec.origin is None:
        return set()
    zip_path = next(Path(spec.origin).parent.rglob("model.zip"))
    with zipfile.ZipFile(zip_path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("tokenizer.json"))
        vocab = json.loads(archive.read(name))["model"]["vocab"]
    return {word for word in vocab if word.isalpha()}


def pypdf_pages(path: Path) -> list[str]:
    reader = pypdf.PdfReader(path)
    return [page.extract_text() or "" for page in reader.pages]


def pdfium_pages(path: Path) -> list[str]:
    doc = pdfium.PdfDocument(path)
    try:
        return [doc[i].get_textpage().get_text_range() for i in range(len(doc))]
    finally:
        doc.close()


def pypdf_outline(path: Path) -> list[tuple[int | None, str]]:
    reader = pypdf.PdfReader(path)
    out: list[tuple[int | None, str]] = []  # None: an entry that points nowhere

    def walk(items: list[Any]) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item)
            else:
                out.append((reader.get_destination_page_number(item), str(item.title)))

    walk(reader.outline)
    return out


def pdfium_outline(path: Path) -> list[tuple[int, str]]:
    doc = pdfium.PdfDocument(path)
    try:
        return [(m.get_dest().get_index(), m.get_title()) for m in doc.get_toc() if m.get_dest()]
    finally:
        doc.close()


def quality(pages: list[str], vocab: set[str]) -> dict[str, float]:
    words = " ".join(pages).split()
    alpha = [w.lower() for w in (re.sub(r"^\W+|\W+$", "", w) for w in words) if w.isalpha()]
    return {
        "words": len(words),
        "long_frac": sum(len(w) > 20 for w in words) / max(1, len(words)),
        "mean_len": sum(map(len, words)) / max(1, len(words)),
        "vocab_frac": sum(w in vocab for w in alpha) / max(1, len(alpha)),
    }


def timed(fn: Callable[[Path], list[Any]], path: Path) -> tuple[float, list[Any]]:
    start = time.perf_counter()
    result = fn(path)
    return time.perf_counter() - start, result


def report(path: Path, vocab: set[str]) -> None:
    print(f"\n{path.name}")
    rows = {}
    for name, fn in (("pypdf", pypdf_pages), ("pypdfium2", pdfium_pages)):
        seconds, pages = timed(fn, path)
        rows[name] = (seconds, quality(pages, vocab))
        q = rows[name][1]
        print(
            f"  {name:9s} {len(pages):4d} pages {seconds:7.2f} s"
            f" {len(pages) / seconds:8.1f} pages/s"
            f"  words {q['words']:7.0f}  >20 chars {q['long_frac']:.3f}"
            f"  mean len {q['mean_len']:.2f}  in vocab {q['vocab_frac']:.3f}"
        )
    (t1, q1), (t2, q2) = rows["pypdf"], rows["pypdfium2"]
    print(
        f"  ratio     speed x{t1 / t2:.1f}  words x{q2['words'] / max(1, q1['words']):.2f}"
        f"  >20 chars pypdf/pdfium {q1['long_frac'] / max(q2['long_frac'], 1e-9):.1f}"
    )
    t_out1, out1 = timed(pypdf_outline, path)
    t_out2, out2 = timed(pdfium_outline, path)
    print(
        f"  outline   {len(out1)} entries: pypdf {t_out1:.3f} s, pypdfium2 {t_out2:.3f} s,"
        f" identical: {out1 == out2}"
    )


def main(argv: list[str]) -> None:
    folder = Path(argv[1]) if len(argv) > 1 else DEFAULT_FOLDER
    vocab = minilm_vocab()
    print(f"pypdf {pypdf.__version__}, pypdfium2 {pdfium.version.PYPDFIUM_INFO}")
    print(f"vocabulary: {len(vocab)} whole words from the MiniLM tokenizer")
    for path in sorted(folder.glob("*.pdf")):
        report(path, vocab)


if __name__ == "__main__":
    main(sys.argv)
