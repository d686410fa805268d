"""Ingest progress as the user reads it: pages count up within a PDF, and the time left
holds steady instead of drifting (issue 24)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from engine.index.store import Store
from engine.ingest import pipeline as ingest
from engine.ingest.pipeline import Ingestor
from engine.ingest.progress import Ticker
from engine.types import IngestProgress
from tests.factory import write_pdf


def test_pages_count_up_within_a_pdf(
    tmp_path: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: '0 pages' until the whole PDF was stored."""
    monkeypatch.setattr(ingest, "EMBED_SLICE", 4)
    pages = [
        [
            f"Page {p} line {i}: the harbour master logs ship {p * 40 + i} at dawn."
            for i in range(40)
        ]
        for p in range(12)
    ]
    pdf = write_pdf(tmp_path / "log.pdf", pages)
    seen: list[IngestProgress] = []
    with Store(tmp_path / "index.sqlite3", model=embedder.name, dim=embedder.dim) as store:
        report = Ingestor(store, embedder, workers=1).run([pdf], progress=seen.append)
    assert report.pages == 12 and report.chunks > 8
    inside = [p.pages_done for p in seen if p.files_done == 0 and not p.reading]
    assert inside == sorted(inside) and 0 < inside[-1] < 12, inside
    assert seen[-1].pages_done == 12


def simulated_run(
    start_s: float, files: int, size: int, read_s: float, rate: float
) -> list[tuple[float, IngestProgress]]:
    """A run that waits `start_s` (models loading), then reads each file for `read_s`
    (no bytes move) and embeds it at `rate` bytes a second: (true seconds left, snapshot)
    every 5 s of embedding."""
    now = [0.0]
    seen: list[IngestProgress] = []
    tick = Ticker(files, 0.0, seen.append, clock=lambda: now[0])
    tick.bytes_total = files * size
    per_byte = (read_s + size / rate) / size  # seconds per byte, reading included
    out: list[tuple[float, IngestProgress]] = []
    while now[0] < start_s:
        tick.reading("first.pdf")
        now[0] += 1.0
    for _ in range(files):
        for _beat in range(int(read_s)):
            tick.reading("manual.pdf")
            now[0] += 1.0
        done = 0.0
        while done < size:
            now[0] += 5.0
            done = min(size, done + 5.0 * rate)
            tick.chunks(1, "manual.pdf", done / size, size)
            left = tick.bytes_total - seen[-1].bytes_done
            out.append((left * per_byte, seen[-1]))
        tick.file_done(10, size)
    return out


def test_time_left_leaves_out_the_slow_start() -> None:
    """A 1,101 s run's estimate fell from 25 to 10 minutes: the start was averaged in for
    ever. Now, a minute into the work, it is within 15% of the truth; the whole-run
    average (the old estimate) is 40% or more over it."""
    runs = simulated_run(start_s=300.0, files=1, size=800_000_000, read_s=0, rate=1e6)
    late = [(truth, snap) for truth, snap in runs if 360 < snap.elapsed_s < 700]
    assert late
    for truth, snap in late:
        assert snap.eta_s == pytest.approx(truth, rel=0.15)
        naive = snap.elapsed_s * (snap.bytes_total - snap.bytes_done) / snap.bytes_done
        assert naive > 1.4 * truth  # what the old estimate said


def test_time_left_holds_steady_while_files_are_read() -> None:
    """No bytes move while a worker reads the next file: the estimate stays near the truth
    and moves by under a tenth (or 10 s) between snapshots 5 s apart, not by minutes."""
    runs = simulated_run(start_s=5.0, files=30, size=20_000_000, read_s=10, rate=1e6)
    late = [(truth, snap) for truth, snap in runs if snap.elapsed_s > 120 and truth > 60]
    assert len(late) > 50
    etas = [snap.eta_s or 0.0 for _truth, snap in late]
    for truth, eta in zip([t for t, _ in late], etas, strict=True):
        assert eta == pytest.approx(truth, rel=0.2)
    assert all(abs(b - a) < max(10.0, 0.1 * a) for a, b in itertools.pairwise(etas))
