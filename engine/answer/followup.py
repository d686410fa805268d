"""Follow-up questions: a question asked after others in one conversation.

"Which port does it use?" means nothing to a search on its own. The turns before it say
what "it" is, so a follow-up is searched together with the question it follows, and
answered with the recent turns in the prompt (engine/answer/prompting.py fits them in).
Measured on the development follow-ups (eval/followup-questions.jsonl; docs/evaluation.md):
the previous question and the follow-up, searched as one text, against the follow-up alone
and a rewrite by the bundled model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Turn = tuple[str, str]  # (question, answer), oldest first
PROMPT_TURNS = 2  # the most recent turns the prompt carries, as room allows
ANSWER_CHARS = 600  # a past answer in the prompt is cut to this (the model wrote it)


def search_query(question: str, turns: Sequence[Turn] | None) -> str:
    """What a follow-up is searched (and quoted) with: the question it follows, then it.
    A first question is searched as it is."""
    if not turns:
        return question
    return f"{turns[-1][0]}\n{question}"


def recent(turns: Sequence[Turn] | None) -> list[Turn]:
    """The turns a prompt carries: the last few, each answer cut short."""
    return [(q, _cut(a)) for q, a in list(turns or [])[-PROMPT_TURNS:]]


def turns_of(messages: Sequence[Any]) -> list[Turn]:
    """A saved conversation's (question, answer) turns, from its messages (objects with
    `role` and `content`, as engine.history gives them); a stopped or empty answer is
    still a turn (its question gives the follow-up its subject)."""
    turns: list[Turn] = []
    asked: str | None = None
    for message in messages:
        if message.role == "user":
            if asked is not None:
                turns.append((asked, ""))
            asked = message.content
        elif message.role == "assistant" and asked is not None:
            turns.append((asked, message.content))
            asked = None
    return turns


def as_messages(turns: Sequence[Turn]) -> list[dict[str, str]]:
    """Turns as chat messages: the question as the user's, the answer as the assistant's."""
    messages = []
    for asked, answered in turns:
        messages.append({"role": "user", "content": asked})
        messages.append({"role": "assistant", "content": answered})
    return messages


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ANSWER_CHARS else text[: ANSWER_CHARS - 1] + "…"
