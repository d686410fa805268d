"""Ctrl+C on the command line: the first one stops cleanly, a second one aborts."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def on_first_ctrl_c(stop: Callable[[], None]) -> Iterator[None]:
    """The first Ctrl+C calls `stop` (a clean stop); a second one aborts as usual."""

    def on_interrupt(_signum: int, _frame: Any) -> None:
        signal.signal(signal.SIGINT, previous)
        stop()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
