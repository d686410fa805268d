"""Evaluation: scoring rules on hand-made answers, the CLI end to end, stop and resume."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from engine.answer.echo import ECHOED
from engine.core import Engine
from engine.eval.evaluation import EvalConfig, EvalProgress, Evaluation, render_markdown
from engine.eval.scoring import (
    Question,
    citation_counts,
    cited_numbers,
    contains_answer,
    first_hit_rank,
    load_questions,
    score_mode,
    strip_echo,
)
from engine.types import SearchResult, UserError
from tests.cli.test_cli import quire
from tests.factory import write_pdf

PDF_Q = Question("pdf", "q", doc="manual.pdf", pages=(2,), answer="ten minutes")
HTML_Q = Question("html", "q", doc="page.html", section="Tyres", answer="seven bar")
ABSENT_Q = Question("absent", "q", kind="absent")


def source(document: str, page: int | None = None, section: str | None = None) -> SearchResult:
    return SearchResult(0, document, f"/library/{document}", page, section, 0.5, "text")


def record(answer: str, sources: list[SearchResult], mode: str = "rag") -> dict:
    timings = {"retrieval_s": 0.01, "first_token_s": 0.5, "total_s": 1.0, "tokens": 10,
               "tokens_per_s": 20.0}  # fmt: skip
    return {"id": "x", "mode": mode, "answer": answer, "timings": timings,
            "sources": [{"document": s.document, "path": s.path, "page": s.page,
                         "section": s.section} for s in sources]}  # fmt: skip


# -- scoring -----------------------------------------------------------------------------


def test_a_hit_needs_the_gold_page_of_the_gold_document() -> None:
    assert first_hit_rank([source("other.pdf", 2), source("manual.pdf", 2)], PDF_Q) == 2
    assert first_hit_rank([source("manual.pdf", 1), source("manual.pdf", 3)], PDF_Q) is None
    assert first_hit_rank([source("my-manual.pdf", 2)], PDF_Q) is None
    in_folder = Question("f", "q", doc="manuals/manual.pdf", pages=(2,))
    assert first_hit_rank([source("manual.pdf", 2)], in_folder) is None  # /library/manual.pdf
    nested = SearchResult(0, "manual.pdf", "/home/me/manuals/manual.pdf", 2, None, 0.5, "t")
    assert first_hit_rank([nested], in_folder) == 1


def test_html_hits_match_the_section_folded() -> None:
    assert first_hit_rank([source("page.html", section="  tyres ")], HTML_Q) == 1
    assert first_hit_rank([source("page.html", section="Bicycle care")], HTML_Q) is None
    assert first_hit_rank([source("other.html", section="Tyres")], HTML_Q) is None


def test_containment_folds_case_space_and_line_end_hyphens() -> None:
    assert contains_answer("Boil it for TEN\n   Minutes.", "ten minutes")
    assert contains_answer("the initial pass-\nword is deluge", "password is deluge")
    assert contains_answer("use a sans-\nserif font", "sans-serif")
    assert not contains_answer("ten minute", "ten minutes")
    assert not contains_answer("anything", "")


def test_citations_are_parsed_in_every_usual_form() -> None:
    assert cited_numbers("A [1]. B [2][3]. C [1, 4]. D [ 5 ,6 ]") == [1, 2, 3, 1, 4, 5, 6]
    assert cited_numbers("no citation, [a] or [] or (1)") == []


def test_citation_precision_counts_gold_sources_and_penalises_made_up_numbers() -> None:
    sources = [source("manual.pdf", 2), source("manual.pdf", 1)]
    assert citation_counts("Yes [1]. Also [2].", sources, PDF_Q) == (1, 2)
    assert citation_counts("Yes [1, 2][7].", sources, PDF_Q) == (1, 3)
    assert citation_counts("Yes.", sources, PDF_Q) == (0, 0)


def test_score_mode_aggregates_containment_citations_and_dont_know() -> None:
    gold = [source("manual.pdf", 2)]
    rows = [
        (PDF_Q, record("Boil it for ten minutes [1].", gold)),
        (HTML_Q, record("Seven pounds [2].", [source("page.html", section="Other")])),
        (ABSENT_Q, record("The documents do not say.", [])),
    ]
    metrics = score_mode(rows, "rag")
    assert metrics["n"] == 3
    assert metrics["absent_not_covered"] == 0.0 and metrics["false_not_covered"] == 0.0
    assert metrics["hit_at_1"] == 0.5 and metrics["mrr"] == 0.5
    assert metrics["answer_containment"] == 0.5
    assert metrics["citation_precision"] == 0.5  # [1] is gold, [2] does not exist
    assert metrics["absent_dont_know"] == 1.0
    assert metrics["tokens_per_s"] == 20.0
    base = score_mode([(ABSENT_Q, record("Paris is lovely.", [], "base"))], "base")
    assert base["absent_dont_know"] == 0.0 and base["hit_at_1"] is None
    assert base["absent_not_covered"] is None  # no retrieval, no reader's bar


def test_refusals_by_the_reader_s_bar_are_told_apart_from_the_model_s() -> None:
    from engine.answer.prompting import NOT_COVERED

    gold = [source("manual.pdf", 2)]
    barred = record(NOT_COVERED, gold)
    barred["not_covered"] = True
    rows = [
        (PDF_Q, barred),  # answerable, refused by the bar: a false refusal, not covered
        (HTML_Q, record("The documents do not say.", [source("page.html", section="x")])),
        (ABSENT_Q, record("The documents do not say.", [])),  # the model's refusal
    ]
    metrics = score_mode(rows, "hybrid")
    assert metrics["false_refusal"] == 1.0 and metrics["false_not_covered"] == 0.5
    assert metrics["absent_dont_know"] == 1.0 and metrics["absent_not_covered"] == 0.0


def test_sources_listed_best_last_are_ranked_by_the_search_and_cited_as_numbered() -> None:
    """The grounding adapter's prompt lists the best source last: hit@1 follows the
    search's rank, a citation the number the prompt gave."""
    best, other = source("manual.pdf", 2), source("manual.pdf", 5)
    saved = record("Ten minutes [2].", [other, best], "hybrid")
    saved["sources"][0]["rank"], saved["sources"][1]["rank"] = 2, 1
    metrics = score_mode([(PDF_Q, saved)], "hybrid")
    assert metrics["hit_at_1"] == 1.0 and metrics["citation_precision"] == 1.0
    unranked = record("Ten minutes [2].", [other, best], "hybrid")  # saved before ranks
    assert score_mode([(PDF_Q, unranked)], "hybrid")["hit_at_1"] == 0.0


def test_an_echoed_prompt_is_neither_a_citation_nor_a_dont_know() -> None:
    from engine.answer.prompting import RAG_SYSTEM_PROMPT

    echo = RAG_SYSTEM_PROMPT + "\n\nSources:\n\n[1] manual.pdf, page 2\nBoil for ten minutes."
    rows = [(PDF_Q, record(echo, [source("manual.pdf", 2)])), (ABSENT_Q, record(echo, []))]
    metrics = score_mode(rows, "rag")
    assert metrics["citation_precision"] is None and metrics["cited"] == 0
    assert metrics["absent_dont_know"] == 0.0
    assert metrics["answer_containment"] == 1.0  # the copied passage does hold the phrase
    assert metrics["prompt_echo"] == 1.0
    cut = RAG_SYSTEM_PROMPT[:60]  # an echo cut short by the token limit
    assert strip_echo(f"Sure. {cut}") == ("Sure. ", True)
    drifted = RAG_SYSTEM_PROMPT.replace("user's", "user’s").replace("sources below", "code below")
    assert cited_numbers(strip_echo(drifted)[0]) == []
    assert strip_echo("The documents do not say.") == ("The documents do not say.", False)
    assert strip_echo(ECHOED) == ("", True)  # the app stopped a copy and said so
    question = "how do I get column-major arrays like Fortran?"
    assert strip_echo(f"{question} Use fortran_layout.", question) == (" Use fortran_layout.", True)
    assert strip_echo("It is ten minutes [1].") == ("It is ten minutes [1].", False)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line-errors.jsonl:2: not valid JSON"),
        ('["a"]', "expected a JSON object"),
        ('{"id": "b"}', "'question' must be a non-empty string"),
        ('{"id": "b", "question": "q", "doc": "d.pdf", "pages": [0]}', "'pages' must be"),
        ('{"id": "b", "question": "q", "pages": [1]}', "need a 'doc'"),
        ('{"id": "a", "question": "q"}', "duplicate id 'a'"),
        ('{"id": "b", "question": "q", "kind": "absent", "answer": "x"}', "absent question"),
    ],
)
def test_question_file_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "line-errors.jsonl"
    path.write_text('{"id": "a", "question": "first"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r":2: ") as error:
        load_questions(path)
    assert message in str(error.value)


def test_missing_or_empty_question_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such question file"):
        load_questions(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(UserError, match="no questions"):
        load_questions(tmp_path / "empty.jsonl")


# -- end to end ---------------------------------------------------------------------------

QUESTIONS = [
    {"id": "kettle", "question": "How long do I boil vinegar to descale the kettle?",
     "doc": "manual.pdf", "pages": [2], "answer": "ten minutes"},
    {"id": "tyres", "question": "What pressure should road tyres have?",
     "doc": "bikes.html", "section": "Tyres", "answer": "seven bar"},
    {"id": "peru", "question": "What is the capital of Peru?", "kind": "absent"},
]  # fmt: skip


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small indexed library and a question file about it: (data dir, questions)."""
    root = tmp_path_factory.mktemp("eval")
    docs = root / "docs"
    docs.mkdir()
    write_pdf(
        docs / "manual.pdf",
        [
            ["Chapter one introduces the toaster and its crumb tray."],
            ["To descale the kettle, boil vinegar with water for ten minutes."],
            ["The warranty lasts twenty-four months from purchase."],
        ],
    )
    (docs / "bikes.html").write_text(
        "<html><body><h1>Bicycle care</h1><p>Oil the chain every 300 kilometres.</p>"
        "<h2>Tyres</h2><p>Inflate road tyres to seven bar.</p></body></html>",
        encoding="utf-8",
    )
    (docs / "notes.md").write_text("# Gardening\n\nTomatoes need six hours of sun.\n", "utf-8")
    data = root / "data"
    assert quire(data, "ingest", str(docs)).returncode == 0
    questions = root / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8")
    return data, questions


def test_retrieval_only_run_through_the_cli(library: tuple[Path, Path]) -> None:
    data, questions = library
    result = quire(data, "eval", str(questions), "--modes", "base,rag", "--retrieval-only",
                   "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    keys = {"hit_at_1", "hit_at_5", "mrr", "answer_containment", "citation_precision",
            "absent_dont_know", "retrieval_s", "first_token_s", "tokens_per_s"}  # fmt: skip
    assert keys <= set(report["base"]) and keys <= set(report["rag"])
    assert set(report["retrieval"]) == {"vector", "keyword", "hybrid", "reader"}
    assert report["retrieval"]["hybrid"]["n"] == 2  # the absent question is not searched
    assert report["retrieval"]["hybrid"]["hit_at_1"] == 1.0
    assert report["rag"]["hit_at_1"] == 1.0
    assert report["base"]["answer_containment"] is None  # nothing was generated
    table = quire(data, "eval", str(questions), "--retrieval-only").stdout
    assert "| search: hybrid | 2 | 1.00 |" in table


def test_an_unloadable_mode_is_skipped_with_a_note(
    library: tuple[Path, Path], llm_path: Path, tmp_path: Path
) -> None:
    data, questions = library
    engine = Engine(data)
    engine.settings.lora_path = None
    other = tmp_path / "another-model.gguf"  # not the bundled model: no default adapter
    other.symlink_to(llm_path)
    engine.settings.model_path = str(other)
    report = Evaluation(engine, questions, EvalConfig(modes=("lora",))).run()
    engine.close()
    assert "adapter" in report.skipped["lora"]
    assert report.modes["lora"]["skipped"] and report.modes["lora"]["hit_at_1"] is None
    assert "mode lora skipped" in render_markdown(report)
    assert report.complete


@pytest.mark.slow
def test_a_stopped_run_resumes_with_only_the_remaining_answers(
    library: tuple[Path, Path],
) -> None:
    data, questions = library
    config = EvalConfig(modes=("base",), max_tokens=4, restart=True)
    engine = Engine(data)
    cancel = threading.Event()

    def stop_after_first_answer(p: EvalProgress) -> None:
        if p.label.startswith("base"):
            cancel.set()

    first = Evaluation(engine, questions, config).run(stop_after_first_answer, stop=cancel)
    assert (first.computed, first.resumed, first.complete) == (1, 0, False)
    assert first.modes["base"]["n"] == 1
    config.restart = False
    labels: list[str] = []
    second = Evaluation(engine, questions, config).run(lambda p: labels.append(p.label))
    engine.close()
    assert (second.computed, second.resumed, second.complete) == (2, 1, True)
    assert [lb for lb in labels if lb.startswith("base")] == ["base  tyres", "base  peru"]
    assert second.modes["base"]["n"] == 3 and second.modes["base"]["tokens_per_s"]
    assert len(second.checkpoint.read_text().splitlines()) == 3  # type: ignore[union-attr]


def test_a_changed_adapter_or_threshold_starts_a_new_run(
    library: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retraining an adapter in place, or moving the refusal threshold, changes answers:
    a resumed run must not mix the old answers in."""
    import models.bundled as bundled

    data, questions = library
    engine = Engine(data)
    config = EvalConfig(modes=("hybrid",))
    with_reader = Evaluation(engine, questions, config).checkpoint
    assert engine.reader is not None
    model = engine.reader.card["refusal_model"]  # the gate the reader's card sets
    engine.reader.card["refusal_model"] = {**model, "bias": model["bias"] + 0.1}
    assert Evaluation(engine, questions, config).checkpoint != with_reader
    engine.reader.card["quote_threshold"] += 0.1  # its not-covered bar
    assert Evaluation(engine, questions, config).checkpoint != with_reader
    moved = Evaluation(engine, questions, config).checkpoint
    engine.reader.card["quote_threshold_alone"] += 0.1  # the bar where no adapter gate follows
    assert Evaluation(engine, questions, config).checkpoint != moved
    engine.settings.reader = False  # without a reader: the adapter's own two-level gate
    shipped = Evaluation(engine, questions, config).checkpoint
    assert shipped != with_reader
    card = engine.grounding.card()  # the adapter card's bars, as a retuned card would change them
    engine.grounding.card_override = dataclasses.replace(card, refusal=card.refusal + 0.1)
    assert Evaluation(engine, questions, config).checkpoint != shipped
    engine.grounding.card_override = dataclasses.replace(card, refusal_sure=card.refusal_sure + 0.1)
    assert Evaluation(engine, questions, config).checkpoint != shipped
    engine.grounding.card_override = None
    assert Evaluation(engine, questions, config).checkpoint == shipped

    adapter = tmp_path / "mine.gguf"
    adapter.write_bytes(bundled.GROUNDING_ADAPTER.read_bytes())
    engine.settings.lora_path = str(adapter)
    first = Evaluation(engine, questions, config).checkpoint
    assert first != shipped
    with adapter.open("ab") as fh:  # retrained at the same path
        fh.write(b"\0")
    assert Evaluation(engine, questions, config).checkpoint != first
    engine.close()


def test_a_line_without_an_id_is_named_by_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "first?"}\n\n{"id": "x", "question": "second?"}\n'
                    '{"question": "third?", "id": null}\n', encoding="utf-8")  # fmt: skip
    assert [q.id for q in load_questions(path)] == ["mine:1", "x", "mine:4"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"question": "\\ud800?"}', "lone surrogate"),
        (b'{"question": "' + b"x" * (2 << 20) + b'"}', "MB long"),
        (b'{"question": "caf\xe9?"}', "not UTF-8"),
    ],
)
def test_hostile_question_lines_are_one_line_naming_the_line(
    tmp_path: Path, line: bytes, message: str
) -> None:
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b'{"question": "fine?"}\n' + line + b"\n")
    with pytest.raises(UserError, match=r"hostile.jsonl:2: ") as error:
        load_questions(path)
    assert message in str(error.value) and "\n" not in str(error.value)
