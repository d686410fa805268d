"""Prompts: numbered sources fitted to the model's context window, with room for the answer."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.answer.followup import as_messages
from engine.types import SearchResult

DONT_KNOW = "The documents do not say."
# What the app says, without asking the model, when the reader finds no sentence that
# answers (engine.reader.rank): the nearest passages are still shown.
NOT_COVERED = "The documents do not seem to cover this question."

# Short on purpose: every prompt token costs time on a CPU, and the bundled grounding
# adapter was trained with exactly this text (model_builds/build_dataset.py).
RAG_SYSTEM_PROMPT = (
    "Answer from the numbered sources in one or two sentences and cite the source, like [1]. "
    f"If they do not hold the answer, reply: {DONT_KNOW}"
)
BASE_SYSTEM_PROMPT = "You are Quire, a helpful assistant. Answer concisely."

_DONT_KNOW_PATTERNS = re.compile(
    r"documents? do(?:es)? not say|do(?:es)? not seem to cover|"
    r"do(?:es)?n.t (?:know|say|contain|mention)|"
    r"not (?:mentioned|stated|found|contained|covered|provided) in|"
    r"no information|cannot (?:find|answer)|can.t (?:find|answer)|not in the (?:sources|documents)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Prompt:
    """Chat messages ready for a template, and the sources that made it in (numbered from 1)."""

    messages: list[dict[str, str]]
    sources: list[SearchResult]


def says_dont_know(answer: str) -> bool:
    """Whether an answer admits the sources do not hold it."""
    return bool(_DONT_KNOW_PATTERNS.search(answer))


def source_label(source: SearchResult) -> str:
    """`name, page 3` or `name, section "Backups"`: how a source is named to the model and user."""
    if source.page is not None:
        return f"{source.document}, page {source.page}"
    if source.section:
        return f'{source.document}, section "{source.section}"'
    return source.document


def build_prompt(
    question: str,
    sources: Sequence[SearchResult],
    count_tokens: Callable[[str], int],
    budget_tokens: int,
    system_prompt: str | None = None,
    best_last: bool = False,
    quote: tuple[int, str] | None = None,
    turns: Sequence[tuple[str, str]] = (),
) -> Prompt:
    """Number the sources and keep as many as fit in `budget_tokens`, best first.

    With `best_last` the kept sources are listed in reverse rank order, so the best one
    sits next to the question (a small model leans on the source nearest the question:
    the grounding adapter cited the last of three 41 times in 59). The system prompt
    comes first and never changes between questions, so the model's KV cache reuses it.
    A source that only partly fits is cut at a word boundary. `quote` (the index of its
    source in `sources`, the sentence) is given first, as the reader's pick, numbered as
    its source is numbered. `turns` (question, answer) come before the question as earlier
    chat turns, the oldest dropped first when the sources would not fit beside them.
    """
    with_sources = bool(sources)
    system = system_prompt or (RAG_SYSTEM_PROMPT if with_sources else BASE_SYSTEM_PROMPT)
    tail = f"Question: {question}" if with_sources else question
    remaining = budget_tokens - count_tokens(system) - count_tokens(tail) - 16
    history = list(turns)
    while history and _cost(history, count_tokens) > remaining // 2:
        history.pop(0)  # keep at least half the room for the sources
    remaining -= _cost(history, count_tokens)
    fitted: list[tuple[SearchResult, str]] = []
    for source in sources:
        header = _header(len(fitted) + 1, source)
        text = _fit(header + source.text, count_tokens, remaining)
        if text is None or not text.startswith(header):
            break
        remaining -= count_tokens(text) + 2
        fitted.append((source, text[len(header) :]))
    if best_last:
        fitted.reverse()
    kept = [source for source, _ in fitted]
    blocks = [_header(n, source) + body for n, (source, body) in enumerate(fitted, 1)]
    user = ("Sources:\n\n" + "\n\n".join(blocks) + "\n\n" + tail) if kept else tail
    number = _numbered(kept, sources[quote[0]]) if quote is not None else None
    if quote is not None and number is not None:
        user = f'Quote [{number}]: "{quote[1]}"\n\n{user}'

    if with_sources and not kept:
        user = f"Sources: (none fit)\n\n{tail}"
    messages = [{"role": "system", "content": system}, *as_messages(history)]
    messages.append({"role": "user", "content": user})
    return Prompt(messages=messages, sources=kept)


def _cost(turns: list[tuple[str, str]], count_tokens: Callable[[str], int]) -> int:
    return sum(count_tokens(q) + count_tokens(a) + 8 for q, a in turns)


def _numbered(kept: list[SearchResult], source: SearchResult) -> int | None:
    """The number `source` has in the prompt (None: it did not fit)."""
    return next((n for n, s in enumerate(kept, 1) if s is source), None)


def _header(number: int, source: SearchResult) -> str:
    return f"[{number}] {source_label(source)}\n"


def _fit(text: str, count_tokens: Callable[[str], int], budget: int) -> str | None:
    """The text, or its longest word-boundary prefix within budget; None if under 32 tokens fit."""
    if budget < 32:
        return None
    if count_tokens(text) <= budget:
        return text
    words = text.split(" ")
    lo, hi = 0, len(words)
    while lo < hi:  # binary search on the number of words that fit
        mid = (lo + hi + 1) // 2
        if count_tokens(" ".join(words[:mid]) + " …") <= budget:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo]) + " …" if lo else None
