"""What an answer streams and ends with: the events of `Engine.ask` (sources, tokens, the
finished `Answer`) and the per-question `AskOptions`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.answer.followup import Turn
from engine.reader.rank import Quote
from engine.types import SearchResult, Timings


@dataclass
class Answer:
    """A finished (or stopped) answer with its sources and timings."""

    question: str
    mode: str
    answer: str
    sources: list[SearchResult]
    timings: Timings
    cancelled: bool = False
    no_sources: bool = False  # nothing in the documents was relevant enough to offer
    prompt: list[dict[str, str]] = field(default_factory=list)  # the chat messages given
    quote: Quote | None = None  # the reader's sentence that answers, shown first
    not_covered: bool = False  # the reader found no sentence that answers: no generation

    def to_json(self) -> dict[str, Any]:
        return {
            "quote": self.quote.to_json() if self.quote else None,
            "not_covered": self.not_covered,
            "question": self.question,
            "mode": self.mode,
            "answer": self.answer,
            "sources": [s.to_json() for s in self.sources],
            "timings": vars(self.timings).copy(),
            "cancelled": self.cancelled,
            "no_sources": self.no_sources,
        }


@dataclass
class SourcesFound:
    """Retrieval is done: these numbered sources go into the prompt, and the reader's
    quote (None: no reader, or it found nothing that answers) opens the answer."""

    sources: list[SearchResult]
    quote: Quote | None = None


@dataclass
class TokenReceived:
    text: str


@dataclass
class AnswerFinished:
    answer: Answer


AnswerEvent = SourcesFound | TokenReceived | AnswerFinished


@dataclass
class AskOptions:
    """Per-question overrides of the settings; `None` means the setting's value. (A stop
    is not an option: every long engine call takes it as its keyword `stop`.)"""

    k: int | None = None
    collection: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = 0
    turns: list[Turn] | None = None  # earlier (question, answer) turns: this is a follow-up
