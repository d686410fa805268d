"""Whether a generated answer repeats itself: the share of its word triples (and runs of
punctuation) already said earlier in it.

An adapter trained too long on too few examples loops ("the backup the backup the
backup…"); the Fine-tune result card warns when its before/after answers do.
"""

from __future__ import annotations

import re

GRAM = 3  # words per phrase compared
MIN_GRAMS = 8  # shorter answers are never called repetitive
REPEATS = 0.3  # this share of phrases said before, or more, is a loop (prose: under 0.1)
_TOKEN = re.compile(r"\w+|[^\w\s]")


def repeated_share(text: str, n: int = GRAM) -> float:
    """The share (0-1) of the text's n-word phrases that already appeared in it."""
    tokens = _TOKEN.findall(text.lower())
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if len(grams) < MIN_GRAMS:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    again = 0
    for gram in grams:
        if gram in seen:
            again += 1
        seen.add(gram)
    return again / len(grams)


def repeats(text: str) -> bool:
    """Whether `text` loops (see `REPEATS`)."""
    return repeated_share(text) >= REPEATS
