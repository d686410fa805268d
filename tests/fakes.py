"""A fake LLM for the fast lane: `FakeGenerator`, a real subclass of the engine's
`Generator` that writes scripted text instead of running a model.

It keeps the contract the engine and the window rely on: a GGUF path that is no GGUF
file is refused with the same one line, adapters are checked against the model, tokens
stream one by one with real `Timings`, and the request's stop event ends the answer
with `Cancelled`, also before it starts. It is installed by the `fake_llm` fixture
(tests/conftest.py) in the place where the engine loads its models (`Llms`), so GUI
answer tests run in seconds; a few tests keep the real Gemma (marked `slow`).
Like simonw/llm's `MockModel`: queued replies first, then a default.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from engine.answer import generation
from engine.answer.generation import Cancelled, Generator, RefusalGate
from engine.types import Timings
from models.lora import check_compatible

#: What the fake says when no reply is queued: it rambles on to the token limit, like
#: the small base model does, so an answer is long enough to stop.
DEFAULT_REPLY = "The answer is in the sources [1]. A fake model says so, the same way every time. "
TOKEN_S = 0.005  # the pause before each token: about 200 tokens/s, three times Gemma's
_TOKEN = re.compile(r"\s*\S+")


class FakeGenerator(Generator):
    """A loaded "model" that streams scripted replies; see the module docstring.

    Class-level state (`replies`, `token_s`, `refusal_odds`, `instances`) is what the
    `fake_llm` fixture sets and resets: the engine builds its generators itself, on
    its own thread.
    """

    replies: ClassVar[deque[str]] = deque()  # said in turn, one per answer; then DEFAULT_REPLY
    token_s: float = TOKEN_S
    refusal_odds: float = 0.0  # a grounding gate's first-token odds: below it, answer
    instances: ClassVar[list[FakeGenerator]] = []

    def __init__(
        self,
        model_path: Path,
        context_size: int = 4096,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        # Deliberately not Generator.__init__: that loads the weights with llama.cpp.
        generation._check_gguf(Path(model_path))  # the real check: missing, or no GGUF
        self.model_path = Path(model_path)
        self.fixed_threads = threads
        self.threads = threads or 1
        self._context_size = context_size
        self.last_timings = Timings()
        self.last_refusal_odds: float | None = None
        self._request_stop: threading.Event | None = None
        self.active: tuple[Path, float] | None = None  # (adapter, scale), as AdapterSet's
        self.prompts: list[list[dict[str, str]]] = []  # the messages of every answer
        self.closed = False
        FakeGenerator.instances.append(self)

    @property
    def context_size(self) -> int:
        return self._context_size

    @property
    def template_kind(self) -> str:
        return "plain"

    def use_adapter(self, path: Path | None, scale: float = 1.0) -> None:
        if path is not None:
            check_compatible(Path(path), self.model_path)  # what AdapterSet.load checks
        self.active = None if path is None else (Path(path).resolve(), float(scale))

    def count_tokens(self, text: str) -> int:
        return len(_TOKEN.findall(text))

    def format(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        text = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages)
        return text + "Assistant:", ["\nUser:"]

    def stream(
        self,
        messages: list[dict[str, str]],
        max_tokens: int = 384,
        temperature: float = 0.2,
        seed: int | None = None,
        cancel: threading.Event | None = None,
        gate: RefusalGate | None = None,
        guard: bool = False,
    ) -> Iterator[str]:
        """Yield the next reply token by token (a token: a word with its leading space),
        at most `max_tokens`; `Cancelled` once `cancel` is set, as the real one."""
        self._check_open()
        self.prompts.append(messages)
        stop = self._request_stop = cancel or threading.Event()
        try:
            if stop.is_set():
                raise Cancelled()
            yield from self._run_fake(self._reply(gate), max_tokens, stop)
        finally:
            self._request_stop = None

    def _reply(self, gate: RefusalGate | None) -> Iterator[str]:
        self.last_refusal_odds = None
        if gate is not None:
            self.last_refusal_odds = self.refusal_odds
            if self.refusal_odds >= gate.threshold:
                return iter(_TOKEN.findall(gate.sentence))
        if self.replies:
            return iter(_TOKEN.findall(self.replies.popleft()))
        return _rambling()

    def _run_fake(
        self, tokens: Iterator[str], max_tokens: int, stop: threading.Event
    ) -> Iterator[str]:
        timings = self.last_timings = Timings()
        start = time.perf_counter()
        try:
            for _, token in zip(range(max_tokens), tokens, strict=False):
                if stop.wait(self.token_s):  # a stop wakes it at once, as llama's abort
                    raise Cancelled()
                now = time.perf_counter() - start
                if timings.tokens == 0:
                    timings.first_token_s = now
                timings.tokens += 1
                yield token
        finally:
            timings.total_s = time.perf_counter() - start
            gen_s = timings.total_s - timings.first_token_s
            if timings.tokens > 1 and gen_s > 0:
                timings.tokens_per_s = (timings.tokens - 1) / gen_s

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("FakeGenerator used after close()")  # a bug in the engine

    def close(self) -> None:
        self.closed = True


def _rambling() -> Iterator[str]:
    words = _TOKEN.findall(DEFAULT_REPLY)
    while True:
        yield from words
