"""Conversation history: kept across restarts, renamed, deleted, exported with sources."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine.history import HISTORY_FILE, MIGRATIONS, UNTITLED, History, Message
from engine.index.sqlite import migrate
from engine.types import SearchResult, UserError

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
    assert "1. manual.pdf, page 12 (similarity 0.83)" in text
    assert "> Backups run nightly at two o'clock." in text


def test_history_does_not_import_qt() -> None:
    code = "import sys, engine.history; assert 'PySide6' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


PROMPT = [
    {"role": "system", "content": "Answer from the sources."},
    {"role": "user", "content": "Q?"},
]


def test_rated_and_corrected_answers_export_as_training_examples(data_dir: Path) -> None:
    history = History(data_dir)
    cid = history.create()
    good = history.add(cid, Message("assistant", "Good [1].", "hybrid", prompt=PROMPT))
    bad = history.add(cid, Message("assistant", "Wrong.", "hybrid", prompt=PROMPT))
    fixed = history.add(cid, Message("assistant", "Meh.", "hybrid", prompt=PROMPT))
    history.add(cid, Message("assistant", "Unrated.", "hybrid", prompt=PROMPT))
    history.add(cid, Message("assistant", "Old, no prompt.", "rag"))
    history.rate(good, 1)
    history.rate(bad, -1)
    history.correct(fixed, "  Better [2].  ")
    out = data_dir / "train.jsonl"
    assert history.export_training(out) == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["messages"][-1] for r in rows] == [
        {"role": "assistant", "content": "Good [1]."},
        {"role": "assistant", "content": "Better [2]."},
    ]
    assert rows[0]["messages"][:-1] == PROMPT  # the exact prompt the answer was given
    history.close()
    reopened = History(data_dir)  # ratings and corrections are kept
    stored = {m.id: m for m in reopened.messages(cid)}
    assert stored[bad].rating == -1 and stored[fixed].corrected == "Better [2]."
    reopened.close()


def test_history_from_before_feedback_is_migrated(data_dir: Path) -> None:
    conn = sqlite3.connect(data_dir / HISTORY_FILE)
    conn.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
    conn.execute("INSERT INTO conversations VALUES (1, 't', 0, 0)")
    conn.execute(
        "INSERT INTO messages (conversation_id, role, content, created) "
        "VALUES (1, 'assistant', 'a', 0)"
    )
    conn.commit()
    conn.close()
    history = History(data_dir)
    [message] = history.messages(1)
    assert message.content == "a" and message.rating == 0 and message.prompt is None
    history.close()


def _schema(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    schema = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    conn.close()
    return schema


@pytest.mark.parametrize("version", range(len(MIGRATIONS)))
def test_history_at_every_old_version_upgrades_to_a_fresh_ones_schema(
    tmp_path: Path, version: int
) -> None:
    History(tmp_path / "fresh").close()
    old = tmp_path / "old"
    old.mkdir()
    conn = sqlite3.connect(old / HISTORY_FILE, isolation_level=None)
    migrate(conn, MIGRATIONS[:version])
    conn.close()
    history = History(old)  # re-running a step: "table conversations already exists"
    assert history.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    history.close()
    assert _schema(old / HISTORY_FILE) == _schema(tmp_path / "fresh" / HISTORY_FILE)


def test_history_from_a_newer_quire_is_refused(data_dir: Path) -> None:
    History(data_dir).close()
    conn = sqlite3.connect(data_dir / HISTORY_FILE)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(UserError, match=r"history\.sqlite3 was written by a newer Quire"):
        History(data_dir)


def test_export_training_command(data_dir: Path) -> None:
    history = History(data_dir)
    cid = history.create()
    history.rate(history.add(cid, Message("assistant", "Yes [1].", "hybrid", prompt=PROMPT)), 1)
    history.close()
    out = data_dir / "mine.jsonl"
    main = Path(__file__).resolve().parents[2] / "main.py"
    result = subprocess.run(
        [sys.executable, str(main), "--data-dir", str(data_dir), "export-training", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Wrote 1 training example" in result.stderr
    assert json.loads(out.read_text())["messages"][-1]["content"] == "Yes [1]."


def _damage(path: Path) -> bytes:
    """Scribble over the middle of a real history, as a bad disk sector would."""
    data = bytearray(path.read_bytes())
    data[4096 * 2 : 4096 * 2 + 3000] = b"\xab" * 3000
    path.write_bytes(bytes(data))
    return bytes(data)


def test_a_damaged_history_is_set_aside_and_a_new_one_started(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history = History(data_dir)
    for n in range(40):  # pages enough that damage hides past the header
        history.add(history.create(), Message("user", f"question {n} " * 40))
    history.close()
    path = data_dir / HISTORY_FILE
    damaged = _damage(path)
    history = History(data_dir)  # before the fix: opened, then "malformed" on a query
    assert history.set_aside == data_dir / "history.sqlite3.bad"
    assert history.set_aside.read_bytes() == damaged  # kept as it was, for recovery
    assert history.conversations() == []
    _conversation(history)
    history.close()
    [record] = [r for r in caplog.records if r.name == "engine.history"]
    assert record.levelname == "WARNING"
    assert record.getMessage().startswith(f"{path}: damaged (database disk image is malformed")
    assert "\n" not in record.getMessage() and "history.sqlite3.bad and started a new" in (
        record.getMessage()
    )
    path.write_bytes(b"not a database at all " * 300)  # the second time: another name
    history = History(data_dir)
    assert history.set_aside == data_dir / "history.sqlite3.bad-2"
    history.close()
    assert (data_dir / "history.sqlite3.bad").read_bytes() == damaged


def test_history_errors_name_the_history_not_the_index(data_dir: Path) -> None:
    history = History(data_dir)
    cid = history.create()
    pages = history.conn.execute("PRAGMA page_count").fetchone()[0]
    history.conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL past this
    with pytest.raises(UserError) as caught:
        history.add(cid, Message("user", "x" * 100_000))
    message = str(caught.value)
    assert message.startswith(f"{data_dir / HISTORY_FILE}: the disk is full")
    assert "index" not in message and "conversations before are kept" in message
    history.close()
