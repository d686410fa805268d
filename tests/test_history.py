"""Conversation history: kept across restarts, renamed, deleted, exported with sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from engine.history import UNTITLED, History, Message
from engine.types import SearchResult

SOURCE = SearchResult(
    rank=1,
    document="manual.pdf",
    path="/docs/manual.pdf",
    page=12,
    section=None,
    score=0.83,
    text="Backups run nightly\nat two o'clock.",
    collection="work",
)


def _conversation(history: History) -> int:
    cid = history.create()
    history.add(cid, Message("user", "  When do backups run?  "))
    history.add(cid, Message("assistant", "Nightly [1].", mode="rag", sources=[SOURCE]))
    return cid


def test_conversation_survives_a_restart(data_dir: Path) -> None:
    history = History(data_dir)
    cid = _conversation(history)
    history.close()

    reopened = History(data_dir)
    [conv] = reopened.conversations()
    assert conv.id == cid
    assert conv.title == "When do backups run?"  # named after the first question
    assert conv.messages == 2
    question, answer = reopened.messages(cid)
    assert (question.role, answer.role) == ("user", "assistant")
    assert answer.sources == [SOURCE]
    assert answer.mode == "rag"


def test_rename_delete_and_order(data_dir: Path) -> None:
    history = History(data_dir)
    first = _conversation(history)
    second = history.create()
    assert [c.id for c in history.conversations()] == [second, first]
    history.rename(first, "  Backups\n ")
    history.add(first, Message("user", "and restores?"))
    convs = history.conversations()
    assert [c.id for c in convs] == [first, second]  # most recently used first
    assert convs[0].title == "Backups"  # a later question does not rename it
    assert convs[1].title == UNTITLED
    history.delete(first)
    assert [c.id for c in history.conversations()] == [second]
    assert history.messages(first) == []


def test_export_markdown_lists_sources(data_dir: Path) -> None:
    history = History(data_dir)
    cid = _conversation(history)
    text = history.export_markdown(cid)
    assert text.startswith("# When do backups run?\n")
    assert "## When do backups run?" in text
    assert "Nightly [1]." in text
    assert "1. manual.pdf, page 12 (score 0.83)" in text
    assert "> Backups run nightly at two o'clock." in text


def test_history_does_not_import_qt() -> None:
    code = "import sys, engine.history; assert 'PySide6' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
