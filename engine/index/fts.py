"""FTS5 query building: safe queries from free user text, and the rare terms worth scoring."""

from __future__ import annotations

import re
from typing import Any

MAX_TERMS = 32

STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        "a about above after again against all am an and any are as at be because been before "
        "being below between both but by can could did do does doing down during each few for "
        "from further had has have having he her here hers him his how i if in into is it its "
        "itself just me more most my no nor not now of off on once only or other our ours out "
        "over own same she should so some such than that the their theirs them then there "
        "these they this those through to too under until up very was we were what when where "
        "which while who whom why will with would you your yours near ",
    )
)


def fts_terms(text: str) -> list[str]:
    """Searchable terms of free user text: lower-cased, deduplicated, stopwords dropped."""
    terms: list[str] = []
    for piece in text.split():
        word = re.sub(r"^\W+|\W+$", "", piece.replace('"', ""))
        key = word.lower()
        if not re.search(r"\w", word) or key in STOPWORDS or key in terms:
            continue
        terms.append(key)
    return terms[:MAX_TERMS]


def fts_query(text: str, terms: list[str] | None = None) -> str:
    """A safe FTS5 query from free user text (or from `terms`): quoted terms, OR-ed.

    Returns "" when nothing searchable is left. Quoting makes every term a string
    (FTS5 tokenizes it itself), so operators, parentheses and column filters in the
    user's text are inert.
    """
    return " OR ".join(f'"{t}"' for t in (fts_terms(text) if terms is None else terms))


def rare_terms(conn: Any, terms: list[str], cap: int, counts: dict[str, int]) -> list[str]:
    """The rarest terms whose matches add up to at most `cap` rows (at least one term).

    BM25 scoring reads every matching row's column sizes, so an OR with a common term
    costs ~5 us per match (42 ms for 8,400 matches at 100k chunks), while counting a
    term's rows is ~20x cheaper. A common term has a low IDF and moves the ranking
    little; dropping it bounds the cost. `counts` caches row counts per term.
    """
    for term in terms:
        if term not in counts:
            row = conn.execute(
                "SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (f'"{term}"',)
            ).fetchone()
            counts[term] = int(row[0])
    kept: list[str] = []
    total = 0
    for term in sorted(terms, key=lambda t: counts[t]):
        if kept and total + counts[term] > cap:
            break
        kept.append(term)
        total += counts[term]
    return kept
