"""What the reader looks at beside its own cosine: cheap features of each candidate passage
and each sentence, combined by a linear ranker whose weights live in the reader's card.

The bi-encoder reads the question and a passage apart, so it cannot see that a passage
holds the question's rarest words, or that a table of contents merely names the topic. The
features here see exactly that, and cost well under a millisecond per candidate:

- the scores the app already has (the reader's cosine, the search's relevance, MiniLM's
  similarity), as they stand and as a gap to the best candidate;
- lexical overlap weighted by how rare each question word is among the candidates (a word
  every candidate holds tells nothing), in the text, in the heading, and as word pairs;
- shape: lines too short to be prose, list items, lines ending in a page number (a
  contents list, an index), the passage's length.

Sentences get the same overlap and their own shape: numbers and command-like tokens where
the question asks for a value, length, and where the sentence stands in its passage.
The weights are fitted on training questions the reader was not trained on
(model_builds/reader_ranker.py) and chosen on the held-out questions.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence

import numpy as np

PASSAGE_FEATURES = (
    "reader", "reader_gap", "relevance", "similarity", "similarity_gap",
    "coverage", "heading", "pairs", "short_lines", "list_lines", "numbered_lines", "length",
    "first",
)  # fmt: skip
SENTENCE_FEATURES = (
    "cosine", "cosine_gap", "passage", "passage_gap", "coverage", "window_coverage",
    "value", "value_wanted", "length", "position", "first_source",
)  # fmt: skip

_LIST_LINE = re.compile(r"^\s*(?:[-*•◦▪‣]|\d{1,3}[.)])\s")
_NUMBERED_LINE = re.compile(r"(?:\.{3,}|\s)\d{1,4}\s*$")
_TOKEN = re.compile(r"[^\W_]+(?:[-_.'][^\W_]+)*|--?[a-z][\w-]*", re.UNICODE)
_VALUE = re.compile(r"\d|--?[a-z]|[a-z]+\(|[\w.]+/[\w.]+|[A-Z_]{3,}|=|\.\w+\b")
_WANTS_VALUE = re.compile(
    r"\b(how (many|much|long|often|big|large)|default|which (port|version|option|flag|"
    r"command|file|variable|parameter|key|setting|value|function)|what (port|version|option|"
    r"flag|command|file|variable|parameter|key|setting|value|function|size|limit)|"
    r"called|named|name of)\b",
    re.IGNORECASE,
)
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "get",
        "got",
        "want",
        "need",
        "use",
        "using",
        "used",
        "way",
        "make",
        "there's",
        "what's",
        "i'm",
        "it's",
        "don't",
        "doesn't",
        "can't",
        "let",
        "s",
        "t",
    ]
)


def stem(word: str) -> str:
    """A light suffix strip, enough to match 'backups' with 'backup', 'mounted' with
    'mount' and 'pruning' with 'prune'."""
    word = word.removesuffix("'s")
    for suffix in ("ies", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def terms(text: str) -> list[str]:
    """The content words of `text`, folded and stemmed, in order."""
    out = []
    for token in _TOKEN.findall(text.casefold()):
        token = token.strip("'")
        if token and token not in STOPWORDS:
            out.append(stem(token))
    return out


def _idf(question: list[str], texts: Sequence[set[str]]) -> dict[str, float]:
    """How rare each question word is among `texts` (those none of them holds are left
    out: they cannot tell one candidate from another)."""
    n = len(texts)
    weights = {}
    for term in set(question):
        df = sum(term in t for t in texts)
        if df:
            weights[term] = math.log(1.0 + n / df)
    return weights


def _coverage(words: set[str], idf: dict[str, float]) -> float:
    total = sum(idf.values())
    return sum(w for t, w in idf.items() if t in words) / total if total else 0.0


def _pairs(words: list[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(words))


def passage_features(
    question: str,
    texts: Sequence[str],
    sections: Sequence[str | None],
    reader: Sequence[float] | np.ndarray,
    relevance: Sequence[float],
    similarity: Sequence[float],
) -> np.ndarray:
    """One row of PASSAGE_FEATURES per candidate (in the search's order)."""
    n = len(texts)
    out = np.zeros((n, len(PASSAGE_FEATURES)), dtype=np.float32)
    if not n:
        return out
    asked = terms(question)
    words = [terms(t) for t in texts]
    bags = [set(w) for w in words]
    idf = _idf(asked, bags)
    asked_pairs = _pairs(asked)
    reader_max, similarity_max = max(reader), max(similarity)
    for i, text in enumerate(texts):
        lines = [line for line in text.splitlines() if line.strip()]
        count = max(1, len(lines))
        short = sum(len(line.split()) <= 4 for line in lines) / count
        listed = sum(bool(_LIST_LINE.match(line)) for line in lines) / count
        numbered = sum(bool(_NUMBERED_LINE.search(line)) for line in lines) / count
        heading = set(terms(sections[i] or ""))
        out[i] = (
            reader[i],
            reader[i] - reader_max,
            relevance[i],
            similarity[i],
            similarity[i] - similarity_max,
            _coverage(bags[i], idf),
            _coverage(heading, idf),
            len(asked_pairs & _pairs(words[i])) / len(asked_pairs) if asked_pairs else 0.0,
            short,
            listed,
            numbered,
            math.log1p(len(words[i])),
            1.0 if i == 0 else 0.0,
        )
    return out


def sentence_features(
    question: str,
    sentences: Sequence[str],
    windows: Sequence[str],
    cosine: Sequence[float],
    passage: Sequence[float],
    position: Sequence[int],
    source: Sequence[int],
) -> np.ndarray:
    """One row of SENTENCE_FEATURES per sentence: `windows` are each sentence with its
    neighbours in the same passage, `passage` its passage's ranking score, `position` its
    index within the passage and `source` its passage's index in the answer's list."""
    n = len(sentences)
    out = np.zeros((n, len(SENTENCE_FEATURES)), dtype=np.float32)
    if not n:
        return out
    asked = terms(question)
    bags = [set(terms(s)) for s in sentences]
    idf = _idf(asked, bags)
    wants = 1.0 if _WANTS_VALUE.search(question) else 0.0
    cosine_max, passage_max = max(cosine), max(passage)
    for i, text in enumerate(sentences):
        value = 1.0 if _VALUE.search(text) else 0.0
        out[i] = (
            cosine[i],
            cosine[i] - cosine_max,
            passage[i],
            passage[i] - passage_max,
            _coverage(bags[i], idf),
            _coverage(set(terms(windows[i])), idf),
            value,
            value * wants,
            math.log1p(len(text.split())),
            1.0 if position[i] == 0 else 0.0,
            1.0 if source[i] == 0 else 0.0,
        )
    return out


def linear(features: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """The ranker's score of each row: the weights' dot product (one weight per feature)."""
    return features @ np.asarray(weights, dtype=np.float32)
