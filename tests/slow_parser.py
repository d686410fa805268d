"""A parser that never finishes on files named *hang*: the ingest watchdog's test input.

Its own small module, because spawn workers import the module of the function they run.
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.ingest.pipeline import Parsed, parse_file


def parse_or_hang(path: Path, chunk_tokens: int, overlap: int) -> Parsed:
    if "hang" in path.name:
        time.sleep(300)  # far past the test's deadline: only the watchdog ends it
    return parse_file(path, chunk_tokens, overlap)
