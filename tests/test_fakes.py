"""tests/fakes.py keeps the contract of the model it stands in for, and the lane uses it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine.answer.generation import Cancelled, Generator, RefusalGate
from engine.types import UserError
from tests.fakes import FakeGenerator

HI = [{"role": "user", "content": "Hi"}]


def test_an_unmarked_test_gets_the_fake_from_the_engine(data_dir: Path, fake_llm) -> None:
    from engine.core import Engine

    engine = Engine(data_dir)
    try:
        generator = engine.generator
        assert isinstance(generator, FakeGenerator) and isinstance(generator, Generator)
        fake_llm.replies.append("Tomatoes are watered at seven [1].")
        answer = engine.answer("When are the tomatoes watered?", "base")
    finally:
        engine.close()
    assert answer.answer == "Tomatoes are watered at seven [1]."
    assert answer.timings.tokens == 6 and 0 < answer.timings.first_token_s <= answer.timings.total_s
    assert generator.prompts[-1][-1]["content"].endswith("When are the tomatoes watered?")
    assert generator.closed


def test_it_streams_up_to_max_tokens_and_stops_on_the_event(llm_path: Path) -> None:
    fake = FakeGenerator(llm_path)
    assert len(list(fake.stream(HI, max_tokens=7))) == fake.last_timings.tokens == 7
    stop = threading.Event()
    pieces = []

    def read_and_stop() -> None:
        for piece in fake.stream(HI, max_tokens=400, cancel=stop):
            pieces.append(piece)
            stop.set()

    with pytest.raises(Cancelled):
        read_and_stop()
    assert len(pieces) == 1
    with pytest.raises(Cancelled):  # set before it started
        next(fake.stream(HI, cancel=stop))


def test_a_gate_refuses_at_its_threshold(llm_path: Path) -> None:
    fake = FakeGenerator(llm_path)
    gate = RefusalGate("The documents do not say.", threshold=0.5)
    fake.refusal_odds = 0.6
    assert "".join(fake.stream(HI, gate=gate)) == "The documents do not say."
    assert fake.last_refusal_odds == 0.6
    fake.refusal_odds = 0.1
    assert "".join(fake.stream(HI, max_tokens=3, gate=gate)) == "The answer is"


def test_it_refuses_what_the_real_one_refuses(tmp_path: Path) -> None:
    junk = tmp_path / "model.gguf"
    junk.write_text("not a model")
    with pytest.raises(UserError, match=r"model\.gguf is not a GGUF file"):
        FakeGenerator(junk)
    with pytest.raises(UserError, match="model file not found"):
        FakeGenerator(tmp_path / "missing.gguf")
