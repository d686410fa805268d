"""The prompt builder: numbering, the context budget, and the grounding adapter's order."""

from __future__ import annotations

from engine.answer.prompting import build_prompt
from engine.types import SearchResult


def source(rank: int, words: int = 20) -> SearchResult:
    text = " ".join(f"w{rank}" for _ in range(words))
    return SearchResult(rank, f"doc{rank}.md", f"/d/doc{rank}.md", None, None, 0.5, text)


def count(text: str) -> int:
    return len(text.split())


def user_text(prompt) -> str:
    return prompt.messages[-1]["content"]


def test_sources_are_numbered_best_first() -> None:
    prompt = build_prompt("q?", [source(1), source(2), source(3)], count, 1000)
    assert [s.rank for s in prompt.sources] == [1, 2, 3]
    text = user_text(prompt)
    assert text.index("[1] doc1.md\nw1") < text.index("[2] doc2.md\nw2") < text.index("[3] doc3")
    assert text.endswith("Question: q?")


def test_best_last_lists_the_best_source_next_to_the_question() -> None:
    prompt = build_prompt("q?", [source(1), source(2), source(3)], count, 1000, best_last=True)
    assert [s.rank for s in prompt.sources] == [3, 2, 1]  # numbered as listed
    text = user_text(prompt)
    assert text.index("[1] doc3.md\nw3") < text.index("[2] doc2.md\nw2") < text.index("[3] doc1")
    assert text.endswith("w1\n\nQuestion: q?")


def test_the_budget_drops_the_worst_sources_in_either_order() -> None:
    sources = [source(1, 100), source(2, 100), source(3, 100)]
    for best_last in (False, True):
        prompt = build_prompt("q?", sources, count, 260, best_last=best_last)
        assert sorted(s.rank for s in prompt.sources) == [1, 2], best_last
        assert "w3" not in user_text(prompt)
