"""Chunking with the real MiniLM tokenizer: budgets, segment boundaries, overlap."""

from __future__ import annotations

import importlib.util
import itertools
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from engine.ingest.chunking import chunk_segments, embedding_text, split_sentences
from engine.types import Segment

TITLE = "Quire Handbook"


@pytest.fixture(scope="module")
def count_tokens() -> Callable[[str], int]:
    """Token count of the bundled embedder's tokenizer, special tokens included."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")  # not imported: it prints
    assert spec is not None and spec.origin is not None
    zip_path = next(Path(spec.origin).parent.rglob("model.zip"))
    with zipfile.ZipFile(zip_path) as archive:
        tokenizer = Tokenizer.from_str(archive.read("tokenizer.json").decode("utf-8"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return lambda text: len(tokenizer.encode(text).ids)


def sentences(topic: str, n: int) -> str:
    return " ".join(
        f"Sentence {i} explains how the {topic} feature handles case number {i}." for i in range(n)
    )


def test_split_sentences_keeps_abbreviations() -> None:
    assert split_sentences("Use a flag, e.g. --fast. Then run it! Done? Yes.") == [
        "Use a flag, e.g. --fast.",
        "Then run it!",
        "Done?",
        "Yes.",
    ]


def test_chunks_respect_budget_including_heading(count_tokens: Callable[[str], int]) -> None:
    segments = [
        Segment(sentences("backup", 40), page=1, section="Backups and restoring your data"),
        Segment(sentences("search", 25), page=2, section=None),
    ]
    chunks = chunk_segments(segments, count_tokens, max_tokens=64, overlap=16, title=TITLE)
    assert len(chunks) > 10
    for chunk in chunks:
        assert count_tokens(embedding_text(chunk, TITLE)) <= 64
    # Greedy packing: chunks are not tiny either.
    sizes = [count_tokens(embedding_text(c, TITLE)) for c in chunks]
    assert sum(sizes) / len(sizes) > 40


def test_chunks_never_cross_segments(count_tokens: Callable[[str], int]) -> None:
    segments = [
        Segment(sentences("alpha", 12), page=1, section="Alpha"),
        Segment("Tiny page.", page=2, section="Alpha"),
        Segment(sentences("gamma", 12), page=3, section="Gamma"),
    ]
    chunks = chunk_segments(segments, count_tokens, max_tokens=80, overlap=20)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        source = {1: "alpha", 2: "Tiny", 3: "gamma"}[chunk.page or 0]
        assert source in chunk.text
        assert chunk.section == ("Gamma" if chunk.page == 3 else "Alpha")
        other = {"alpha", "gamma", "Tiny"} - {source}
        assert not any(word in chunk.text for word in other)
    assert [c.text for c in chunks if c.page == 2] == ["Tiny page."]


def test_overlap_repeats_whole_trailing_sentences(count_tokens: Callable[[str], int]) -> None:
    segment = Segment(sentences("sync", 30), page=5, section="Sync")
    chunks = chunk_segments([segment], count_tokens, max_tokens=100, overlap=30)
    assert len(chunks) >= 3
    for before, after in itertools.pairwise(chunks):
        assert repeated(before.text, after.text)  # whole sentences, about `overlap` tokens
        assert 10 <= count_tokens(repeated(before.text, after.text)) - 2 <= 30
    no_overlap = chunk_segments([segment], count_tokens, max_tokens=100, overlap=0)
    pairs = itertools.pairwise(no_overlap)
    assert all(not repeated(b.text, a.text) for b, a in pairs)
    assert len(no_overlap) < len(chunks)


def repeated(before: str, after: str) -> str:
    """The leading sentences of `after` that are also the trailing sentences of `before`."""
    head = split_sentences(after)
    for n in range(len(head), 0, -1):
        if before.endswith(" ".join(head[:n])):
            return " ".join(head[:n])
    return ""


def test_long_unit_is_split_on_words(count_tokens: Callable[[str], int]) -> None:
    words = " ".join(f"word{i}" for i in range(400))  # one "sentence" without punctuation
    huge = "x" * 3000  # one "word" longer than the budget
    chunks = chunk_segments([Segment(words), Segment(huge)], count_tokens, max_tokens=50)
    assert all(count_tokens(embedding_text(c)) <= 50 for c in chunks)
    rebuilt = " ".join(c.text for c in chunks if "word" in c.text).split()
    assert rebuilt[0] == "word0" and rebuilt[-1] == "word399"
    assert "".join(c.text for c in chunks if c.text.startswith("x")).count("x") >= 3000


def test_punctuation_only_and_paragraph_lines(count_tokens: Callable[[str], int]) -> None:
    chunks = chunk_segments(
        [Segment("... --- !!!"), Segment("First line.\nSecond line.")], count_tokens
    )
    assert [c.text for c in chunks] == ["First line.\nSecond line."]


def test_embedding_text_prefixes_heading_once() -> None:
    chunk = chunk_segments([Segment("Body text.", section="Setup")], len)[0]
    assert embedding_text(chunk, TITLE) == "Quire Handbook — Setup\nBody text."
    assert embedding_text(chunk, None) == "Setup\nBody text."
    titled = chunk_segments([Segment("4.2 Setup\nBody.", section="Setup")], len)[0]
    assert embedding_text(titled, TITLE) == "Quire Handbook\n4.2 Setup\nBody."


def test_real_manual_chunks_fast_and_within_budget(
    corpus: Path, count_tokens: Callable[[str], int]
) -> None:
    from engine.ingest.pdf import extract_pages

    segments = extract_pages(corpus / "freedombox-manual.pdf")
    start = time.perf_counter()
    chunks = chunk_segments(segments, count_tokens, max_tokens=200, overlap=40, title="FreedomBox")
    assert time.perf_counter() - start < 5
    assert max(count_tokens(embedding_text(c, "FreedomBox")) for c in chunks) <= 200
    assert {c.page for c in chunks} == {s.page for s in segments}


def test_pdf_fragments_join_their_page_neighbours_not_other_pages() -> None:
    from engine.ingest.chunking import merge_fragments

    segments = [
        Segment("Step 1", page=4, section="Backups"),  # opens its page: joins the next
        Segment("Open the Backups app and press Create to start a backup.", 4, "Creating"),
        Segment("Step 2", page=4, section="Restoring"),  # joins the previous
        Segment("Step 3", page=5, section="Restoring"),  # alone on its page: kept
        Segment("Tyres", page=None, section="Tyres"),  # not a PDF page: untouched
    ]
    merged = merge_fragments(segments)
    assert [(s.page, s.section) for s in merged] == [
        (4, "Creating"),
        (5, "Restoring"),
        (None, "Tyres"),
    ]
    assert merged[0].text.startswith("Step 1\n") and merged[0].text.endswith("\nStep 2")
