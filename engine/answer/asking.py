"""The ask pipeline behind `Engine.ask` and `Engine.chat`: retrieve, quote, build the
prompt, stream the model's answer; the answers given without the model (nothing relevant,
not covered); another Quire answering with its own sources.

Functions over what the engine offers them (`Answering`), so `engine.core` stays a facade.
"""

from __future__ import annotations

import threading
import time
from collections import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from engine.answer import modes
from engine.answer.echo import ECHOED, EchoWatch
from engine.answer.events import (
    Answer,
    AnswerEvent,
    AnswerFinished,
    AskOptions,
    SourcesFound,
    TokenReceived,
)
from engine.answer.followup import recent, search_query
from engine.answer.generation import Cancelled, Generator, RefusalGate
from engine.answer.llms import Llms
from engine.answer.prompting import DONT_KNOW, NOT_COVERED, build_prompt, says_dont_know
from engine.answer.remote import RemoteGenerator
from engine.reader.rank import Quote, Reader
from engine.settings import Settings
from engine.types import SearchResult, Timings

if TYPE_CHECKING:
    from engine.answer.grounding import Grounding


class Answering(Protocol):
    """What the pipeline needs of the engine (`engine.core.Engine` offers it)."""

    settings: Settings
    llms: Llms

    @property
    def remote(self) -> RemoteGenerator | None: ...

    @property
    def reader(self) -> Reader | None: ...

    def sources(
        self, question: str, k: int | None = None, collection: str | None = None
    ) -> list[SearchResult]: ...

    grounding: Grounding

    def refusal_gate(
        self, mode: str, sources: Sequence[SearchResult] = (), quote: float | None = None
    ) -> RefusalGate | None: ...


@dataclass
class _Found:
    """What retrieval and the reader gave an answer, and when it started."""

    sources: list[SearchResult]
    quote: Quote | None
    reader: Reader | None
    start: float
    retrieval_s: float
    rerank_s: float


def ask(
    engine: Answering, question: str, mode: str, opts: AskOptions, stop: threading.Event
) -> Iterator[AnswerEvent]:
    """Answer `question` in a mode, streaming events: sources, tokens, the answer."""
    wanted = modes.mode(mode)
    start = time.perf_counter()
    remote = engine.remote
    if remote is not None and wanted.retrieves and _quire_server(remote):
        engine.llms.last = None
        yield from _ask_quire(engine.settings, remote, question, mode, opts, stop, start)
        return
    sources: list[SearchResult] = []
    query = search_query(question, opts.turns)  # a follow-up with what it follows
    if wanted.retrieves:
        sources = engine.sources(query, opts.k, opts.collection)
        if not sources:  # nothing relevant: say so rather than let the model guess
            engine.llms.last = None
            yield from _nothing_relevant(question, mode, start)
            return
    retrieval_s = time.perf_counter() - start
    reader = engine.reader if wanted.retrieves else None
    rerank_s = reader.last.rerank_s if reader else 0.0
    quote = reader.quote(query, sources) if reader else None
    if reader is not None and not reader.covers(quote, engine.grounding.gates(mode)):
        engine.llms.last = None
        yield from _not_covered(question, mode, sources, start, retrieval_s, reader)
        return
    found = _Found(sources, quote, reader, start, retrieval_s, rerank_s)
    yield from _generate(engine, question, mode, opts, stop, found)


def _generate(
    engine: Answering,
    question: str,
    mode: str,
    opts: AskOptions,
    stop: threading.Event,
    found: _Found,
) -> Iterator[AnswerEvent]:
    """The model's answer from the sources found (none for base and lora)."""
    generator = engine.grounding.generator_for(mode)
    engine.llms.last = generator if isinstance(generator, Generator) else None
    max_tokens = opts.max_tokens or engine.settings.max_tokens
    prompt = build_prompt(
        question,
        found.sources,
        generator.count_tokens,
        generator.context_size - max_tokens,
        engine.settings.system_prompt,
        best_last=engine.grounding.uses_grounding(mode),  # the adapter reads the best last
        quote=_quote_index(found.sources, found.quote),
        turns=recent(opts.turns),
    )
    quote = found.quote
    if quote is not None:
        quote.source = next(
            (n for n, s in enumerate(prompt.sources, 1) if s.chunk_id == quote.chunk_id), 0
        )
    yield SourcesFound(prompt.sources, quote)
    gate = engine.refusal_gate(mode, prompt.sources, quote.score if quote else None)
    stream = generator.stream(
        prompt.messages, max_tokens, _temperature(engine.settings, opts), opts.seed,
        cancel=stop, gate=gate,
        guard=engine.grounding.uses_user_adapter(mode),
    )  # fmt: skip
    text, cancelled = yield from _tokens(stream, EchoWatch(prompt.messages))
    if quote is not None and says_dont_know(text):
        quote.nearest = True  # shown as the nearest passage: the model found no answer
    timings = _total(generator.last_timings, found.retrieval_s, found.start)
    timings.rerank_s = found.rerank_s
    timings.quote_s = found.reader.last.quote_s if found.reader else 0.0
    yield AnswerFinished(
        Answer(question, mode, text, prompt.sources, timings, cancelled,
               prompt=prompt.messages, quote=quote)
    )  # fmt: skip


def chat(
    engine: Answering,
    messages: list[dict[str, str]],
    opts: AskOptions,
    stop: threading.Event | None,
) -> Iterator[AnswerEvent]:
    """The answering model (local, no adapter, or the server) given chat messages as they
    are: no retrieval, no sources."""
    start = time.perf_counter()
    generator = engine.grounding.generator_for("base")
    engine.llms.last = generator if isinstance(generator, Generator) else None
    max_tokens = opts.max_tokens or engine.settings.max_tokens
    stream = generator.stream(
        messages, max_tokens, _temperature(engine.settings, opts), opts.seed, cancel=stop
    )
    text, cancelled = yield from _tokens(stream)
    timings = _total(generator.last_timings, 0.0, start)
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    yield AnswerFinished(
        Answer(question, "base", text, [], timings, cancelled, prompt=list(messages))
    )


def _tokens(
    stream: Iterator[str], watch: EchoWatch | None = None
) -> abc.Generator[AnswerEvent, None, tuple[str, bool]]:
    """Each piece as a `TokenReceived`; returns (the text, whether it was stopped). With
    `watch`, an answer that goes on to copy its prompt is stopped there, and one that is
    nothing but the copy says so."""
    pieces: list[str] = []
    try:
        for piece in stream:
            shown = watch.feed(piece) if watch is not None else piece
            if shown:
                pieces.append(shown)
                yield TokenReceived(shown)
            if watch is not None and watch.stopped:
                break  # leaving the loop stops the model
    except Cancelled:
        held = watch.rest() if watch is not None else ""
        return ("".join(pieces) + held).strip(), True
    finally:
        if isinstance(stream, abc.Generator):
            stream.close()
    if watch is not None and watch.echoed:
        yield TokenReceived(ECHOED)
        return ECHOED, False
    rest = watch.rest() if watch is not None else ""
    if rest:
        pieces.append(rest)
        yield TokenReceived(rest)
    return "".join(pieces).strip(), False


def _temperature(settings: Settings, opts: AskOptions) -> float:
    return settings.temperature if opts.temperature is None else opts.temperature


def _quire_server(remote: RemoteGenerator) -> bool:
    remote.resolve_model()
    return remote.is_quire


def _ask_quire(
    settings: Settings,
    remote: RemoteGenerator,
    question: str,
    mode: str,
    opts: AskOptions,
    stop: threading.Event,
    start: float,
) -> Iterator[AnswerEvent]:
    """Another Quire (`serve`) finds the sources and answers; they come back with the
    answer, as if found here."""
    sources: list[SearchResult] = []
    quote: Quote | None = None
    pieces: list[str] = []
    cancelled = False
    max_tokens = opts.max_tokens or settings.max_tokens
    try:
        events = remote.ask_quire(
            question, mode, max_tokens, _temperature(settings, opts), opts.seed, stop,
            opts.turns or (),
        )  # fmt: skip
        for kind, value in events:
            if kind == "found":
                sources, quote = value
                yield SourcesFound(sources, quote)
            else:
                pieces.append(value)
                yield TokenReceived(value)
    except Cancelled:
        cancelled = True
    timings = _total(remote.last_timings, 0.0, start)
    extra = remote.last_extra
    yield AnswerFinished(
        Answer(question, mode, "".join(pieces).strip(), sources, timings, cancelled,
               no_sources=bool(extra.get("no_sources")), quote=quote,
               not_covered=bool(extra.get("not_covered")))
    )  # fmt: skip


def _nothing_relevant(question: str, mode: str, start: float) -> Iterator[AnswerEvent]:
    """The answer when no passage passed the relevance cutoff: no model call at all."""
    yield SourcesFound([])
    elapsed = time.perf_counter() - start
    timings = Timings(retrieval_s=elapsed, first_token_s=elapsed, total_s=elapsed)
    yield TokenReceived(DONT_KNOW)
    yield AnswerFinished(Answer(question, mode, DONT_KNOW, [], timings, no_sources=True))


def _quote_index(sources: list[SearchResult], quote: Quote | None) -> tuple[int, str] | None:
    """(index of the quote's source in `sources`, its text) for the prompt."""
    if quote is None:
        return None
    n = next((i for i, s in enumerate(sources) if s.chunk_id == quote.chunk_id), None)
    return None if n is None else (n, quote.text)


def _not_covered(
    question: str,
    mode: str,
    sources: list[SearchResult],
    start: float,
    retrieval_s: float,
    reader: Reader,
) -> Iterator[AnswerEvent]:
    """The answer when the reader's best sentence is under its bar: the nearest passages
    are shown, the model is not asked."""
    yield SourcesFound(sources)
    elapsed = time.perf_counter() - start
    timings = Timings(retrieval_s=retrieval_s, first_token_s=elapsed, total_s=elapsed,
                      rerank_s=reader.last.rerank_s, quote_s=reader.last.quote_s)  # fmt: skip
    yield TokenReceived(NOT_COVERED)
    yield AnswerFinished(Answer(question, mode, NOT_COVERED, sources, timings, not_covered=True))


def _total(gen: Timings, retrieval_s: float, start: float) -> Timings:
    """Timings as the user sees them: first token and total count from the question."""
    prep_s = time.perf_counter() - start - gen.total_s  # retrieval + prompt building
    return Timings(
        retrieval_s=retrieval_s,
        first_token_s=prep_s + gen.first_token_s,
        total_s=time.perf_counter() - start,
        tokens=gen.tokens,
        tokens_per_s=gen.tokens_per_s,
    )
