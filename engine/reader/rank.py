"""Quire's reader at answer time: it reranks the search's candidates and picks the quote.

The reader is a small embedding model of Quire's own (engine.reader.train): all-MiniLM-L6-v2
tuned on questions about manuals, int8 ONNX, run by fastembed's onnxruntime. It scores a
text by the cosine of its vector with the question's. Passage vectors are kept in the
index per reader (`reader_vectors`), so reranking 20 candidates embeds only those it has
not read before; the quote's sentences are embedded as they are needed.

The numbers that decide (how much the search's own order still counts, the bar under which
the documents do not seem to cover the question) were chosen on held-out questions and
live in the reader's card, so they travel with the reader they were tuned for.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.index.embedding import Embedder
from engine.reader.features import (
    PASSAGE_FEATURES,
    SENTENCE_FEATURES,
    linear,
    passage_features,
    sentence_features,
)
from engine.reader.sentences import sentence_spans
from engine.types import SearchResult, UserError

CARD_FILE = "reader.json"
# Defaults for a card that names none (a user's reader inherits the shipped card's).
DEFAULTS = {"rerank_weight": 0.0, "quote_threshold": 0.0, "neighbour_margin": 0.05,
            "short_words": 8, "passage_weight": 0.0}  # fmt: skip


def passage_text(source: SearchResult) -> str:
    """What the reader reads of a passage: its section heading (when the text does not
    start with it) and its text."""
    section = source.section
    if section and section.casefold() not in source.text[: len(section) + 40].casefold():
        return f"{section}\n{source.text}"
    return source.text


@dataclass
class Quote:
    """The sentence (with neighbours, where it needs them) that answers, and where it is."""

    chunk_id: int
    start: int  # character offsets into the source passage's text
    end: int
    text: str
    score: float  # the reader's cosine with the question
    document: str = ""
    path: str = ""
    page: int | None = None
    section: str | None = None
    source: int = 0  # 1-based number of its source in the answer's list (0: unnumbered)
    # The model found no answer in the sources: the quote is shown as the nearest passage,
    # not as the answer (a quote above "The documents do not say." would contradict it).
    nearest: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text, "score": round(self.score, 4), "source": self.source,
            "document": self.document, "path": self.path, "page": self.page,
            "section": self.section, "start": self.start, "end": self.end,
            "nearest": self.nearest,
        }  # fmt: skip

    def label(self) -> str:
        """`manual.pdf, page 3` or `page.html, "Backups"`."""
        if self.page is not None:
            return f"{self.document}, page {self.page}"
        if self.section:
            return f'{self.document}, "{self.section}"'
        return self.document


# (source index, start, end, sentence score, passage score)
Sentences = list[tuple[int, int, int, float, float]]


def pick(
    table: Sentences,
    sources: Sequence[SearchResult],
    card: dict[str, float],
    ranked: Sequence[float] | None = None,
) -> Quote:
    """The quote from scored sentences: the best by the sentence ranker's score (`ranked`,
    where the card has one) or else by its own score and a share of its passage's
    (`passage_weight`), widened by a neighbour in the same passage that scores within
    `neighbour_margin` of it, or by both when it has under `short_words` words. The quote's
    score, what the not-covered bar reads, is the best sentence's by its own score and its
    passage's, whichever sentence is quoted."""
    beta = card["passage_weight"]
    scores = [(s + beta * p) / (1 + beta) for _, _, _, s, p in table]
    order = scores if ranked is None else ranked
    best = max(range(len(table)), key=order.__getitem__)
    n, a, b = table[best][:3]
    text = sources[n].text
    short = len(text[a:b].split()) < card["short_words"]
    for other in (best - 1, best + 1):
        if not 0 <= other < len(table) or table[other][0] != n:
            continue
        if short or scores[other] >= scores[best] - card["neighbour_margin"]:
            a, b = min(a, table[other][1]), max(b, table[other][2])
    source = sources[n]
    return Quote(
        chunk_id=source.chunk_id, start=a, end=b, text=text[a:b], score=max(scores),
        document=source.document, path=source.path, page=source.page, section=source.section,
    )  # fmt: skip


def passage_rows(
    question: str, found: Sequence[SearchResult], scores: Sequence[float] | np.ndarray
) -> np.ndarray:
    """The passage ranker's features of each of `found`, `scores` being the reader's."""
    return passage_features(
        question, [s.text for s in found], [s.section for s in found], scores,
        [s.relevance for s in found], [s.score for s in found],
    )  # fmt: skip


def sentence_rows(question: str, table: Sentences, sources: Sequence[SearchResult]) -> np.ndarray:
    """The sentence ranker's features of each row of `table`."""
    texts: list[str] = []
    windows: list[str] = []
    position: list[int] = []
    source: list[int] = []
    for i, (n, a, b, _, _) in enumerate(table):
        text = sources[n].text
        texts.append(text[a:b])
        first = i == 0 or table[i - 1][0] != n
        last = i + 1 == len(table) or table[i + 1][0] != n
        lo = table[i if first else i - 1][1]
        hi = table[i if last else i + 1][2]
        windows.append(text[lo:hi])
        position.append(0 if first else position[-1] + 1)
        source.append(n)
    return sentence_features(
        question, texts, windows, [row[3] for row in table], [row[4] for row in table],
        position, source,
    )  # fmt: skip


@dataclass
class ReaderTiming:
    rerank_s: float = 0.0
    quote_s: float = 0.0


@dataclass
class Reader:
    """A reader folder (model.onnx, tokenizer files, reader.json) loaded for scoring."""

    folder: Path
    threads: int | None = None
    embedder: Embedder = field(init=False)
    card: dict[str, Any] = field(init=False)
    key: str = field(init=False)  # names its vectors in the index
    last: ReaderTiming = field(default_factory=ReaderTiming)
    _asked: tuple[str, np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            self.card = json.loads((self.folder / CARD_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.folder}: not a reader (its {CARD_FILE}: {exc})") from exc
        self.embedder = Embedder(self.folder, self.threads)
        digest = hashlib.sha256((self.folder / "model.onnx").read_bytes()).hexdigest()
        self.key = digest[:16]

    def embed_question(self, question: str) -> np.ndarray:
        """The question's vector; the last one is kept (the rerank and the quote of one
        answer ask for the same)."""
        if self._asked is None or self._asked[0] != question:
            self._asked = (question, self.embedder.embed_query(question))
        return self._asked[1]

    def setting(self, name: str) -> float:
        return float(self.card.get(name, DEFAULTS[name]))

    @property
    def label(self) -> str:
        return str(self.card.get("name") or self.folder.name)

    # -- reranking ---------------------------------------------------------------------

    def rerank(self, store: Any, question: str, found: Sequence[SearchResult]) -> list:
        """`found` in the reader's order, each with its `rerank` score and new rank."""
        start = time.perf_counter()
        self.last = ReaderTiming()
        if not found:
            return []
        scores = self.passage_scores(store, question, found)
        ranked = self.passage_ranking(question, found, scores)
        order = sorted(range(len(found)), key=lambda i: -ranked[i])
        self.last.rerank_s = time.perf_counter() - start
        return [
            replace(found[i], rank=rank, rerank=round(float(scores[i]), 4))
            for rank, i in enumerate(order, start=1)
        ]

    def passage_ranking(
        self, question: str, found: Sequence[SearchResult], scores: np.ndarray
    ) -> np.ndarray:
        """What the order follows: the card's passage ranker over the features (when it has
        one), else the reader's cosine plus `rerank_weight` x the search's relevance."""
        weights = self._ranker("passage_ranker", PASSAGE_FEATURES)
        if weights is None:
            relevance = np.array([s.relevance for s in found], dtype=np.float32)
            return scores + self.setting("rerank_weight") * relevance
        return linear(passage_rows(question, found, scores), weights)

    def passage_scores(
        self, store: Any, question: str, found: Sequence[SearchResult]
    ) -> np.ndarray:
        """The reader's cosine of each passage with the question."""
        return self._passage_vectors(store, found) @ self.embed_question(question)

    def _passage_vectors(self, store: Any, found: Sequence[SearchResult]) -> np.ndarray:
        """The reader's vectors of `found`: from the index, else read now and kept."""
        cached = store.reader_vectors(self.key, [s.chunk_id for s in found if s.chunk_id])
        out = np.empty((len(found), self.embedder.dim), dtype=np.float32)
        missing = []
        for i, source in enumerate(found):
            if source.chunk_id in cached:
                out[i] = cached[source.chunk_id]
            else:
                missing.append(i)
        if missing:
            out[missing] = self.embedder.embed([passage_text(found[i]) for i in missing])
            new = {found[i].chunk_id: out[i] for i in missing if found[i].chunk_id}
            with contextlib.suppress(Exception):  # read-only or busy: read them next time
                store.put_reader_vectors(self.key, new)
        return out

    # -- the quote ---------------------------------------------------------------------

    def quote(self, question: str, sources: Sequence[SearchResult]) -> Quote | None:
        """The best sentence of `sources` for `question`, with its neighbours where it
        needs them; None when the sources have no text."""
        start = time.perf_counter()
        table = self.sentence_scores(question, sources)
        quote = None
        if table:
            weights = self._ranker("sentence_ranker", SENTENCE_FEATURES)
            order = None
            if weights is not None:
                order = [float(x) for x in linear(sentence_rows(question, table, sources), weights)]
            quote = pick(table, sources, self.card_settings(), order)
        self.last.quote_s = time.perf_counter() - start
        return quote

    def sentence_scores(self, question: str, sources: Sequence[SearchResult]) -> Sentences:
        """Every sentence of `sources` (source index, start, end) with its score: the
        reader's cosine with the question, and its passage's (`rerank`) beside it."""
        spans = [(n, a, b) for n, s in enumerate(sources) for a, b in sentence_spans(s.text)]
        if not spans:
            return []
        texts = [sources[n].text[a:b] for n, a, b in spans]
        scores = self.embedder.embed(texts) @ self.embed_question(question)
        return [
            (n, a, b, float(score), sources[n].rerank or 0.0)
            for (n, a, b), score in zip(spans, scores, strict=True)
        ]

    def _ranker(self, name: str, features: Sequence[str]) -> list[float] | None:
        """A ranker's weights from the card; None when it has none, or when they were
        fitted on another set of features (a card from another version of Quire)."""
        weights = self.card.get(name)
        if not isinstance(weights, list) or len(weights) != len(features):
            return None
        return [float(w) for w in weights]

    def card_settings(self) -> dict[str, float]:
        return {name: self.setting(name) for name in DEFAULTS}

    def covers(self, quote: Quote | None, gated: bool = True) -> bool:
        """Whether the quote scores at the card's bar: below it, the documents do not seem
        to cover the question. The bar was chosen together with the grounding adapter's
        own refusal gate (`gated`); where no such gate decides after it (rag, a user's
        adapter, a model server), the card's `quote_threshold_alone`, chosen for the bar
        alone, is the bar when the card has one."""
        bar = self.setting("quote_threshold")
        if not gated:
            bar = float(self.card.get("quote_threshold_alone", bar))
        return quote is not None and quote.score >= bar
