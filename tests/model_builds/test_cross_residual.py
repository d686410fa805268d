"""model_builds/cross_residual.py: what a candidate reads, and that the residual starts at
zero (before training the quote is exactly the sentence ranker's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.reader.rank import Quote
from engine.types import SearchResult
from tests.model_builds import build_script

TEXT = (
    "Memcheck only tells you that your program is about to access memory at an illegal "
    "address. It can't stop the access from happening."
)


def source(section: str | None) -> SearchResult:
    return SearchResult(rank=1, document="mc-manual.html", path="/x/mc-manual.html", page=None,
                        section=section, score=0.5, text=TEXT)  # fmt: skip


def test_a_candidate_is_its_sentence_the_one_before_and_its_section() -> None:
    probe = build_script("cross_residual")
    second = TEXT.index("It can't")
    assert probe.candidate_text(source("4.2 Errors"), second, len(TEXT)) == (
        "It can't stop the access from happening. | before: Memcheck only tells you that "
        "your program is about to access memory at an illegal address. | section: 4.2 Errors"
    )
    # The first sentence has none before it; a passage without a section names none.
    first = probe.candidate_text(source(None), 0, second - 1)
    assert first == TEXT[: second - 1]


def test_the_untrained_residual_adds_nothing_to_the_rankers_scores(models_dir: Path) -> None:
    pytest.importorskip("torch")
    from models.bundled import reader_base

    probe = build_script("cross_residual")
    model = probe.make_model(reader_base(models_dir))
    scores = model("can memcheck stop an invalid access?", [TEXT, "Another sentence."])
    assert scores.shape == (2,)
    assert scores.abs().max().item() == 0.0


def test_a_quote_below_an_entry_head_is_widened_up_to_it() -> None:
    probe = build_script("cross_residual")
    text = (
        "The default read timeout is 900 seconds.\n\n"
        "‘--limit-rate=AMOUNT’ Limit the download speed to AMOUNT bytes per second. "
        "Amount may be in bytes or kilobytes. This is useful when you don't want Wget to "
        "consume the entire available bandwidth."
    )
    passage = SearchResult(rank=1, document="wget.html", path="/x/wget.html", page=None,
                           section="2.5 Options", score=0.5, text=text, chunk_id=7)  # fmt: skip
    start = text.index("This is useful")

    quote = Quote(chunk_id=7, start=start, end=len(text), text=text[start:], score=0.5)
    head = text.index("‘--limit")
    assert probe.from_head([passage], quote, depth=2, cap=1000) == text[head:]
    # Too far above, or over the cap: unchanged, or only the head and the quote.
    assert probe.from_head([passage], quote, depth=1, cap=1000) == quote.text
    short = probe.from_head([passage], quote, depth=2, cap=20)
    assert short == f"{text[head : text.index(' Amount')]} … {quote.text}"
