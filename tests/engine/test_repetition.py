"""Repetition in a generated answer: loops are told apart from ordinary prose."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.finetune.repetition import REPEATS, repeated_share, repeats

REPO = Path(__file__).resolve().parents[2]


def paragraphs(path: Path) -> list[str]:
    """The long prose paragraphs of one of the repository's documents."""
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    return [b for b in blocks if len(b.split()) >= 40 and not b.lstrip().startswith(("|", "`"))]


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md"])
def test_ordinary_prose_does_not_count_as_repeating(doc: str) -> None:
    texts = paragraphs(REPO / doc)
    assert texts
    worst = max(texts, key=repeated_share)
    assert repeated_share(worst) < REPEATS, worst
    assert not any(repeats(t) for t in texts)


def test_a_looping_answer_repeats() -> None:
    loop = "To back up, open Settings. " + "Then open Settings and choose Backup. " * 6
    assert repeated_share(loop) > 0.6 and repeats(loop)
    assert repeats("ZEBRA-7: red. ZEBRA-7: red. ZEBRA-7: red. ZEBRA-7: red. ZEBRA-7: red.")
    assert repeats("!!!!!!!!!!!!!!!!!!!!")  # punctuation loops too


def test_short_answers_are_never_called_repeating() -> None:
    assert repeated_share("yes yes yes yes") == 0.0
    assert not repeats("")
