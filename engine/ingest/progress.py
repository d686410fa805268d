"""Ingest progress: what the pipeline has done so far (files, pages, passages, bytes) and
a time left that does not drift.

The rate behind the time left is bytes per second averaged over about the last two minutes
(an exponential moving average) since bytes first moved: the run's overall average
(elapsed x left / done) counted the start (models loading, the first file read before
anything was embedded) for ever, and over a 1,101 s run its estimate fell from 25 minutes
to 10.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from engine.types import IngestProgress, printable

ProgressFn = Callable[[IngestProgress], None]
RATE_WINDOW_S = 120.0  # the rate follows roughly the last two minutes of work


class ByteRate:
    """Bytes per second, exponentially averaged over about `window` seconds from the
    moment bytes first moved (the wait before, models loading, is not averaged in)."""

    def __init__(self, window: float = RATE_WINDOW_S) -> None:
        self.window = window
        self._average = 0.0  # the moving average, before its correction for a short history
        self._weight = 0.0  # how much history it holds (0-1)
        self._last: tuple[float, float] | None = None  # (time, bytes done) at the last update

    @property
    def rate(self) -> float:
        """Bytes per second; 0 until bytes have moved."""
        return self._average / self._weight if self._weight > 0 else 0.0

    def update(self, now: float, done: float) -> float:
        """Note `done` bytes at time `now`; return the smoothed rate."""
        if self._last is None or (self._weight == 0 and done <= self._last[1]):
            self._last = (now, done)  # nothing moved yet: the clock starts later
            return 0.0
        then, before = self._last
        dt = now - then
        if dt <= 0:
            return self.rate
        keep = math.exp(-dt / self.window)
        self._average = keep * self._average + (1 - keep) * (done - before) / dt
        self._weight = keep * self._weight + (1 - keep)
        self._last = (now, done)
        return self.rate


class Ticker:
    """Counts an ingest's progress and reports it to the caller's callback."""

    def __init__(
        self,
        total: int,
        start: float,
        callback: ProgressFn | None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.total, self.start, self.callback, self.clock = total, start, callback, clock
        self.files_done = self.chunks_done = self.pages_done = 0
        self.bytes_done = self.bytes_total = 0
        self.partial = 0.0  # bytes' worth of the current file's passages already embedded
        self.partial_pages = 0.0  # pages' worth of them (a PDF's count rises within it)
        self.current = ""
        self.share = 0.0  # of the current file's passages embedded
        self.is_reading = False  # the current file is being read (not yet embedded)
        self.rate = ByteRate()

    def reading(self, name: str) -> None:
        """A worker is still reading `name` (said about every second while it does)."""
        self.current, self.share, self.is_reading = printable(name), 0.0, True
        self._emit()

    def chunks(self, n: int, name: str, share: float, size: int, pages: int = 0) -> None:
        """`n` more passages embedded; `share` of those of `name` (`size` bytes, `pages`
        pages) are now done."""
        self.chunks_done += n
        self.current, self.share, self.is_reading = printable(name), share, False
        self.partial, self.partial_pages = size * share, pages * share
        self._emit()

    def file_done(self, pages: int, size: int = 0) -> None:
        self.files_done += 1
        self.pages_done += pages
        self.bytes_done += size
        self.partial = self.partial_pages = self.share = 0.0
        self.is_reading = False
        self._emit()

    def snapshot(self) -> IngestProgress:
        """Where the run stands now."""
        now = self.clock()
        done = min(self.bytes_total, self.bytes_done + round(self.partial))
        return IngestProgress(
            self.files_done,
            self.total,
            self.chunks_done,
            self.pages_done + math.floor(self.partial_pages),
            self.current,
            now - self.start,
            done,
            self.bytes_total,
            self.share,
            self.is_reading,
            bytes_per_s=self.rate.update(now, done),
        )

    def _emit(self) -> None:
        if self.callback:
            self.callback(self.snapshot())
