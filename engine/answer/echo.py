"""Answers that copy their prompt: caught in the first few words and stopped.

The bundled Gemma 3 270M without the grounding adapter (base and rag) answers every
question by copying its instructions and sources to the token limit (prompt echo 1.00
on the development set, docs/evaluation.md): seconds of text that reads like an answer
and is not one, with "The documents do not say." inside it. So the first characters of
an answer are held back while they could still be a copy of the prompt's fixed text;
once they are one, generation stops and the answer says so.
"""

from __future__ import annotations

from collections.abc import Sequence

ECHOED = "The model repeated its prompt instead of answering."

# How much of a long scaffold (the system prompt) must match before it counts as a copy:
# a real answer shares at most a word or two with it ("Answer: ...").
ECHO_CHARS = 24
# The user message's own lines (engine.answer.prompting.build_prompt): an answer never
# starts with them. The grounding adapter's "Source [1]: ..." parts from "Sources:" at
# its seventh character.
SCAFFOLDS = ("Quote [", "Sources:\n", "Question: ")


class EchoWatch:
    """Feed it the answer's pieces as they come: it returns what can be shown now, and
    says (`echoed`) once the answer so far is a copy of the prompt's fixed text."""

    def __init__(self, messages: Sequence[dict[str, str]]) -> None:
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        self.scaffolds = [s for s in (system, *SCAFFOLDS) if s.strip()]
        self.held = ""
        self.decided = False
        self.echoed = False

    def feed(self, piece: str) -> str:
        """The text to show now: "" while it is held back (or once it is an echo)."""
        if self.decided:
            return "" if self.echoed else piece
        self.held += piece
        text = self.held.lstrip()
        if not text:
            return ""
        possible = False
        for scaffold in self.scaffolds:
            need = min(ECHO_CHARS, len(scaffold))
            if text[:need] == scaffold[:need] and len(text) >= need:
                self.decided = self.echoed = True
                return ""
            if scaffold.startswith(text):
                possible = True
        if possible:
            return ""
        self.decided = True
        held, self.held = self.held, ""
        return held

    def rest(self) -> str:
        """What is still held when the answer ends (a short answer that never decided)."""
        if self.echoed:
            return ""
        held, self.held = self.held, ""
        return held
