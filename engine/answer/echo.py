"""Answers that copy their prompt: caught in the first few words and stopped.

The bundled Gemma 3 270M without the grounding adapter (base and rag) answers almost
every question by copying its instructions and sources to the token limit (prompt echo
1.00 on the development set, docs/evaluation.md): seconds of text that reads like an
answer and is not one, with "The documents do not say." inside it. Now and then it
answers first and then starts on its prompt ("Answer: 2013-02-26" and "Question: when
was ..." over and over). So each line of an answer is held back while it could still be
a copy of the prompt's fixed text; once it is one, generation stops there: an answer
that was nothing but the copy says so (ECHOED), one that had said something keeps it.
"""

from __future__ import annotations

from collections.abc import Sequence

ECHOED = "The model repeated its prompt instead of answering."

# How much of a long scaffold (the system prompt) must match before it counts as a copy:
# a real answer shares at most a word or two with it ("Answer: ...").
ECHO_CHARS = 24
# The user message's own lines (engine.answer.prompting.build_prompt): an answer's line
# never starts with them. The grounding adapter's "Source [1]: ..." parts from
# "Sources:" at its seventh character.
LINES = ("Quote [", "Sources:", "Question: ")


class EchoWatch:
    """Feed it the answer's pieces as they come: it returns what can be shown now. Once
    a line is a copy of the prompt's fixed text it `stopped`; `echoed` when nothing came
    before that line."""

    def __init__(self, messages: Sequence[dict[str, str]]) -> None:
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        self.first = [s for s in (system, *LINES) if s.strip()]  # the answer's first line
        self.text = ""
        self.sent = 0  # text[:sent] has been shown
        self.stopped = False
        self.echoed = False

    def feed(self, piece: str) -> str:
        """The text to show now: "" while it is held back (or once stopped)."""
        if self.stopped:
            return ""
        self.text += piece
        pos = self.text.rfind("\n", 0, self.sent) + 1  # the line `sent` is in
        while True:
            end = self.text.find("\n", pos)
            first = not self.text[:pos].strip()  # nothing said yet: the instructions too
            state = self._line(self.text[pos : len(self.text) if end < 0 else end], first)
            if state == "copy":
                self.stopped = True
                self.echoed = first
                return self._release(pos)
            if end < 0:
                return self._release(pos if state == "maybe" else len(self.text))
            pos = end + 1

    def rest(self) -> str:
        """What is still held when the answer ends (a short answer that never decided)."""
        return "" if self.stopped else self._release(len(self.text))

    def _line(self, line: str, first: bool) -> str:
        """Whether `line` is a copy ("copy"), could still become one ("maybe"), or not."""
        text = line.lstrip() if first else line
        if not text:
            return "maybe"
        maybe = False
        for scaffold in self.first if first else LINES:
            need = min(ECHO_CHARS, len(scaffold))
            if len(text) >= need and text[:need] == scaffold[:need]:
                return "copy"
            maybe = maybe or scaffold.startswith(text)
        return "maybe" if maybe else "no"

    def _release(self, upto: int) -> str:
        upto = max(upto, self.sent)
        out, self.sent = self.text[self.sent : upto], upto
        return out
