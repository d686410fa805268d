"""Scoring evaluation questions: the question file, per-question checks, per-mode metrics.

Matching follows eval/README.md: text is case-folded with whitespace collapsed; a retrieval
hit is a source from the gold document on a gold page (PDF) or in the gold section (HTML,
Markdown); answer containment is the folded gold phrase inside the folded answer.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.answer.echo import ECHOED
from engine.answer.modes import MODES
from engine.answer.prompting import BASE_SYSTEM_PROMPT, DONT_KNOW, RAG_SYSTEM_PROMPT, says_dont_know
from engine.types import UserError

log = logging.getLogger(__name__)
MAX_LINE_BYTES = 1 << 20  # a question line longer than this is refused unread
FIELDS = {"id", "question", "doc", "pages", "section", "answer", "kind", "follows"}
METRICS = (
    "hit_at_1", "hit_at_5", "mrr", "answer_containment", "citation_precision",
    "absent_dont_know", "false_refusal", "gold_in_sources", "retrieval_s", "first_token_s",
    "total_s", "tokens_per_s", "prompt_echo", "quote_containment", "rerank_s", "quote_s",
)  # fmt: skip


@dataclass(frozen=True)
class Question:
    """One gold question; `kind == "absent"` means no document holds the answer."""

    id: str
    question: str
    doc: str | None = None
    pages: tuple[int, ...] = ()
    section: str | None = None
    answer: str | None = None
    kind: str | None = None
    follows: str | None = None  # the id of the question this one follows up

    @property
    def absent(self) -> bool:
        return self.kind == "absent"


# -- the question file ---------------------------------------------------------------


def load_questions(path: Path) -> list[Question]:
    """Read and check a question file; every problem is a UserError naming the line."""
    from engine.finetune.examples import read_lines

    try:
        with Path(path).open("rb") as handle:
            lines = list(read_lines(handle, MAX_LINE_BYTES))
    except FileNotFoundError:
        raise UserError(f"{path}: no such question file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the question file ({exc})") from None
    questions: list[Question] = []
    seen: set[str] = set()
    unknown: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        if isinstance(raw, int):  # read past, never held
            raise UserError(
                f"{path}:{number}: {raw / 1e6:.1f} MB long; a question line may hold "
                f"{MAX_LINE_BYTES // 1024} KB"
            )
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}:{number}: not UTF-8 text ({exc.reason})") from None
        if not line.strip():
            continue
        question = _parse_line(line, f"{path}:{number}", unknown, f"{Path(path).stem}:{number}")
        if question.id in seen:
            raise UserError(f"{path}:{number}: duplicate id '{question.id}'")
        if question.follows is not None and question.follows not in seen:
            raise UserError(
                f"{path}:{number}: 'follows' names '{question.follows}', which is not an "
                "earlier question in the file"
            )
        seen.add(question.id)
        questions.append(question)
    if not questions:
        raise UserError(f"{path}: no questions (expected one JSON object per line)")
    if unknown:  # people annotate their question files: say so once, then go on
        log.warning("%s: ignored unknown field(s) %s", path, ", ".join(sorted(unknown)))
    return questions


def _parse_line(line: str, where: str, unknown: set[str], default_id: str) -> Question:
    """One question; a line without an id is named by its file and line (`dev:12`)."""
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise UserError(f"{where}: not valid JSON ({exc.args[0]})") from None
    except RecursionError:
        raise UserError(f"{where}: nested too deeply to be a question") from None
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")
    unknown.update(set(row) - FIELDS)
    if row.get("id") is None:
        row["id"] = default_id
    for name in ("id", "question"):
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise UserError(f"{where}: '{name}' must be a non-empty string")
    for name in ("doc", "section", "answer", "kind", "follows"):
        if row.get(name) is not None and not isinstance(row[name], str):
            raise UserError(f"{where}: '{name}' must be a string")
    for name in ("id", "question", "doc", "section", "answer", "kind", "follows"):
        if isinstance(row.get(name), str) and not _encodable(row[name]):
            raise UserError(f"{where}: '{name}' holds an invalid character (a lone surrogate)")
    pages = row.get("pages") or []
    if not isinstance(pages, list) or not all(_positive_int(p) for p in pages):
        raise UserError(f"{where}: 'pages' must be a list of page numbers (1 and up)")
    if (pages or row.get("section")) and not row.get("doc"):
        raise UserError(f"{where}: 'pages' and 'section' need a 'doc'")
    if row.get("kind") == "absent" and (row.get("doc") or row.get("answer")):
        raise UserError(f"{where}: an absent question has no 'doc' or 'answer'")
    return Question(
        id=row["id"], question=row["question"], doc=row.get("doc"), pages=tuple(pages),
        section=row.get("section"), answer=row.get("answer"), kind=row.get("kind"),
        follows=row.get("follows"),
    )  # fmt: skip


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# -- scoring one question --------------------------------------------------------------

_CITATION = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")


_SOURCE_HEADER = re.compile(
    r'^[ \t]*\[\d+\] [^\n,]+\.\w{2,8}(?:, (?:page \d+|section "[^"\n]*"))?[ \t]*$', re.MULTILINE
)
_ECHO_MIN = 24  # characters of a system prompt that make a copy of it


def strip_echo(answer: str, question: str = "") -> tuple[str, bool]:
    """The answer without echoed prompt text, and whether there was any.

    A small base model often repeats its prompt; the system prompt's "like [1] or [2][3]"
    and "The documents do not say." must not count as citations or a don't-know, and a
    repeated source header ("[1] manual.pdf, page 2") is not a citation either. A copy of
    the question does not answer it, even when the question names the gold phrase.
    """
    if answer.strip() == ECHOED:  # the app stopped a copy of the prompt and said so
        return "", True
    text = answer
    for prompt in (RAG_SYSTEM_PROMPT, BASE_SYSTEM_PROMPT, question):
        text = _cut_copies(text, prompt) if prompt else text
    text = _SOURCE_HEADER.sub("", text)
    return text, text != answer


def _cut_copies(text: str, prompt: str) -> str:
    """Remove every run of at least _ECHO_MIN characters that also occurs in `prompt`.

    Runs, not one prefix: a model's copy drifts ("numbered source code below", a curly
    apostrophe) and then goes on copying.
    """
    kept: list[str] = []
    i = 0
    while i < len(text):
        n = _ECHO_MIN
        if text[i : i + n] not in prompt or i + n > len(text):
            kept.append(text[i])
            i += 1
            continue
        while i + n < len(text) and text[i : i + n + 1] in prompt:
            n += 1
        if text[i : i + n].strip(' "\n') == DONT_KNOW:  # a real answer, not an echo
            kept.append(text[i : i + n])
        i += n
    return "".join(kept)


def fold(text: str) -> str:
    """Case-fold and collapse whitespace; drop pdfium's U+FFFE soft-hyphen marks."""
    return " ".join(text.replace("\ufffe", "").casefold().split())


def contains_answer(generated: str, gold: str) -> bool:
    """The folded gold phrase occurs in the folded answer (a line-end hyphen joined or kept)."""
    target = fold(gold)
    if not target:
        return False
    text = fold(generated)
    joined = re.sub(r"(\w)- (\w)", r"\1\2", text)
    kept = re.sub(r"(\w)- (\w)", r"\1-\2", text)
    return any(target in variant for variant in (text, joined, kept))


def is_hit(source: Any, question: Question) -> bool:
    """A source from the gold document, on a gold page or in the gold section."""
    if not question.doc or not _same_doc(source, question.doc):
        return False
    if question.pages:
        return source.page in question.pages
    if question.section:
        return fold(source.section or "") == fold(question.section)
    return True


def _same_doc(source: Any, doc: str) -> bool:
    gold = doc.replace("\\", "/").strip("/")
    path = str(getattr(source, "path", "") or "").replace("\\", "/")
    return source.document == gold or path.endswith("/" + gold)


def first_hit_rank(sources: Sequence[Any], question: Question) -> int | None:
    """1-based position of the first gold source, or None."""
    return next((i for i, s in enumerate(sources, 1) if is_hit(s, question)), None)


def cited_numbers(answer: str) -> list[int]:
    """Source numbers cited as [1], [2][3] or [1, 2], in order of appearance."""
    return [int(n) for group in _CITATION.findall(answer) for n in group.split(",")]


def citation_counts(answer: str, sources: Sequence[Any], question: Question) -> tuple[int, int]:
    """(gold citations, all citations); a number with no such source counts as wrong."""
    cited = cited_numbers(answer)
    gold = sum(1 for n in cited if 1 <= n <= len(sources) and is_hit(sources[n - 1], question))
    return gold, len(cited)


@dataclass
class _Source:
    """A source as saved in a checkpoint: enough to score it."""

    document: str
    path: str
    page: int | None
    section: str | None
    rank: int | None = None  # the search's rank; the prompt may list sources in another order


# -- aggregation and rendering -----------------------------------------------------------


def _mean(values: Iterable[float]) -> float | None:
    items = list(values)
    return round(sum(items) / len(items), 4) if items else None


def _median(values: Iterable[float]) -> float | None:
    items = list(values)
    return round(statistics.median(items), 4) if items else None


def rank_metrics(ranks: list[int | None], seconds: list[float]) -> dict[str, Any]:
    return {
        "n": len(ranks),
        "hit_at_1": _mean(1.0 if r == 1 else 0.0 for r in ranks),
        "hit_at_5": _mean(1.0 if r is not None and r <= 5 else 0.0 for r in ranks),
        "mrr": _mean(1.0 / r if r else 0.0 for r in ranks),
        "retrieval_s": _median(seconds),
    }


def score_mode(rows: list[tuple[Question, dict[str, Any]]], mode: str) -> dict[str, Any]:
    """Aggregate saved answers of one mode into the report's metrics."""
    answerable = [(q, r) for q, r in rows if not q.absent and q.doc]
    retrieves = MODES[mode].retrieves
    ranks = [first_hit_rank(_ranked(r), q) for q, r in answerable] if retrieves else []
    clean = {id(r): strip_echo(r["answer"], q.question) for q, r in rows}
    gold, cited = 0, 0
    for question, record in answerable:
        g, c = citation_counts(clean[id(record)][0], _sources(record), question)
        gold, cited = gold + g, cited + c
    timings = [r["timings"] for _, r in rows]
    metrics = rank_metrics(ranks, [t["retrieval_s"] for t in timings]) if retrieves else {}
    return {
        **dict.fromkeys(METRICS), **metrics, "n": len(rows),
        "answer_containment": _mean(
            1.0 if contains_answer(clean[id(r)][0], q.answer) else 0.0
            for q, r in answerable if q.answer
        ),
        "prompt_echo": _mean(1.0 if clean[id(r)][1] else 0.0 for _, r in rows),
        "quote_containment": _quote_containment(answerable) if retrieves else None,
        "citation_precision": round(gold / cited, 4) if cited else None,
        "cited": cited,
        "absent_dont_know": _mean(
            1.0 if says_dont_know(clean[id(r)][0]) else 0.0 for q, r in rows if q.absent
        ),
        "false_refusal": _mean(
            1.0 if says_dont_know(clean[id(r)][0]) else 0.0 for _, r in answerable
        ),
        # Of those, the ones the reader's bar refused before any model was asked.
        "absent_not_covered": _mean(
            1.0 if r.get("not_covered") else 0.0 for q, r in rows if q.absent
        ) if retrieves else None,
        "false_not_covered": _mean(
            1.0 if r.get("not_covered") else 0.0 for _, r in answerable
        ) if retrieves else None,
        "gold_in_sources": _mean(1.0 if r is not None else 0.0 for r in ranks) if ranks else None,
        "first_token_s": _median(t["first_token_s"] for t in timings),
        "total_s": _median(t["total_s"] for t in timings),
        "tokens_per_s": _median(t["tokens_per_s"] for t in timings if t["tokens"]),
        "rerank_s": _median(t["rerank_s"] for t in timings if t.get("rerank_s")),
        "quote_s": _median(t["quote_s"] for t in timings if t.get("quote_s")),
    }  # fmt: skip


def _quote_containment(answerable: list[tuple[Question, dict[str, Any]]]) -> float | None:
    """Share of answerable questions whose quote holds the gold phrase (None: no answer
    of these had a reader, e.g. records saved before it)."""
    if not any("quote" in r for _, r in answerable):
        return None
    return _mean(
        1.0 if r.get("quote") and contains_answer(r["quote"]["text"], q.answer or "") else 0.0
        for q, r in answerable
        if q.answer
    )


def _sources(record: dict[str, Any]) -> list[_Source]:
    """A record's sources as numbered in the prompt (what citations point at)."""
    return [_Source(**s) for s in record["sources"]]


def _ranked(record: dict[str, Any]) -> list[_Source]:
    """A record's sources in the search's order (hit@k, MRR): the grounding adapter's
    prompt lists them best last; records saved before ranks were kept are in rank order."""
    sources = _sources(record)
    if all(s.rank is not None for s in sources):
        sources.sort(key=lambda s: s.rank or 0)
    return sources


def answer_detail(question: Question, record: dict[str, Any]) -> dict[str, Any]:
    rank = first_hit_rank(_ranked(record), question) if record["sources"] else None
    text, echoed = strip_echo(record["answer"], question.question)
    contained = bool(question.answer) and contains_answer(text, question.answer or "")
    quote: dict[str, Any] | None = record.get("quote")
    quoted = quote is not None and contains_answer(quote["text"], question.answer or "")
    return {
        "id": question.id, "mode": record["mode"], "rank": rank, "contained": contained,
        "dont_know": says_dont_know(text), "echo": echoed, "answer": record["answer"],
        "quote": quote, "quote_contained": quoted,
        "not_covered": bool(record.get("not_covered")),
    }  # fmt: skip
