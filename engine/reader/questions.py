"""Questions to train the reader on: a question file, and answers rated 👍 in the chat.

A thumbs-up answer becomes a question in the test-set format: the question as asked, and
as gold the reader's quote that opened the approved answer (its document, page or
section, and its text as the gold phrase). An answer without a quote has its first cited
source as gold, and as phrase the sentence of that source that shares the most words with
the approved answer, when it shares at least `MIN_SHARED`; else no phrase (then the
source's passage is the gold, with no sentence pair). Questions about documents that are
not indexed are left out before any search.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from engine.eval.scoring import Question
from engine.history import History, Message
from engine.reader.sentences import sentence_spans
from engine.types import SearchResult

FEEDBACK_PREFIX = "up-"  # ids of questions made from thumbs-up answers
MIN_SHARED = 3  # words of four letters or more an answer must share with a sentence
_CITATION = re.compile(r"\[(\d+)\]")
_WORD = re.compile(r"\w{4,}")


def feedback_questions(history: History) -> list[Question]:
    """Every answer rated 👍 (with its sources) as a question, oldest first."""
    questions: list[Question] = []
    for conversation in history.conversations():
        asked = ""
        for message in history.messages(conversation.id):
            if message.role == "user":
                asked = message.content.strip()
            elif message.rating == 1 and asked:
                question = feedback_question(asked, message)
                if question is not None:
                    questions.append(question)
    return sorted(questions, key=lambda q: int(q.id[len(FEEDBACK_PREFIX) :]))


def feedback_question(asked: str, answer: Message) -> Question | None:
    """`asked` with `answer`'s quote, else its first cited source, as gold (None: it has
    neither)."""
    quote = answer.quote or {}
    if quote.get("document") and quote.get("text"):
        page = quote.get("page")
        return Question(
            f"{FEEDBACK_PREFIX}{answer.id}", asked, quote["document"],
            (page,) if page is not None else (), None if page else quote.get("section"),
            quote["text"],
        )  # fmt: skip
    source = cited_source(answer)
    if source is None or not source.document:
        return None
    pages = (source.page,) if source.page is not None else ()
    section = source.section if not pages else None
    phrase = answer_sentence(source.text, answer.corrected or answer.content)
    return Question(f"{FEEDBACK_PREFIX}{answer.id}", asked, source.document, pages, section, phrase)


def cited_source(answer: Message) -> SearchResult | None:
    """The first source the answer cites as [n], else its first source."""
    for match in _CITATION.finditer(answer.content):
        number = int(match.group(1))
        if 1 <= number <= len(answer.sources):
            return answer.sources[number - 1]
    return answer.sources[0] if answer.sources else None


def answer_sentence(text: str, answer: str) -> str | None:
    """The sentence of `text` sharing the most words with `answer` (at least MIN_SHARED)."""
    wanted = _words(answer)
    best, shared = None, MIN_SHARED - 1
    for start, end in sentence_spans(text):
        count = len(_words(text[start:end]) & wanted)
        if count > shared:
            best, shared = text[start:end].strip(), count
    return best


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.casefold()))


def indexed_only(
    questions: Iterable[Question], documents: Sequence[Any]
) -> tuple[list[Question], int]:
    """The questions whose gold document is indexed (or that have none), and how many
    were left out. `documents` are the store's records (`name`, `path`, `hash`)."""
    names = {d.name for d in documents if d.hash}
    paths = [str(d.path).replace("\\", "/") for d in documents if d.hash]
    kept, dropped = [], 0
    for question in questions:
        doc = (question.doc or "").replace("\\", "/").strip("/")
        if not doc or doc in names or any(p.endswith("/" + doc) for p in paths):
            kept.append(question)
        else:
            dropped += 1
    return kept, dropped


def start_reader(package_dir: Path | None = None) -> Path | None:
    """The shipped reader's package folder when it holds the LoRA a user's reader
    continues; None: start from MiniLM's own weights."""
    from models.bundled import READER_PACKAGE_DIR

    folder = package_dir or READER_PACKAGE_DIR
    if (folder / "lora" / "adapter_config.json").is_file() and (folder / "reader.json").is_file():
        return folder
    return None
