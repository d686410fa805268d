"""The Engine facade with the real bundled models: stopping answers at any point."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from engine.answer.events import AnswerFinished, AskOptions, SourcesFound, TokenReceived
from engine.core import Engine
from engine.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    root = tmp_path_factory.mktemp("engine")
    doc = root / "kettle.md"
    doc.write_text("# Kettle\n\nDescale the kettle monthly with vinegar.\n", "utf-8")
    engine = Engine(root / "data", Settings())
    engine.ingest([doc])
    yield engine
    engine.close()


def test_stop_pressed_during_retrieval_is_not_lost(engine: Engine) -> None:
    events = []
    stop = threading.Event()
    options = AskOptions(max_tokens=32)
    for event in engine.ask("How do I descale the kettle?", "rag", options, stop=stop):
        events.append(event)
        if isinstance(event, SourcesFound):
            stop.set()  # before the first token: the stream must not start
    finished = events[-1]
    assert isinstance(finished, AnswerFinished) and finished.answer.cancelled
    assert not any(isinstance(e, TokenReceived) for e in events)
    assert finished.answer.sources[0].document == "kettle.md"


def test_a_stop_ends_the_whole_comparison(engine: Engine) -> None:
    """Stopped at base's first token: no other mode answers. (The bundled base model's
    first token is the note that it copied its prompt, shown as the answer ends: the
    stop lands between two modes, not in one.)"""
    modes = []
    stop = threading.Event()
    for mode, event in engine.compare("What is the kettle?", AskOptions(max_tokens=32), stop=stop):
        if isinstance(event, TokenReceived):
            stop.set()
        if isinstance(event, AnswerFinished):
            modes.append(mode)
    assert modes == ["base"]


def test_after_a_stop_the_next_answer_runs(engine: Engine) -> None:
    answer = engine.answer("What is the kettle?", "base", AskOptions(max_tokens=4))
    assert not answer.cancelled and answer.timings.tokens > 0


def test_model_reloads_only_when_its_settings_change(engine: Engine) -> None:
    first = engine.generator
    engine.settings.context_size = 1000  # llama.cpp may round this; no reload loop either way
    second = engine.generator
    assert second is not first and engine.generator is second
    engine.settings.context_size = 4096
    assert engine.generator is not second
