"""Checks the grounding adapter's training questions against the training corpus.

Every answerable question's gold location is verified with real extraction, as
tests/test_questions.py does for the development set: the gold phrase occurs on a gold
PDF page (pypdfium2 text) or under the gold heading of an HTML page, and the ideal
answer contains it. Absent questions' key terms occur in no document.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.test_questions import PdfPages, contains, fold, html_sections

REPO = Path(__file__).resolve().parent.parent
FOLDER = REPO / "training" / "questions"
CORPUS = REPO.parent / "shared" / "training-corpus"
MIN_ANSWERABLE, MIN_ABSENT = 600, 80
MAX_ANSWER_CHARS, MAX_IDEAL_WORDS = 60, 45
DOC_SETS = ("gnuplot.pdf", "asymptote.pdf", "borg-docs/", "git-user-manual.html",
            "python-tutorial/", "sqlite-docs/")  # fmt: skip
ANSWERABLE_FIELDS = {"id", "question", "doc", "answer", "ideal"}


def load() -> list[dict]:
    rows = []
    for path in sorted(FOLDER.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                row["_where"] = f"{path.name}:{number}"
                rows.append(row)
    return rows


QS = load()
ANSWERABLE = [q for q in QS if q.get("kind") != "absent"]
ABSENT = [q for q in QS if q.get("kind") == "absent"]


@pytest.fixture(scope="module")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"training corpus not found at {CORPUS}")
    return CORPUS


def test_counts_ids_and_duplicates() -> None:
    assert len(ANSWERABLE) >= MIN_ANSWERABLE and len(ABSENT) >= MIN_ABSENT
    ids = Counter(q["id"] for q in QS)
    assert not [i for i, n in ids.items() if n > 1]
    texts = Counter(fold(q["question"]) for q in QS)
    assert not [t for t, n in texts.items() if n > 1]


def test_rows_are_well_formed() -> None:
    problems = []
    for q in ANSWERABLE:
        missing = ANSWERABLE_FIELDS - set(q)
        location = q.get("pages") if str(q.get("doc")).endswith(".pdf") else q.get("section")
        if missing or not location:
            problems.append(f"{q['_where']}: missing {sorted(missing) or 'pages/section'}")
        elif len(q["answer"]) > MAX_ANSWER_CHARS or len(q["ideal"].split()) > MAX_IDEAL_WORDS:
            problems.append(f"{q['_where']}: answer or ideal too long")
        elif not contains(q["ideal"], q["answer"]):
            problems.append(f"{q['_where']}: ideal answer lacks the gold phrase")
    for q in ABSENT:
        if not q.get("terms") or not q.get("topic") or len(q["question"]) < 10:
            problems.append(f"{q['_where']}: absent rows need topic and terms")
    assert not problems, problems[:20]


def test_questions_cover_every_document(corpus: Path) -> None:
    docs = Counter(q["doc"] for q in ANSWERABLE)
    for prefix in DOC_SETS:
        assert sum(n for d, n in docs.items() if d.startswith(prefix)) >= 30, prefix
    for folder in ("borg-docs", "python-tutorial", "sqlite-docs"):
        for page in sorted((corpus / folder).glob("*.html")):
            assert docs[f"{folder}/{page.name}"] >= 1, f"no question about {folder}/{page.name}"


def test_gold_pages_hold_the_answers(corpus: Path) -> None:
    pages = PdfPages(corpus)
    wanted: dict[str, set[int]] = {}
    for q in ANSWERABLE:
        if q["doc"].endswith(".pdf"):
            wanted.setdefault(q["doc"], set()).update(q["pages"])
    for doc, numbers in wanted.items():
        pages.load(doc, numbers)
    wrong = [q["_where"] for q in ANSWERABLE
             if q["doc"].endswith(".pdf") and not pages.answer_on_gold_page(q)]  # fmt: skip
    assert not wrong, wrong[:20]


def test_gold_sections_hold_the_answers(corpus: Path) -> None:
    sections: dict[str, list[tuple[str, str]]] = {}
    wrong = []
    for q in ANSWERABLE:
        if q["doc"].endswith(".pdf"):
            continue
        if q["doc"] not in sections:
            sections[q["doc"]] = html_sections(corpus / q["doc"])
        wanted = re.sub(r"\s+", " ", q["section"]).strip()
        bodies = [body for heading, body in sections[q["doc"]] if heading == wanted]
        if not any(contains(body, q["answer"]) for body in bodies):
            wrong.append(f"{q['_where']}: {q['answer']!r} not under {q['section']!r}")
    assert not wrong, wrong[:20]


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


@pytest.mark.slow
def test_absent_terms_are_in_no_document(corpus: Path) -> None:
    import pypdfium2 as pdfium

    texts = []
    for path in sorted(corpus.rglob("*")):
        if path.suffix == ".pdf":
            pdf = pdfium.PdfDocument(str(path))
            texts += [page.get_textpage().get_text_range() for page in pdf]
            pdf.close()
        elif path.suffix == ".html":
            parser = _Text()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            texts.append(" ".join(parser.parts))
    everything = fold(" ".join(texts))
    found = [(q["id"], t) for q in ABSENT for t in q["terms"] if fold(t) in everything]
    assert not found, found[:20]
