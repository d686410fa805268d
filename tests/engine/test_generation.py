"""Generation with the real bundled model: chat formats, streaming, cancelling, timings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.answer.generation import Cancelled, Generator
from tests.factory import with_chat_template

pytestmark = pytest.mark.slow

MESSAGES = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "What colour is the sky?"},
]
# A template no built-in format resembles, so its use is unmistakable.
CUSTOM = (
    "{% for m in messages %}<start_of_turn>{{ 'user' if m.role != 'assistant' else 'model' }}"
    "\n[{{ m.role | upper }}] {{ m.content }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.fixture(scope="module")
def gemma(llm_path: Path) -> Iterator[Generator]:
    generator = Generator(llm_path, context_size=1024)
    yield generator
    generator.close()


def test_bundled_gemma_uses_gemma_turns_not_llama2(gemma: Generator) -> None:
    prompt, stop = gemma.format(MESSAGES)
    assert gemma.template_kind == "gemma"
    assert prompt == (
        "<start_of_turn>user\nAnswer in one word.\n\nWhat colour is the sky?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert "[INST]" not in prompt and "<end_of_turn>" in stop


def test_greedy_stream_is_repeatable_and_timed(gemma: Generator) -> None:
    first = "".join(gemma.stream(MESSAGES, max_tokens=12, temperature=0))
    timings = gemma.last_timings
    again = "".join(gemma.stream(MESSAGES, max_tokens=12, temperature=0))
    assert first and first == again
    assert 0 < timings.tokens <= 12
    assert 0 < timings.first_token_s <= timings.total_s
    assert timings.tokens_per_s > 0


def test_cancel_stops_a_long_prompt_evaluation(gemma: Generator) -> None:
    long = [{"role": "user", "content": "word " * 900}]
    stop = threading.Event()
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    with pytest.raises(Cancelled):
        for _ in gemma.stream(long, max_tokens=200, cancel=stop):
            pass
    timer.join()
    after = "".join(gemma.stream(MESSAGES, max_tokens=12, temperature=0))
    assert after == "".join(gemma.stream(MESSAGES, max_tokens=12, temperature=0))


def test_a_gguf_with_its_own_chat_template_uses_it(llm_path: Path, tmp_path: Path) -> None:
    model = with_chat_template(llm_path, tmp_path / "templated.gguf", CUSTOM)
    generator = Generator(model, context_size=512)
    try:
        assert generator.template_kind == "gguf"
        prompt, _ = generator.format(MESSAGES)
        assert "[SYSTEM] Answer in one word." in prompt and "[USER] What colour" in prompt
        assert "".join(generator.stream(MESSAGES, max_tokens=6, temperature=0))
    finally:
        generator.close()


def test_a_phrase_repeated_back_to_back_is_a_loop_and_a_short_list_is_not() -> None:
    from engine.answer.generation import LOOP_TOKENS, looping

    assert looping([7, 8, 9] + [1, 2, 3, 4] * 3)  # "target_with_anchor_" over and over
    assert looping([5] * LOOP_TOKENS) and not looping([5] * (LOOP_TOKENS - 1))
    assert not looping([1, 2, 3, 4] * 2)  # twice is not yet a loop
    assert not looping([8, 44, 4, 44, 4, 44, 4])  # "8, 4, 4, 4": ", 4" three times
    assert looping([8] + [44, 4] * 6)  # but six times is
    assert not looping([1, 2, 3, 4] * 3 + [9])  # it ended: the loop is not at the end


def test_a_guarded_answer_ends_when_it_loops(gemma: Generator) -> None:
    """A user's own adapter may loop to the token limit; the guard cuts the loop (the base
    model loops on this prompt too: "Say hello mendatanguser\\nSay hello ...")."""
    messages = [{"role": "user", "content": "Say hello"}]
    loose = "".join(gemma.stream(messages, max_tokens=150, temperature=0))
    assert gemma.last_timings.tokens == 150
    guarded = "".join(gemma.stream(messages, max_tokens=150, temperature=0, guard=True))
    assert gemma.last_timings.tokens < 60
    assert loose.startswith(guarded[:20])
