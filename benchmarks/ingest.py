"""Ingest: the pipeline's wall time against the ideal, and re-ingest of unchanged files.

Ideal = (CPU seconds of parsing+chunking alone + CPU seconds of embedding alone, each
measured on the same files in this process) / cores. The pipeline is Ingestor.run on a
fresh index with the same loaded embedder; its CPU (this process and its parse workers)
is reported too, since on a shared machine wall time also counts other people's work.

    QUIRE_MODELS_DIR=.cache/models .venv/bin/python benchmarks/ingest.py           # subset
    QUIRE_MODELS_DIR=.cache/models .venv/bin/python benchmarks/ingest.py --full    # corpus
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.index.embedding import Embedder
from engine.index.store import Store
from engine.ingest import chunking
from engine.ingest import pipeline as ingest
from engine.paths import models_dir

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
SUBSET_HTML = 30  # HTML pages in the default subset, with the 26-page camlidl PDF


def corpus_files(full: bool, root: Path = CORPUS) -> list[Path]:
    """The whole corpus, or its first PDF (camlidl, 26 pages) and first 30 HTML pages."""
    pdfs, html = sorted(root.glob("*.pdf")), sorted(root.rglob("*.html"))
    return pdfs + html if full else pdfs[:1] + html[:SUBSET_HTML]


def cpu_s(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """fn's result, wall seconds, CPU seconds (this process + reaped children)."""
    cpu0 = cpu_s() + cpu_s(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    return result, wall, cpu_s() + cpu_s(resource.RUSAGE_CHILDREN) - cpu0


def parse_alone(embedder: Embedder, files: list[Path]) -> list[str]:
    """Parse and chunk every file in this process; returns the texts to embed."""
    ingest._init_worker(str(embedder.folder / "tokenizer.json"))
    texts: list[str] = []
    for path in files:
        parsed = ingest.parse_file(path, 200, 40)
        texts += [chunking.embedding_text(c, path.stem) for c in parsed.chunks]
    return texts


def run(files: list[Path], folder: Path) -> dict[str, float]:
    embedder = Embedder(folder)
    cores = os.cpu_count() or 1
    texts, parse_wall, parse_cpu = measure(lambda: parse_alone(embedder, files))
    _, embed_wall, embed_cpu = measure(lambda: embedder.embed(texts))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "index.sqlite3", model=embedder.name, dim=embedder.dim)
        ingestor = ingest.Ingestor(store, embedder)
        report, wall, cpu = measure(lambda: ingestor.run(files))
        again, re_wall, _ = measure(lambda: ingestor.run(files))
        store.close()
    ideal = (parse_cpu + embed_cpu) / cores
    return {
        "files": len(files), "chunks": report.chunks, "pages": report.pages,
        "failed": len(report.failed), "parse_cpu_s": parse_cpu, "parse_wall_s": parse_wall,
        "embed_cpu_s": embed_cpu, "embed_wall_s": embed_wall, "ideal_s": ideal,
        "pipeline_wall_s": wall, "pipeline_cpu_s": cpu, "wall_over_ideal": wall / ideal,
        "cpu_over_parts": cpu / (parse_cpu + embed_cpu), "reingest_s": re_wall,
        "reingest_skipped": len(again.skipped), "reingest_ratio": re_wall / wall,
        "pipeline_pages_per_s": report.pages / wall,
        "pipeline_chunks_per_s": report.chunks / wall,
        "embedder_alone_chunks_per_s": len(texts) / embed_wall,
        "cores": cores, "load": os.getloadavg()[0],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the whole shared corpus")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from models.bundled import ensure_embedder

    folder = ensure_embedder(models_dir(Path(tempfile.gettempdir())))
    out = run(corpus_files(args.full, args.corpus), folder)
    out["subset"] = not args.full
    for key, value in out.items():
        print(f"{key:18s} {value:10.3f}" if isinstance(value, float) else f"{key:18s} {value}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
