"""Follow-up questions: searched with the question they follow, answered with the recent
turns in the prompt, continued from the CLI (`ask --conversation`), measured by `eval`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.answer.followup import search_query, turns_of
from engine.answer.prompting import build_prompt
from engine.core import Engine
from engine.eval.evaluation import ALONE, WITH_CONTEXT, EvalConfig, Evaluation
from tests.conftest import REPO
from tests.ui.test_gui_app import app, open_window  # noqa: F401 - fixtures

PAGES = {
    "minetest.md": "# Minetest\n\nMinetest is a block sandbox game server. Players connect to "
    "it on UDP port 30000, which must be forwarded on the router.\n",
    "syncthing.md": "# Syncthing\n\nSyncthing synchronises files between devices. Its web "
    "interface listens on port 8384, and devices find each other on port 22000.\n",
    "backups.md": "# Backups\n\nBackups are made with Borg. A backup can be restored from the "
    "web interface. Keep one copy off site.\n",
}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("followups")
    docs = root / "docs"
    docs.mkdir()
    for name, text in PAGES.items():
        (docs / name).write_text(text)
    engine = Engine(root / "data")
    assert not engine.ingest([docs]).failed
    engine.close()
    return root / "data"


def test_turns_come_from_a_saved_conversation_in_order() -> None:
    says = [SimpleNamespace(role=r, content=c) for r, c in
            [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("user", "q3"),
             ("assistant", "a3")]]  # fmt: skip
    assert turns_of(says) == [("q1", "a1"), ("q2", ""), ("q3", "a3")]
    assert search_query("Which port?", []) == "Which port?"
    assert search_query("Which port?", [("What is Syncthing?", "…")]) == (
        "What is Syncthing?\nWhich port?"
    )


def test_the_prompt_carries_recent_turns_and_drops_the_oldest_first() -> None:
    words = len  # one "token" per character keeps the arithmetic visible

    def source(text: str):
        from engine.types import SearchResult

        return SearchResult(1, "a.md", "/a.md", None, None, 0.9, text)

    turns = [("first question", "first answer " * 5), ("second question", "second answer")]
    prompt = build_prompt("Which port?", [source("Port 8384.")], words, 2000, turns=turns)
    roles = [m["role"] for m in prompt.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert prompt.messages[1]["content"] == "first question"
    assert prompt.messages[-1]["content"].endswith("Question: Which port?")
    tight = build_prompt("Which port?", [source("Port 8384.")], words, 420, turns=turns)
    assert [m["content"] for m in tight.messages[1:3]] == ["second question", "second answer"]
    assert tight.sources  # the source still fits: turns give way to it


def test_a_follow_up_is_searched_with_the_question_it_follows(library: Path) -> None:
    engine = Engine(library)
    follow_up = "Which port does it use?"
    for subject, document in (("What is Syncthing?", "syncthing.md"),
                              ("What is Minetest?", "minetest.md")):  # fmt: skip
        found = engine.sources(search_query(follow_up, [(subject, "")]))
        assert found[0].document == document, (subject, [s.document for s in found])
    engine.close()


def test_eval_measures_follow_ups_with_and_without_the_question_before(
    library: Path, tmp_path: Path
) -> None:
    rows = [
        {"id": "s1", "question": "What is Syncthing?", "doc": "syncthing.md",
         "answer": "Syncthing"},
        {"id": "s2", "question": "Which port does its web interface use?", "doc": "syncthing.md",
         "answer": "8384", "follows": "s1"},
        {"id": "m1", "question": "What is Minetest?", "doc": "minetest.md", "answer": "sandbox"},
        {"id": "m2", "question": "Which port do players connect on?", "doc": "minetest.md",
         "answer": "30000", "follows": "m1"},
    ]  # fmt: skip
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    engine = Engine(library)
    report = Evaluation(engine, questions, EvalConfig(retrieval_only=True)).run()
    engine.close()
    assert report.retrieval[WITH_CONTEXT]["n"] == 2 and report.retrieval[ALONE]["n"] == 2
    assert report.retrieval[WITH_CONTEXT]["hit_at_1"] == 1.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**rows[1], "follows": "nope"}) + "\n")
    from engine.types import UserError

    with pytest.raises(UserError, match="'follows' names 'nope'"):
        Evaluation(Engine(library), bad, EvalConfig(retrieval_only=True))


@pytest.mark.slow
def test_ask_continues_a_conversation_on_the_cli(library: Path) -> None:
    def ask(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(REPO / "main.py"), "--data-dir", str(library), "ask", *args,
             "--max-tokens", "24", "--json"],
            capture_output=True, text=True, cwd=REPO, timeout=300,
        )  # fmt: skip

    first = ask("What is Syncthing?")
    assert first.returncode == 0, first.stderr
    number = json.loads(first.stdout)["conversation"]
    second = ask("Which port does its web interface use?", "--conversation", str(number))
    assert second.returncode == 0, second.stderr
    answer = json.loads(second.stdout)
    assert answer["conversation"] == number
    assert answer["sources"][0]["document"] == "syncthing.md"
    from engine.history import History

    history = History(library)
    assert [m.role for m in history.messages(number)] == ["user", "assistant"] * 2
    history.close()
    missing = ask("Anything?", "--conversation", "999")
    assert missing.returncode == 1 and missing.stderr.startswith("quire: no conversation 999")


@pytest.mark.gui
@pytest.mark.slow
def test_a_follow_up_in_the_window_is_about_the_same_thing(
    library,
    tmp_path,
    qtbot,
    open_window,  # noqa: F811 - the fixture
):
    """In the app: a question, then "Which port does it use?" in the same conversation:
    the follow-up's sources are about the first question's subject."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(library, data)
    window = open_window(data)
    window.chat.max_tokens = 16
    sources = []
    for question in ("What is Minetest?", "Which port does it use?"):
        with qtbot.waitSignal(window.chat.answer_finished, timeout=120_000) as finished:
            window.chat.ask(question, "rag")
        sources.append(finished.args[0].sources[0].document)
    assert sources == ["minetest.md", "minetest.md"]
    assert len(window.chat.history.messages(window.chat.conversation_id)) == 4
