"""The reader: sentences, pairs, its stored vectors, reranking, the quote and the bar."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.answer.prompting import NOT_COVERED, build_prompt, says_dont_know
from engine.core import Engine
from engine.index.store import Store
from engine.reader.pairs import gold_sentence
from engine.reader.rank import Reader, passage_text
from engine.reader.sentences import sentence_spans, sentences
from engine.types import Chunk, SearchResult
from models.bundled import READER_PACKAGE_DIR, ensure_reader

PORTS = (
    "5.15.1 Port Forwarding\nIf your FreedomBox is behind a router, you will need to set up "
    "port forwarding on your router. You should forward the following ports for Minetest:\n"
    "• UDP 30000"
)


# -- sentences -----------------------------------------------------------------------


def test_sentences_split_at_ends_blank_lines_and_list_items() -> None:
    text = "The first one ends here. The second\nwraps a line.\n\nA new paragraph starts.\n- item"
    assert sentences(text) == [
        "The first one ends here.",
        "The second\nwraps a line.",
        "A new paragraph starts.\n- item",  # a unit under three words joins the one before
    ]


def test_a_lead_in_ending_in_a_colon_keeps_what_it_leads_to() -> None:
    lead_in = "You should forward the following ports for Minetest:\n• UDP 30000"
    assert sentences(PORTS)[-1] == lead_in


def test_spans_index_the_text_unchanged_and_long_runs_are_cut() -> None:
    text = " ".join(f"word{i}" for i in range(200))  # a table with no full stop
    spans = sentence_spans(text)
    assert len(spans) > 1
    assert all(len(text[a:b].split()) <= 60 for a, b in spans)
    assert "".join(text[a:b] + " " for a, b in spans).split() == text.split()


def test_gold_sentence_is_the_fewest_sentences_holding_the_phrase() -> None:
    span = gold_sentence(PORTS, "UDP 30000")
    assert span is not None and PORTS[span[0] : span[1]].startswith("You should forward")
    assert gold_sentence(PORTS, "TCP 9999") is None


def test_passage_text_adds_a_section_the_text_does_not_start_with() -> None:
    source = SearchResult(1, "a.html", "/a.html", None, "Backups", 0.5, "Run it nightly.")
    assert passage_text(source) == "Backups\nRun it nightly."
    source.text = "Backups\nRun it nightly."
    assert passage_text(source) == "Backups\nRun it nightly."


# -- prompts and the not-covered line ------------------------------------------------


def test_the_quote_comes_first_numbered_as_its_source() -> None:
    sources = [
        SearchResult(1, "a.pdf", "/a.pdf", 1, None, 0.8, "alpha text", chunk_id=1),
        SearchResult(2, "b.pdf", "/b.pdf", 2, None, 0.7, "beta text", chunk_id=2),
    ]
    prompt = build_prompt("q?", sources, lambda t: len(t.split()), 1000, best_last=True,
                          quote=(1, "beta text"))  # fmt: skip
    user = prompt.messages[1]["content"]
    assert user.startswith('Quote [1]: "beta text"')  # best last: b is numbered 1
    assert "[1] b.pdf, page 2" in user


def test_not_covered_counts_as_a_refusal() -> None:
    assert says_dont_know(NOT_COVERED)


# -- stored vectors ------------------------------------------------------------------


def test_reader_vectors_are_kept_per_reader_and_go_with_their_document(tmp_path: Path) -> None:
    store = Store(tmp_path / "index.sqlite3", dim=4)
    chunks = [Chunk("one", 1, None, 0), Chunk("two", 1, None, 1)]
    vectors = np.eye(4, dtype=np.float32)[:2]
    store.replace_document("default", tmp_path / "a.txt", "a.txt", None, "h", 1, 1.0, 1,
                           chunks, vectors)  # fmt: skip
    ids = [r[0] for r in store.conn.execute("SELECT id FROM chunks").fetchall()]
    store.put_reader_vectors("r1", {ids[0]: np.ones(4)})
    assert set(store.reader_vectors("r1", ids)) == {ids[0]}
    assert store.reader_vectors("r2", ids) == {}
    store.remove_document("default", tmp_path / "a.txt")
    count = store.conn.execute("SELECT COUNT(*) FROM reader_vectors").fetchone()[0]
    assert count == 0  # a reused chunk id never gets another passage's vector
    store.close()


# -- the shipped reader --------------------------------------------------------------


@pytest.fixture(scope="module")
def reader(models_dir: Path) -> Reader:
    folder = ensure_reader(models_dir)
    if folder is None:
        pytest.fail(f"no reader ships in {READER_PACKAGE_DIR}")
    return Reader(folder)


def test_the_shipped_reader_has_a_card_with_held_out_choices(reader: Reader) -> None:
    card = reader.card
    assert card["data_sha256"] and card["settings"] and card["seconds"] > 0
    assert 0 < card["quote_threshold"] < 1 and 0 < card["quote_threshold_alone"] < 1
    assert card["heldout"]["chosen"]["absent_refused"] >= 0.0
    assert card["heldout"]["alone"]["bar"] == card["quote_threshold_alone"]
    assert (READER_PACKAGE_DIR / "lora" / "adapter_model.safetensors").is_file()


def test_the_reader_quotes_the_sentence_that_answers(reader: Reader) -> None:
    sources = [
        SearchResult(1, "x.pdf", "/x.pdf", 3, None, 0.6,
                     "Backups are kept for 30 days. The web interface listens on port 8112.",
                     chunk_id=7),
        SearchResult(2, "f.pdf", "/f.pdf", 77, None, 0.8, PORTS, chunk_id=8),
    ]  # fmt: skip
    quote = reader.quote("which UDP port do I forward for Minetest?", sources)
    assert quote is not None
    assert "UDP 30000" in quote.text and quote.page == 77 and quote.chunk_id == 8
    assert PORTS[quote.start : quote.end] == quote.text
    assert reader.last.quote_s > 0


def _index(tmp_path: Path, files: dict[str, str]) -> Engine:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    engine = Engine(tmp_path / "data")
    engine.ingest([folder])
    return engine


DOCS = {
    "minetest.md": "# Minetest\n\n" + PORTS.split("\n", 1)[1],
    "deluge.md": "# Deluge\n\nDeluge is a BitTorrent client. The web interface listens on "
    "port 8112 and the initial password is deluge.",
    "backups.md": "# Backups\n\nBackups are taken every night and kept for thirty days.",
}


def test_search_reranks_and_keeps_both_scores(tmp_path: Path) -> None:
    engine = _index(tmp_path, DOCS)
    try:
        found = engine.search("what is the initial password of the Deluge web interface?")
        assert found[0].document == "deluge.md"
        assert all(r.rerank is not None and 0 < r.score <= 1 for r in found)
        assert [r.rank for r in found] == list(range(1, len(found) + 1))
        plain = engine.search("initial password of deluge", rerank=False)
        assert all(r.rerank is None for r in plain)
        key = engine.reader.key  # type: ignore[union-attr]
        kept = engine.store.conn.execute(
            "SELECT COUNT(*) FROM reader_vectors WHERE reader = ?", (key,)
        ).fetchone()[0]
        assert kept == len(found)  # read once, kept for the next question
    finally:
        engine.close()


def test_off_topic_questions_are_not_covered_without_the_model(tmp_path: Path) -> None:
    engine = _index(tmp_path, DOCS)
    try:
        engine.settings.min_score = 0.0  # let the passages through: the reader decides
        answer = engine.answer("how do I bake sourdough bread with rye flour?", "rag")
        assert answer.not_covered and answer.answer == NOT_COVERED
        assert answer.sources and answer.quote is None  # the nearest passages are shown
        assert engine.llms.last is None  # no model was asked
    finally:
        engine.close()


def test_a_user_reader_is_used_and_back_to_default(tmp_path: Path, models_dir: Path) -> None:
    shipped = ensure_reader(models_dir)
    assert shipped is not None
    mine = tmp_path / "mine"
    shutil.copytree(shipped, mine)
    card = json.loads((mine / "reader.json").read_text())
    (mine / "reader.json").write_text(json.dumps({**card, "name": "mine"}))
    engine = Engine(tmp_path / "data")
    try:
        engine.settings.reader_path = str(mine)
        assert engine.reader is not None and engine.reader.label == "mine"
        engine.settings.reader_path = None
        assert engine.reader is not None and engine.reader.label != "mine"
        engine.settings.reader = False
        assert engine.reader is None
    finally:
        engine.close()


def test_reader_settings_are_checked_like_train_s() -> None:
    from engine.reader.train import ReaderConfig
    from engine.types import UserError

    for bad in ({"max_steps": 0}, {"epochs": 0}, {"lr": 2.0}):
        with pytest.raises(UserError, match="--"):
            ReaderConfig(**bad)  # type: ignore[arg-type]


def test_one_answer_embeds_its_question_once(reader: Reader) -> None:
    calls: list[str] = []
    embed = reader.embedder.embed_query
    reader.embedder.embed_query = lambda text: calls.append(text) or embed(text)  # type: ignore[method-assign]
    try:
        sources = [SearchResult(1, "f.pdf", "/f.pdf", 77, None, 0.8, PORTS, chunk_id=8)]
        reader.quote("which UDP port for Minetest?", sources)
        reader.quote("which UDP port for Minetest?", sources)
        reader.quote("what else?", sources)
    finally:
        reader.embedder.embed_query = embed  # type: ignore[method-assign]
    assert calls == ["which UDP port for Minetest?", "what else?"]


# -- what the reader looks at beside its cosine (engine/reader/features.py) ----------


def test_terms_fold_stem_and_drop_stop_words() -> None:
    from engine.reader.features import terms

    assert terms("How do I prune Borg's old backups with --keep-daily?") == [
        "prun", "borg", "old", "backup", "--keep-daily",
    ]  # fmt: skip
    assert terms("pruning pruned") == ["prun", "prun"]


def test_passage_features_see_rare_words_headings_and_contents_lists() -> None:
    from engine.reader.features import PASSAGE_FEATURES, passage_features

    texts = [
        "- Backups\n- Restoring\n- Ports .......... 12\n- Users 14",  # a contents list
        "Forward UDP port 30000 on the router for Minetest.",
        "The router has a web interface.",
    ]
    rows = passage_features(
        "which port does Minetest need on the router?", texts, ["Contents", "Minetest", None],
        [0.5, 0.4, 0.3], [1.0, 0.6, 0.2], [0.5, 0.45, 0.4],
    )  # fmt: skip
    f = {name: rows[:, i] for i, name in enumerate(PASSAGE_FEATURES)}
    # every question word that some candidate holds (not "need": none does) is in the second
    assert f["coverage"][1] == pytest.approx(1.0)
    assert 0 < f["coverage"][2] == f["coverage"][0] < 1  # "router"; "port" in the list
    assert f["heading"][1] > 0 and f["heading"][0] == 0
    assert f["list_lines"][0] == 1.0 and f["list_lines"][1] == 0.0
    assert f["numbered_lines"][0] == 0.5
    assert f["reader_gap"].tolist() == pytest.approx([0.0, -0.1, -0.2])
    assert f["first"].tolist() == [1.0, 0.0, 0.0]


def test_a_card_s_passage_ranker_decides_the_order(tmp_path: Path) -> None:
    from engine.reader.features import PASSAGE_FEATURES

    engine = _index(tmp_path, DOCS)
    try:
        engine.settings.min_score = 0.0  # all three passages are candidates
        question = "what is the initial password of the Deluge web interface?"
        reader = engine.reader
        assert reader is not None
        before = [r.document for r in engine.search(question, 3)]
        assert before[0] == "deluge.md"
        # a ranker that reads only the passage's length puts the longest first, then last
        weights = [0.0] * len(PASSAGE_FEATURES)
        weights[PASSAGE_FEATURES.index("length")] = 1.0
        reader.card["passage_ranker"] = weights
        after = engine.search(question, 3)
        words = [len(r.text.split()) for r in after]
        assert len(after) == 3 and words == sorted(words, reverse=True)
        assert after[0].rerank is not None  # the label still shows the reader's cosine
        weights[PASSAGE_FEATURES.index("length")] = -1.0
        assert [len(r.text.split()) for r in engine.search(question, 3)] == sorted(words)
    finally:
        engine.close()


def test_a_card_s_sentence_ranker_picks_the_quote(reader: Reader) -> None:
    from engine.reader.features import SENTENCE_FEATURES

    sources = [
        SearchResult(1, "x.pdf", "/x.pdf", 3, None, 0.6,
                     "Backups are kept for a month. The web interface listens on port 8112.",
                     chunk_id=7),
    ]  # fmt: skip
    question = "how long are backups kept?"
    saved = dict(reader.card)
    try:
        plain = reader.quote(question, sources)
        assert plain is not None and plain.text.startswith("Backups are kept")
        weights = [0.0] * len(SENTENCE_FEATURES)
        weights[SENTENCE_FEATURES.index("value")] = 1.0  # numbers and commands only
        reader.card["sentence_ranker"] = weights
        valued = reader.quote(question, sources)
        assert valued is not None and "8112" in valued.text
        assert valued.score == pytest.approx(plain.score)  # the bar reads the same score
    finally:
        reader.card.clear()
        reader.card.update(saved)


def test_a_quote_above_a_don_t_know_is_the_nearest_passage(tmp_path: Path, fake_llm: type) -> None:
    engine = _index(tmp_path, DOCS)
    try:
        engine.settings.min_score = 0.0
        fake_llm.replies.append("The documents do not say.")
        answer = engine.answer("what is the initial password of the Deluge web interface?", "rag")
        assert answer.quote is not None and answer.quote.nearest
        assert answer.to_json()["quote"]["nearest"] is True
        fake_llm.replies.append("The initial password is deluge [1].")
        answer = engine.answer("what is the initial password of the Deluge web interface?", "rag")
        assert answer.quote is not None and not answer.quote.nearest
    finally:
        engine.close()


def test_the_refusal_model_reads_the_answer_s_own_quote(tmp_path: Path, fake_llm: type) -> None:
    """In hybrid, the adapter's refusal stands at odds that depend on the quote's score
    (here: refuse when the odds reach the score itself)."""
    engine = _index(tmp_path, DOCS)
    try:
        engine.settings.min_score = 0.0
        reader = engine.reader
        assert reader is not None
        reader.card["quote_threshold"] = 0.0
        reader.card["refusal_model"] = {"odds": 1.0, "quote": -1.0, "best": 0.0, "bias": 0.0}
        question = "what is the initial password of the Deluge web interface?"
        fake_llm.replies.extend(["It is deluge [1].", "It is deluge [1]."])
        fake_llm.refusal_odds = 0.0
        first = engine.answer(question, "hybrid")
        assert first.quote is not None and first.answer == "It is deluge [1]."
        fake_llm.refusal_odds = first.quote.score - 0.01
        assert engine.answer(question, "hybrid").answer == "It is deluge [1]."
        fake_llm.refusal_odds = first.quote.score + 0.01
        refused = engine.answer(question, "hybrid")
        assert says_dont_know(refused.answer) and refused.quote is not None
        assert refused.quote.nearest
    finally:
        engine.close()


def test_without_the_adapter_s_gate_the_bar_is_the_one_chosen_alone(
    tmp_path: Path, fake_llm: type
) -> None:
    """The card's bar was chosen with the grounding adapter's refusal after it (hybrid);
    rag, where nothing refuses after the bar, reads `quote_threshold_alone`."""
    engine = _index(tmp_path, DOCS)
    try:
        engine.settings.min_score = 0.0
        reader = engine.reader
        assert reader is not None
        question = "what is the initial password of the Deluge web interface?"
        quote = reader.quote(question, engine.sources(question))
        assert quote is not None
        reader.card["quote_threshold"] = quote.score - 0.05
        reader.card["quote_threshold_alone"] = quote.score + 0.05
        reader.card.pop("refusal_model", None)
        fake_llm.replies.extend(["It is deluge [1].", "It is deluge [1]."])
        fake_llm.refusal_odds = 0.0
        assert engine.answer(question, "hybrid").answer == "It is deluge [1]."
        alone = engine.answer(question, "rag")
        assert alone.not_covered and alone.answer == NOT_COVERED
        del reader.card["quote_threshold_alone"]  # an older card: the one bar for both
        assert engine.answer(question, "rag").answer == "It is deluge [1]."
    finally:
        engine.close()


def test_a_ranker_fitted_on_other_features_is_not_used(reader: Reader) -> None:
    sources = [SearchResult(1, "f.pdf", "/f.pdf", 77, None, 0.8, PORTS, chunk_id=8)]
    saved = dict(reader.card)
    try:
        plain = reader.quote("which UDP port do I forward for Minetest?", sources)
        reader.card["sentence_ranker"] = [1.0, 2.0]  # another version's features
        reader.card["passage_ranker"] = "nonsense"
        again = reader.quote("which UDP port do I forward for Minetest?", sources)
        assert plain is not None and again is not None and again.text == plain.text
    finally:
        reader.card.clear()
        reader.card.update(saved)


def test_an_answer_that_copies_its_prompt_is_stopped_and_says_so(
    tmp_path: Path, fake_llm: type
) -> None:
    """The small base model's habit in rag: the instructions, then the sources, to the
    token limit, "The documents do not say." inside. The app stops it at the first words;
    the quote stays the quote (not "the nearest passage")."""
    from engine.answer.echo import ECHOED
    from engine.answer.events import AnswerFinished, TokenReceived
    from engine.answer.prompting import RAG_SYSTEM_PROMPT

    engine = _index(tmp_path, DOCS)
    try:
        engine.settings.min_score = 0.0
        fake_llm.replies.append(RAG_SYSTEM_PROMPT + " Quote [1]: " + "word " * 300)
        events = list(engine.ask("what is the initial password of the Deluge web interface?"))
        shown = "".join(e.text for e in events if isinstance(e, TokenReceived))
        answer = next(e.answer for e in events if isinstance(e, AnswerFinished))
        assert shown == answer.answer == ECHOED
        assert fake_llm.instances[-1].last_timings.tokens < 10  # stopped, not run to the end
        assert answer.quote is not None and not answer.quote.nearest
    finally:
        engine.close()


def test_a_reader_job_makes_pairs_from_each_question_set_over_its_own_index(tmp_path):
    """`ReaderJob.more`: the recipe's other manuals, each set searched in its own index."""
    from engine.core import Engine
    from engine.eval.scoring import load_questions
    from engine.index.retrieval import Retriever
    from engine.reader.job import ReaderJob
    from tests.cli.test_reader_train_cli import DOCS, QUESTIONS, write_questions

    retrievers = []
    for part, names in (
        ("one", ("deluge.md", "backups.md")),
        ("two", ("minetest.md", "garden.md")),
    ):
        docs = tmp_path / part / "docs"
        docs.mkdir(parents=True)
        for name in names:
            (docs / name).write_text(DOCS[name], encoding="utf-8")
        engine = Engine(tmp_path / part / "data")
        engine.ingest([docs])
        retrievers.append(Retriever(engine.store, engine.embedder))
    first = load_questions(write_questions(tmp_path / "one.jsonl", QUESTIONS[:2]))
    second = load_questions(write_questions(tmp_path / "two.jsonl", QUESTIONS[2:4]))
    alone = ReaderJob(first, retrievers[0], tmp_path / "models", tmp_path, "r")
    both = ReaderJob(first, retrievers[0], tmp_path / "models", tmp_path, "r",
                     more=[(second, retrievers[1])])  # fmt: skip
    pairs, stats = alone.pairs()
    assert {p.id for p in pairs} == {"q1", "q2"} and stats["passage pairs"] == 2
    pairs, stats = both.pairs()
    assert {p.id for p in pairs} == {"q1", "q2", "q3", "q4"}
    assert stats["passage pairs"] == 4 and stats["sentence pairs"] == 4
    tomatoes = next(p for p in pairs if p.id == "q4" and p.kind == "passage")
    assert "six hours of sun" in tomatoes.positive and "Minetest" in tomatoes.negatives[0]
