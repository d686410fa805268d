"""Checks the development question set (eval/dev-questions.jsonl) against the real corpus.

The gold data is verified with real extraction, not trusted: for PDFs the answer phrase
must occur in the pypdfium2 text of one of the gold pages; for the FreedomBox HTML pages
the "section" must be a real h1-h6 heading of the file and the answer must occur in the
text that follows that heading (before the next heading). Only gold pages are extracted,
so the whole module runs in about a second.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = REPO / "eval" / "dev-questions.jsonl"

PDF_DOCS = ("camlidl-1.04.doc.pdf", "docbook-xsl-reference.pdf", "freedombox-manual.pdf")
HTML_DIR = "freedombox-manual"  # holds the *.part.html pages
MIN_QUESTIONS = 60
ABSENT_COUNT = 10
MIN_PER_FILE = 8
MAX_ANSWER_CHARS = 60
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}

# pdfium marks a hyphenation point at a line end with U+FFFE; soft hyphens do the same.
_INVISIBLE_HYPHENS = ("\ufffe", "\u00ad")


def fold(text: str) -> str:
    """Case- and whitespace-folded text, with pdfium's line-end hyphen markers removed."""
    for mark in _INVISIBLE_HYPHENS:
        text = text.replace(mark, "")
    return re.sub(r"\s+", " ", text).strip().lower()


def fold_dehyphenated(text: str) -> str:
    """Like fold(), but also joins words split by a visible hyphen at a line break."""
    return fold(re.sub(r"-[ \t]*\r?\n\s*", "", text))


def fold_joined(text: str) -> str:
    """Like fold(), but keeps a real hyphen that ends a line ("sans-" + "serif")."""
    return fold(re.sub(r"-[ \t]*\r?\n\s*", "-", text))


def contains(haystack: str, needle: str) -> bool:
    wanted = fold(needle)
    return any(wanted in f(haystack) for f in (fold, fold_dehyphenated, fold_joined))


def load_questions() -> list[dict]:
    rows = []
    for number, line in enumerate(QUESTIONS.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:  # pragma: no cover - reported as failure
                pytest.fail(f"line {number}: not JSON: {exc}")
    return rows


QS = load_questions()


def is_absent(q: dict) -> bool:
    return q.get("kind") == "absent"


def answerable() -> list[dict]:
    return [q for q in QS if not is_absent(q)]


# --------------------------------------------------------------------------- extraction


class PdfPages:
    """Extracts only the requested pages of each PDF, once per test session."""

    def __init__(self, corpus: Path) -> None:
        self.corpus = corpus
        self.counts: dict[str, int] = {}
        self.texts: dict[tuple[str, int], str] = {}

    def load(self, doc: str, pages: set[int]) -> None:
        import pypdfium2 as pdfium

        pdf = pdfium.PdfDocument(str(self.corpus / doc))
        try:
            self.counts[doc] = len(pdf)
            for number in sorted(pages):
                if not 1 <= number <= len(pdf) or (doc, number) in self.texts:
                    continue
                page = pdf[number - 1]
                textpage = page.get_textpage()
                try:
                    self.texts[(doc, number)] = textpage.get_text_range()
                finally:
                    textpage.close()
                    page.close()
        finally:
            pdf.close()

    def answer_on_gold_page(self, q: dict) -> bool:
        return any(contains(self.texts.get((q["doc"], p), ""), q["answer"]) for p in q["pages"])


class _Sections(HTMLParser):
    """Splits an HTML page into (heading text, text that follows it) pairs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[list[str]] = [["", ""]]  # text before the first heading
        self.in_heading: str | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in HEADINGS:
            self.in_heading = tag
            self.sections.append(["", ""])
        elif tag in ("p", "li", "td", "th", "pre", "br", "div"):
            self._add(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == self.in_heading:
            self.in_heading = None

    def handle_data(self, data: str) -> None:
        self._add(data)

    def _add(self, data: str) -> None:
        self.sections[-1][0 if self.in_heading else 1] += data


@functools.cache
def html_sections(path: Path) -> list[tuple[str, str]]:
    """(heading, following text) pairs of one page, parsed once per session."""
    parser = _Sections()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    # Sphinx ends every heading with a "¶" permalink; it is not part of the title.
    return [
        (re.sub(r"\s+", " ", h).strip().rstrip("¶").strip(), body) for h, body in parser.sections
    ]


def html_problem(corpus: Path, q: dict, folder: str = HTML_DIR) -> str | None:
    """None when the HTML question checks out, else what is wrong.

    q["doc"] is relative to corpus / folder (the training corpus passes folder="").
    """
    path = corpus / folder / q["doc"]
    if not path.is_file():
        return f"{q['id']}: no such HTML file {q['doc']}"
    sections = html_sections(path)
    wanted = re.sub(r"\s+", " ", q["section"]).strip()
    bodies = [body for heading, body in sections if heading == wanted]
    if any(contains(body, q["answer"]) for body in bodies):
        return None  # the common case, without folding the whole page
    full_text = " ".join(h + " " + body for h, body in sections)
    if not contains(full_text, q["answer"]):
        return f"{q['id']}: answer {q['answer']!r} not in {q['doc']}"
    if not bodies:
        return f"{q['id']}: no h1-h6 heading {q['section']!r} in {q['doc']}"
    return f"{q['id']}: answer {q['answer']!r} is not under heading {q['section']!r}"


@pytest.fixture(scope="module")
def pdf_pages(corpus: Path) -> PdfPages:
    pages = PdfPages(corpus)
    wanted: dict[str, set[int]] = {}
    for q in answerable():
        if q["doc"].endswith(".pdf"):
            wanted.setdefault(q["doc"], set()).update(q["pages"])
    for doc, numbers in wanted.items():
        if (corpus / doc).is_file():
            pages.load(doc, numbers)
    return pages


# --------------------------------------------------------------------------- format


def test_enough_questions_and_unique_ids():
    assert len(QS) >= MIN_QUESTIONS
    ids = [q.get("id") for q in QS]
    assert all(isinstance(i, str) and i for i in ids)
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates, f"duplicate ids: {duplicates}"


def test_every_row_is_well_formed():
    problems = []
    for q in QS:
        qid = q.get("id")
        if not isinstance(q.get("question"), str) or len(q["question"].strip()) < 10:
            problems.append(f"{qid}: missing or too short question")
        kind = q.get("kind")
        if kind is not None and kind != "absent":
            problems.append(f"{qid}: unknown kind {kind!r}")
        if is_absent(q):
            continue
        doc, answer = q.get("doc"), q.get("answer")
        if not isinstance(doc, str) or not (doc in PDF_DOCS or doc.endswith(".part.html")):
            problems.append(f"{qid}: doc {doc!r} is not a corpus file name")
            continue
        if not isinstance(answer, str) or not answer.strip():
            problems.append(f"{qid}: missing answer")
        elif len(answer) > MAX_ANSWER_CHARS:
            problems.append(f"{qid}: answer is not a short phrase ({len(answer)} chars)")
        if doc.endswith(".pdf"):
            pages = q.get("pages")
            if (
                not isinstance(pages, list)
                or not pages
                or not all(isinstance(p, int) and not isinstance(p, bool) for p in pages)
                or len(set(pages)) != len(pages)
            ):
                problems.append(f"{qid}: pages must be a non-empty list of distinct ints")
            if "section" in q:
                problems.append(f"{qid}: PDF questions have pages, not a section")
        else:
            if not isinstance(q.get("section"), str) or not q["section"].strip():
                problems.append(f"{qid}: HTML questions need a section heading")
            if "pages" in q:
                problems.append(f"{qid}: HTML questions have a section, not pages")
    assert not problems, "\n".join(problems)


def test_exactly_ten_absent_questions_without_gold_data():
    absent = [q for q in QS if is_absent(q)]
    assert len(absent) == ABSENT_COUNT
    for q in absent:
        leaked = [key for key in ("answer", "pages", "section", "doc") if key in q]
        assert not leaked, f"{q['id']}: absent questions must not carry {leaked}"


def test_every_file_is_covered():
    counts = Counter("html" if q["doc"].endswith(".html") else q["doc"] for q in answerable())
    for doc in (*PDF_DOCS, "html"):
        assert counts[doc] >= MIN_PER_FILE, f"only {counts[doc]} questions on {doc}"
    html_files = {q["doc"] for q in answerable() if q["doc"].endswith(".html")}
    assert len(html_files) >= MIN_PER_FILE, "HTML questions should spread over many pages"


# --------------------------------------------------------------------------- corpus


def test_docs_exist_in_corpus(corpus: Path):
    missing = []
    for q in answerable():
        path = corpus / (HTML_DIR if q["doc"].endswith(".html") else "") / q["doc"]
        if not path.is_file():
            missing.append(f"{q['id']}: {q['doc']}")
    assert not missing, "\n".join(missing)


def test_pdf_answers_are_on_gold_pages(pdf_pages: PdfPages):
    problems = []
    for q in answerable():
        if not q["doc"].endswith(".pdf"):
            continue
        count = pdf_pages.counts[q["doc"]]
        out_of_range = [p for p in q["pages"] if not 1 <= p <= count]
        if out_of_range:
            problems.append(f"{q['id']}: pages {out_of_range} outside 1..{count}")
        elif not pdf_pages.answer_on_gold_page(q):
            problems.append(f"{q['id']}: {q['answer']!r} not on pages {q['pages']} of {q['doc']}")
    assert not problems, "\n".join(problems)


def test_pdf_questions_paraphrase_the_page(pdf_pages: PdfPages):
    """A question copied verbatim from its gold page would make retrieval trivially easy."""
    copied = []
    for q in answerable():
        if q["doc"].endswith(".pdf"):
            asked = fold(q["question"]).rstrip("?. ")
            if any(asked in fold(pdf_pages.texts.get((q["doc"], p), "")) for p in q["pages"]):
                copied.append(q["id"])
    assert not copied, f"questions copied from the page: {copied}"


def test_html_answers_are_under_their_section(corpus: Path):
    problems = [
        problem
        for q in answerable()
        if q["doc"].endswith(".html") and (problem := html_problem(corpus, q))
    ]
    assert not problems, "\n".join(problems)


# The subject of each absent question, and where it must not appear (None: anywhere).
ABSENT_TERMS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "absent-01": (None, ("opam", "dune")),
    "absent-02": ("camlidl-1.04.doc.pdf", ("licen", "copyright")),
    "absent-03": (None, ("multicore", "ocaml 5")),
    "absent-04": (None, ("mathjax",)),
    "absent-05": (None, ("dark mode", "dark-mode", "dark theme")),
    "absent-06": (None, ("two-factor", "2fa", "totp", "authenticator")),
    "absent-07": (None, ("home assistant", "homeassistant")),
    "absent-08": (None, ("raspberry pi 5", "pi 5 model")),
    "absent-09": (None, ("docker",)),
    "absent-10": (None, ("jellyfin",)),
}


def test_absent_questions_carry_no_gold_data():
    answerable_questions = {fold(q["question"]) for q in answerable()}
    absent_ids = {q["id"] for q in QS if is_absent(q)}
    assert absent_ids == set(ABSENT_TERMS), "keep ABSENT_TERMS in step with the file"
    for q in QS:
        if is_absent(q):
            assert fold(q["question"]) not in answerable_questions
            assert "answer" not in q


@pytest.mark.slow
def test_absent_subjects_are_nowhere_in_the_corpus(corpus: Path):
    """Extracts every page (about a second) and greps for each absent question's subject."""
    import pypdfium2 as pdfium

    texts: dict[str, str] = {}
    for doc in PDF_DOCS:
        pdf = pdfium.PdfDocument(str(corpus / doc))
        try:
            parts = []
            for index in range(len(pdf)):
                page = pdf[index]
                textpage = page.get_textpage()
                parts.append(textpage.get_text_range())
                textpage.close()
                page.close()
            texts[doc] = "\n".join(parts)
        finally:
            pdf.close()
    for path in sorted((corpus / HTML_DIR).glob("*.html")):
        texts[path.name] = " ".join(h + " " + b for h, b in html_sections(path))
    folds = (fold, fold_dehyphenated, fold_joined)
    folded = {doc: [f(text) for f in folds] for doc, text in texts.items()}
    found = []
    for qid, (scope, terms) in ABSENT_TERMS.items():
        for doc, variants in folded.items():
            if scope in (None, doc):
                found += [
                    f"{qid}: {term!r} in {doc}"
                    for term in terms
                    if any(fold(term) in variant for variant in variants)
                ]
    assert not found, "\n".join(found)


# --------------------------------------------------------------------------- the checks can fail


def test_checker_rejects_a_wrong_pdf_page(corpus: Path):
    pages = PdfPages(corpus)
    pages.load("camlidl-1.04.doc.pdf", {1, 2})
    right = {"doc": "camlidl-1.04.doc.pdf", "pages": [1], "answer": "Xavier  LEROY"}
    wrong = {**right, "pages": [2]}
    assert pages.answer_on_gold_page(right)
    assert not pages.answer_on_gold_page(wrong)


def test_checker_rejects_a_wrong_html_section(corpus: Path):
    right = {
        "id": "probe",
        "doc": "Deluge.part.html",
        "section": "Initial Setup",
        "answer": 'initial password is "deluge"',
    }
    assert html_problem(corpus, right) is None
    assert html_problem(corpus, {**right, "section": "External links"}) is not None
    assert html_problem(corpus, {**right, "section": "No Such Heading"}) is not None
    assert html_problem(corpus, {**right, "answer": "initial password is hunter2"}) is not None


def test_folding_handles_pdfium_hyphenation():
    assert contains("con\ufffesidered as blanks", "considered as")
    assert contains("char-\r\nacter string", "character string")
    assert contains("Default\n  Language", "default language")
    assert not contains("default language", "default-language")
