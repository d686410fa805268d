"""Training pairs for the reader, made with Quire's own search over an index.

For each answerable question (the eval/test-set format: `question`, `doc`, `pages` or
`section`, `answer`), the search's candidates are split into the gold passage (from the
gold document and page or section, holding the gold phrase) and hard negatives (the
other candidates that do not hold the phrase). The gold sentence is the sentence of the
gold passage that holds the phrase (or the fewest consecutive sentences that do); its
negatives are the other sentences of the gold passage and of the best negatives. A row
with no gold phrase (what "Add to test set…" writes) gives a passage pair only: the first
candidate from its gold place is the positive. Absent questions and questions whose gold
passage the search never finds give no pair.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from engine.eval.scoring import Question, contains_answer, is_hit
from engine.index.retrieval import CANDIDATES, Retriever
from engine.reader.rank import passage_text
from engine.reader.sentences import sentence_spans
from engine.types import SearchResult

DEEP = 40  # how far to look for a gold passage the top candidates missed
SENTENCE_NEGATIVES = 8


@dataclass
class Pair:
    """One question with its positive text and hard negatives, passage or sentence."""

    id: str
    kind: str  # "passage" or "sentence"
    question: str
    positive: str
    negatives: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def gold_sentence(text: str, answer: str) -> tuple[int, int] | None:
    """The span of the fewest consecutive sentences of `text` that hold `answer`."""
    spans = sentence_spans(text)
    for width in (1, 2, 3):
        for i in range(len(spans) - width + 1):
            start, end = spans[i][0], spans[i + width - 1][1]
            if contains_answer(text[start:end], answer):
                return start, end
    return None


def build_pairs(
    retriever: Retriever,
    questions: Iterable[Question],
    collection: str | None = None,
    negatives: int = 7,
    seed: int = 0,
) -> tuple[list[Pair], Counter]:
    """Passage and sentence pairs for every answerable question, and what happened."""
    rng = random.Random(seed)
    pairs: list[Pair] = []
    stats: Counter = Counter()
    for question in questions:
        if question.absent or not question.doc:
            stats["absent (no pair)"] += 1
            continue
        found = retriever.search(question.question, CANDIDATES, collection, min_score=0.0)
        gold = _gold(found, question)
        if gold is None:
            deeper = retriever.search(question.question, DEEP, collection, min_score=0.0)
            if question.answer:
                deeper += retriever.search(question.answer, DEEP, collection, 0.0, "keyword")
            gold = _gold(deeper, question)
            stats["gold passage past the candidates"] += gold is not None
        if gold is None:
            stats["gold passage not found (no pair)"] += 1
            continue
        if not question.answer:  # a test-set row ("Add to test set…"): its source is gold
            others = [s for s in found if not is_hit(s, question)]
            pairs.append(
                Pair(question.id, "passage", question.question, passage_text(gold),
                     [passage_text(s) for s in others[:negatives]])
            )  # fmt: skip
            stats["passage pairs"] += 1
            stats["no gold phrase (no sentence pair)"] += 1
            continue
        others = [s for s in found if not contains_answer(s.text, question.answer)]
        pairs.append(
            Pair(question.id, "passage", question.question, passage_text(gold),
                 [passage_text(s) for s in others[:negatives]])
        )  # fmt: skip
        stats["passage pairs"] += 1
        sentence = _sentence_pair(question, gold, others, rng)
        if sentence is not None:
            pairs.append(sentence)
            stats["sentence pairs"] += 1
        else:
            stats["gold phrase not within three sentences (no sentence pair)"] += 1
    return pairs, stats


def _gold(found: Sequence[SearchResult], question: Question) -> SearchResult | None:
    return next(
        (
            s
            for s in found
            if is_hit(s, question)
            and (not question.answer or contains_answer(s.text, question.answer))
        ),
        None,
    )


def _sentence_pair(
    question: Question, gold: SearchResult, others: list[SearchResult], rng: random.Random
) -> Pair | None:
    span = gold_sentence(gold.text, question.answer or "")
    if span is None:
        return None
    positive = gold.text[span[0] : span[1]]
    pool = [
        gold.text[a:b]
        for a, b in sentence_spans(gold.text)
        if b <= span[0] or a >= span[1]  # the gold passage's other sentences: the hardest
    ]
    for source in others[:3]:
        pool += [source.text[a:b] for a, b in sentence_spans(source.text)]
    pool = [s for s in pool if not contains_answer(s, question.answer or "")]
    rng.shuffle(pool)
    return Pair(question.id, "sentence", question.question, positive, pool[:SENTENCE_NEGATIVES])
