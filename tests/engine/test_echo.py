"""An answer that copies its prompt is stopped in its first words and says so."""

from __future__ import annotations

import re

from engine.answer.echo import ECHO_CHARS, EchoWatch
from engine.answer.prompting import DONT_KNOW, RAG_SYSTEM_PROMPT

MESSAGES = [
    {"role": "system", "content": RAG_SYSTEM_PROMPT},
    {"role": "user", "content": 'Quote [1]: "It is deluge."\n\nSources:\n\n[1] m.pdf, page 4\n...'},
]


def watch(text: str) -> tuple[str, EchoWatch]:
    """Feed `text` as a model streams it (a word with its leading space at a time)."""
    seen = EchoWatch(MESSAGES)
    shown = "".join(seen.feed(piece) for piece in re.findall(r"\s*\S+", text))
    return shown + seen.rest(), seen


def test_a_copy_of_the_instructions_is_caught_within_its_first_words() -> None:
    seen = EchoWatch(MESSAGES)
    pieces = re.findall(r"\s*\S+", RAG_SYSTEM_PROMPT + " Quote [1]: ...")
    fed = 0
    for piece in pieces:
        assert seen.feed(piece) == ""  # nothing of it is ever shown
        fed += len(piece)
        if seen.echoed:
            break
    assert seen.echoed and seen.stopped and fed < ECHO_CHARS + 12, fed
    assert seen.rest() == ""


def test_the_prompt_s_own_lines_are_a_copy_too() -> None:
    for start in ('Quote [1]: "It is deluge."', "Sources:\n\n[1] m.pdf, page 4", "Question: how?"):
        shown, seen = watch(start + " and so on")
        assert seen.echoed and shown == "", start


def test_an_answer_that_goes_on_to_copy_its_prompt_keeps_what_it_said() -> None:
    shown, seen = watch("Answer: 2013-02-26\nQuestion: when was it? Question: when was it?")
    assert seen.stopped and not seen.echoed and shown == "Answer: 2013-02-26\n"
    shown, seen = watch("It is deluge [1].\n\nSources:\n\n[1] m.pdf, page 4")
    assert seen.stopped and shown == "It is deluge [1].\n\n"
    shown, seen = watch("\n\nAnswer from the numbered sources in one")
    assert seen.echoed and shown.strip() == ""


def test_answers_pass_unchanged() -> None:
    for answer in (
        "Source [1]: The initial password is deluge.",  # the grounding adapter's shape
        "Sources [1] and [2] say it is deluge.",
        "Answer: deluge [1].",  # shares a word with the instructions, no more
        DONT_KNOW,
        " It is deluge [1].",
        "Question",  # never told apart from a copy: shown when the answer ends
        "Two steps:\n1. Stop it.\n2. Question: none.",  # a line may hold the word
        "Line one.\n\nSources [1] and [2].",
    ):
        shown, seen = watch(answer)
        assert shown == answer and not seen.echoed, answer
