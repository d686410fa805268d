"""Checks the grounding adapter's training questions against the training corpus.

Every file model_builds/questions/*.jsonl is read (format: model_builds/questions/README.md). The
gold data is verified with real extraction, as tests/engine/test_questions.py does for the
development set and with its helpers: an answerable question's gold phrase occurs in the
pypdfium2 text of one of its gold PDF pages, or its section is a real h1-h6 heading of its
HTML page and the phrase occurs under that heading; the ideal answer contains the phrase.
Absent questions' key terms occur in no document (the slow test: it extracts everything).
model_builds/heldout/*.jsonl (questions written after training, for measuring) is checked the
same way, and must not repeat a training question.
Only gold pages are extracted otherwise, so the module runs in a few seconds.

The whole module is skipped when ../shared/training-corpus is not there.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.engine.test_questions import (
    PdfPages,
    contains,
    fold,
    fold_dehyphenated,
    fold_joined,
    html_problem,
    html_sections,
)

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "model_builds" / "questions"
HELDOUT_FOLDER = REPO / "model_builds" / "heldout"
CORPUS = REPO.parent / "shared" / "training-corpus"

if not CORPUS.is_dir():
    pytest.skip(f"training corpus not found at {CORPUS}", allow_module_level=True)

PDF_DOCS = ("gnuplot.pdf", "asymptote.pdf")
HTML_FOLDERS = ("borg-docs", "python-tutorial", "sqlite-docs")  # every page needs a question
DOC_SETS = {  # topic -> doc, or doc prefix for a folder of pages
    "gnuplot": "gnuplot.pdf",
    "asymptote": "asymptote.pdf",
    "borg": "borg-docs/",
    "git": "git-user-manual.html",
    "python": "python-tutorial/",
    "sqlite": "sqlite-docs/",
}
TOPICS = (*DOC_SETS, "general")
MIN_ANSWERABLE = 600
MIN_ABSENT = 80
MIN_PER_SET = 30
MAX_ANSWER_CHARS = 60
MAX_IDEAL_WORDS = 45
MAX_TERMS = 3
ANSWERABLE_FIELDS = ("id", "question", "doc", "answer", "ideal")
ABSENT_FIELDS = ("id", "question", "kind", "topic", "terms")
GOLD_FIELDS = ("doc", "pages", "section", "answer", "ideal")
KNOWN_FIELDS = {*ANSWERABLE_FIELDS, *ABSENT_FIELDS, "pages", "section"}


def load(folder: Path = FOLDER) -> tuple[list[tuple[str, dict]], list[str]]:
    """(where, row) for every JSON object line, and what is wrong with the other lines."""
    rows, errors = [], []
    for path in sorted(folder.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"{where}: not JSON: {exc}")
                continue
            if isinstance(row, dict):
                rows.append((where, row))
            else:
                errors.append(f"{where}: not a JSON object")
    return rows, errors


ROWS, LINE_ERRORS = load()
ABSENT = [(w, q) for w, q in ROWS if q.get("kind") == "absent"]
ANSWERABLE = [(w, q) for w, q in ROWS if q.get("kind") != "absent"]
HELDOUT, HELDOUT_ERRORS = load(HELDOUT_FOLDER)
HELDOUT_ABSENT = [(w, q) for w, q in HELDOUT if q.get("kind") == "absent"]


def label(where: str, q: dict) -> str:
    return f"{where} {q.get('id')}"


def is_pdf(q: dict) -> bool:
    return str(q.get("doc", "")).endswith(".pdf")


def _nonempty_str(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _good_pages(pages) -> bool:
    return (
        isinstance(pages, list)
        and bool(pages)
        and all(isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in pages)
        and len(set(pages)) == len(pages)
    )


def gold_ready(q: dict) -> bool:
    """Whether the row is shaped well enough for the gold checks (else the format test says)."""
    if not all(_nonempty_str(q.get(key)) for key in ANSWERABLE_FIELDS):
        return False
    if is_pdf(q):
        return q["doc"] in PDF_DOCS and _good_pages(q.get("pages"))
    return q["doc"].endswith(".html") and _nonempty_str(q.get("section"))


GOLD = [(w, q) for w, q in ANSWERABLE if gold_ready(q)]


def shape_problems(q: dict) -> list[str]:
    problems = []
    if not _nonempty_str(q.get("id")):
        problems.append("missing id")
    if not isinstance(q.get("question"), str) or len(q["question"].strip()) < 10:
        problems.append("missing or too short question")
    unknown = sorted(set(q) - KNOWN_FIELDS)
    if unknown:
        problems.append(f"unknown fields {unknown}")
    kind = q.get("kind")
    if kind == "absent":
        missing = [key for key in ABSENT_FIELDS if key not in q]
        leaked = [key for key in GOLD_FIELDS if key in q]
        terms = q.get("terms")
        if missing:
            problems.append(f"missing {missing}")
        if leaked:
            problems.append(f"absent questions carry no {leaked}")
        if q.get("topic") not in TOPICS:
            problems.append(f"topic {q.get('topic')!r} is not one of {TOPICS}")
        if not (
            isinstance(terms, list)
            and 1 <= len(terms) <= MAX_TERMS
            and all(_nonempty_str(t) for t in terms)
        ):
            problems.append(f"terms must be a list of 1-{MAX_TERMS} non-empty strings")
        return problems
    if kind is not None:
        problems.append(f"unknown kind {kind!r}")
    for key in ("doc", "answer", "ideal"):
        if not _nonempty_str(q.get(key)):
            problems.append(f"missing {key}")
    if "topic" in q or "terms" in q:
        problems.append("topic/terms belong to absent questions")
    doc = q.get("doc")
    if not isinstance(doc, str):
        return problems
    if is_pdf(q):
        if doc not in PDF_DOCS:
            problems.append(f"doc {doc!r} is not one of {PDF_DOCS}")
        if not _good_pages(q.get("pages")):
            problems.append("pages must be a non-empty list of distinct positive ints")
        if "section" in q:
            problems.append("PDF questions have pages, not a section")
    elif doc.endswith(".html"):
        if not _nonempty_str(q.get("section")):
            problems.append("HTML questions need a section heading")
        if "pages" in q:
            problems.append("HTML questions have a section, not pages")
    else:
        problems.append(f"doc {doc!r} is neither a PDF nor an HTML page")
    return problems


def report(problems: list[str], limit: int = 40) -> str:
    more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} problem(s):\n" + "\n".join(problems[:limit]) + more


@pytest.fixture(scope="module")
def gold_pages() -> PdfPages:
    """The gold pages of every PDF question, and only those."""
    pages = PdfPages(CORPUS)
    wanted: dict[str, set[int]] = {doc: set() for doc in PDF_DOCS}
    for _, q in GOLD:
        if is_pdf(q):
            wanted[q["doc"]].update(q["pages"])
    for doc, numbers in wanted.items():
        pages.load(doc, numbers)
    return pages


# --------------------------------------------------------------------------- format


def test_every_line_is_a_json_object():
    assert ROWS, f"no questions in {FOLDER}"
    assert not LINE_ERRORS, report(LINE_ERRORS)


def test_rows_have_the_fields_the_readme_names():
    problems = [f"{label(w, q)}: {p}" for w, q in ROWS for p in shape_problems(q)]
    assert not problems, report(problems)


def test_ids_are_unique():
    where: dict[str, list[str]] = {}
    for w, q in ROWS:
        where.setdefault(str(q.get("id")), []).append(w)
    duplicates = [f"{qid}: {places}" for qid, places in where.items() if len(places) > 1]
    assert not duplicates, report(duplicates)


def test_question_texts_are_unique():
    where: dict[str, list[str]] = {}
    for w, q in ROWS:
        if isinstance(q.get("question"), str):
            where.setdefault(fold(q["question"]), []).append(label(w, q))
    duplicates = [f"{text!r}: {places}" for text, places in where.items() if len(places) > 1]
    assert not duplicates, report(duplicates)


def test_answers_are_short_phrases():
    long = [
        f"{label(w, q)}: {len(q['answer'])} chars"
        for w, q in ANSWERABLE
        if isinstance(q.get("answer"), str) and len(q["answer"]) > MAX_ANSWER_CHARS
    ]
    assert not long, report(long)


def test_ideal_answers_are_short_and_hold_the_answer():
    problems = []
    for w, q in ANSWERABLE:
        ideal, answer = q.get("ideal"), q.get("answer")
        if not (isinstance(ideal, str) and isinstance(answer, str)):
            continue  # reported by the format test
        words = len(ideal.split())
        if words > MAX_IDEAL_WORDS:
            problems.append(f"{label(w, q)}: ideal answer has {words} words")
        if not contains(ideal, answer):
            problems.append(f"{label(w, q)}: ideal answer lacks {answer!r}")
    assert not problems, report(problems)


# --------------------------------------------------------------------------- coverage


def test_enough_questions():
    """Fails while the question files are still being written."""
    assert len(ANSWERABLE) >= MIN_ANSWERABLE, f"{len(ANSWERABLE)} answerable questions"
    assert len(ABSENT) >= MIN_ABSENT, f"{len(ABSENT)} absent questions"


def test_every_document_set_has_questions():
    counts = Counter()
    for _, q in ANSWERABLE:
        for topic, doc in DOC_SETS.items():
            if str(q.get("doc", "")).startswith(doc):
                counts[topic] += 1
    thin = [f"{topic}: {counts[topic]}" for topic in DOC_SETS if counts[topic] < MIN_PER_SET]
    assert not thin, f"fewer than {MIN_PER_SET} questions on: {thin}"


def test_every_html_page_has_a_question():
    asked = {q.get("doc") for _, q in ANSWERABLE}
    pages = [
        f"{folder}/{path.name}"
        for folder in HTML_FOLDERS
        for path in sorted((CORPUS / folder).glob("*.html"))
    ]
    assert len(pages) > len(HTML_FOLDERS)
    unasked = [page for page in pages if page not in asked]
    assert not unasked, f"no question about: {unasked}"


def test_absent_questions_span_every_topic():
    topics = Counter(q.get("topic") for _, q in ABSENT)
    assert not [t for t in TOPICS if not topics[t]], f"absent questions per topic: {topics}"


# --------------------------------------------------------------------------- corpus


def test_documents_exist():
    missing = [f"{label(w, q)}: {q['doc']}" for w, q in GOLD if not (CORPUS / q["doc"]).is_file()]
    assert not missing, report(missing)


def test_pdf_answers_are_on_gold_pages(gold_pages: PdfPages):
    problems = []
    for w, q in GOLD:
        if not is_pdf(q):
            continue
        count = gold_pages.counts[q["doc"]]
        outside = [p for p in q["pages"] if p > count]
        if outside:
            problems.append(f"{label(w, q)}: pages {outside} outside 1..{count}")
        elif not gold_pages.answer_on_gold_page(q):
            problems.append(f"{label(w, q)}: {q['answer']!r} not on pages {q['pages']}")
    assert not problems, report(problems)


def test_heldout_questions_check_out_and_are_not_training_questions():
    """model_builds/heldout/: new questions for measuring, never in the training data.

    Answerable ones are checked like HTML training questions; absent ones by their shape here
    and by their terms in the slow test below.
    """
    assert not HELDOUT_ERRORS, report(HELDOUT_ERRORS)
    heldout = [q for _, q in HELDOUT]
    assert len(heldout) >= 100
    answerable = [q for q in heldout if q.get("kind") != "absent"]
    problems = [html_problem(CORPUS, q, folder="") for q in answerable]
    assert not [p for p in problems if p], [p for p in problems if p][:5]
    shapes = [f"{label(w, q)}: {p}" for w, q in HELDOUT_ABSENT for p in shape_problems(q)]
    assert not shapes, report(shapes)
    topics = Counter(q.get("topic") for _, q in HELDOUT_ABSENT)
    assert not [t for t in DOC_SETS if not topics[t]], f"held-out absent per topic: {topics}"
    trained = {fold(q["question"]) for _, q in ROWS}
    assert not [q["id"] for q in heldout if fold(q["question"]) in trained]
    assert len({q["id"] for q in heldout}) == len(heldout)
    assert not {q["id"] for q in heldout} & {q.get("id") for _, q in ROWS}


def test_html_sections_are_headings_holding_the_answer():
    problems = []
    for w, q in GOLD:
        if not is_pdf(q) and (CORPUS / q["doc"]).is_file():
            problem = html_problem(CORPUS, q, folder="")
            if problem:
                problems.append(f"{w} {problem}")
    assert not problems, report(problems)


def test_questions_are_not_copied_from_the_gold_passage(gold_pages: PdfPages):
    """A question lifted verbatim from its passage would make retrieval trivially easy."""
    copied = []
    for w, q in GOLD:
        asked = fold(q["question"]).rstrip("?. ")
        if is_pdf(q):
            passages = [gold_pages.texts.get((q["doc"], p), "") for p in q["pages"]]
        elif (CORPUS / q["doc"]).is_file():
            wanted = fold(q["section"])
            sections = html_sections(CORPUS / q["doc"])
            passages = [body for heading, body in sections if fold(heading) == wanted]
        else:
            continue
        if any(asked in fold(text) for text in passages):
            copied.append(label(w, q))
    assert not copied, report(copied)


# --------------------------------------------------------------------------- absent


def corpus_texts() -> dict[str, list[str]]:
    """Every document's whole text, in the three folded forms contains() tries."""
    import pypdfium2 as pdfium

    texts: dict[str, str] = {}
    for doc in PDF_DOCS:
        pdf = pdfium.PdfDocument(str(CORPUS / doc))
        try:
            parts = []
            for index in range(len(pdf)):
                page = pdf[index]
                textpage = page.get_textpage()
                try:
                    parts.append(textpage.get_text_range())
                finally:
                    textpage.close()
                    page.close()
            texts[doc] = "\n".join(parts)
        finally:
            pdf.close()
    for path in sorted(CORPUS.rglob("*.html")):
        sections = html_sections(path)
        texts[path.relative_to(CORPUS).as_posix()] = " ".join(f"{h}\n{b}" for h, b in sections)
    folds = (fold, fold_dehyphenated, fold_joined)
    return {doc: [f(text) for f in folds] for doc, text in texts.items()}


@pytest.fixture(scope="module")
def everything() -> dict[str, list[str]]:
    return corpus_texts()


def documents_with(everything: dict[str, list[str]], term: str) -> list[str]:
    wanted = fold(term)
    return [doc for doc, variants in everything.items() if any(wanted in v for v in variants)]


def terms_found(everything: dict[str, list[str]], rows: list[tuple[str, dict]]) -> list[str]:
    """Each absent question's key term that some document does contain, and where."""
    found = []
    for w, q in rows:
        for term in q.get("terms") or []:
            if isinstance(term, str) and term.strip():
                docs = documents_with(everything, term)
                if docs:
                    found.append(f"{label(w, q)}: {term!r} in {docs[:3]}")
    return found


@pytest.mark.slow
def test_absent_terms_are_in_no_document(everything: dict[str, list[str]]):
    """Extracts every page of the corpus (a few seconds) and greps for each key term."""
    assert len(everything) > len(PDF_DOCS) + len(HTML_FOLDERS)
    found = terms_found(everything, ABSENT)
    assert not found, report(found)


@pytest.mark.slow
def test_heldout_absent_terms_are_in_no_document(everything: dict[str, list[str]]):
    """The same for model_builds/heldout/'s absent questions."""
    assert len(everything) > len(PDF_DOCS) + len(HTML_FOLDERS)
    assert HELDOUT_ABSENT, f"no absent questions in {HELDOUT_FOLDER}"
    found = terms_found(everything, HELDOUT_ABSENT)
    assert not found, report(found)


# --------------------------------------------------------------------------- the checks can fail


def test_checker_rejects_a_wrong_pdf_page():
    pages = PdfPages(CORPUS)
    pages.load("asymptote.pdf", {8, 9})
    right = {"doc": "asymptote.pdf", "pages": [8], "answer": "GPL  Ghostscript version 9.56"}
    assert pages.answer_on_gold_page(right)
    assert not pages.answer_on_gold_page({**right, "pages": [9]})


def test_checker_rejects_a_wrong_html_section():
    right = {
        "id": "probe",
        "doc": "sqlite-docs/autoinc.html",
        "section": "1. Summary",
        "answer": "usually not needed",
    }
    assert html_problem(CORPUS, right, folder="") is None
    assert html_problem(CORPUS, {**right, "section": "2. Background"}, folder="") is not None
    assert html_problem(CORPUS, {**right, "section": "No Such Heading"}, folder="") is not None
    assert html_problem(CORPUS, {**right, "answer": "always needed"}, folder="") is not None


def test_checker_finds_an_absent_term_in_a_document():
    texts = ["see the git lfs chapter", "see the git lfs chapter", "see the git lfs chapter"]
    everything = {"git-user-manual.html": texts}
    rows = [("probe.jsonl:1", {"id": "probe", "terms": ["rerere", "Git LFS"]})]
    assert terms_found(everything, rows) == [
        "probe.jsonl:1 probe: 'Git LFS' in ['git-user-manual.html']"
    ]
    assert terms_found(everything, [("probe.jsonl:1", {"terms": ["rerere"]})]) == []


def test_sphinx_pilcrows_are_not_part_of_headings():
    headings = [h for h, _ in html_sections(CORPUS / "python-tutorial" / "classes.html")]
    assert "9. Classes" in headings
    assert not [h for h in headings if h.endswith("¶")]


def test_checker_flags_malformed_rows():
    good = {"id": "x-1", "question": "how do I do the thing?", "doc": "gnuplot.pdf",
            "pages": [3], "answer": "thing", "ideal": "Do the thing."}  # fmt: skip
    assert shape_problems(good) == []
    assert shape_problems({**good, "pages": []})
    assert shape_problems({**good, "section": "Intro"})
    assert shape_problems({**good, "doc": "borg-docs/prune.html"})  # HTML without a section
    absent = {"id": "absent-x", "question": "what is the capital of Peru?", "kind": "absent",
              "topic": "general", "terms": ["peru"]}  # fmt: skip
    assert shape_problems(absent) == []
    assert shape_problems({**absent, "answer": "Lima"})
    assert shape_problems({**absent, "terms": []})
    assert shape_problems({**absent, "topic": "ocaml"})
