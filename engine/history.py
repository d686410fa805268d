"""Conversation history: its own SQLite file (`history.sqlite3`) in the data dir.

Kept apart from the index so that re-indexing, or deleting the index, never loses a
conversation. Messages keep their sources as JSON, so an answer can be shown again (and
exported) with the pages it cited even after the documents changed.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any, Concatenate, NoReturn, ParamSpec, TypeVar

from engine.answer.prompting import source_label
from engine.errors import SqliteKind, describe, sqlite_kind
from engine.index.sqlite import migrate
from engine.paths import ensure_data_dir, private_file
from engine.types import SearchResult

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)
HISTORY_FILE = "history.sqlite3"
UNTITLED = "New conversation"
TITLE_CHARS = 60

_M001 = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    mode TEXT,
    sources TEXT NOT NULL DEFAULT '[]',
    timings TEXT NOT NULL DEFAULT '{}',
    cancelled INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
"""
# Feedback for fine-tuning: the exact prompt an answer was given, a thumbs up (1) or
# down (-1), and the user's corrected answer.
_M002 = """
ALTER TABLE messages ADD COLUMN prompt TEXT;
ALTER TABLE messages ADD COLUMN rating INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN corrected TEXT
"""
# The reader's quote that opened an answer (Quote.to_json()), shown again with it.
_M003 = "ALTER TABLE messages ADD COLUMN quote TEXT"
MIGRATIONS = (_M001, _M002, _M003)  # append-only; engine.index.sqlite.migrate runs them


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created: float
    updated: float
    messages: int


@dataclass
class Message:
    """One turn: a user question, or an assistant answer with its sources."""

    role: str  # "user" or "assistant"
    content: str
    mode: str | None = None
    sources: list[SearchResult] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    id: int = 0
    created: float = 0.0
    prompt: list[dict[str, str]] | None = None  # the chat messages the answer was given
    rating: int = 0  # 1 thumbs up, -1 thumbs down
    corrected: str | None = None  # the user's better answer
    quote: dict[str, Any] | None = None  # the reader's quote, as Quote.to_json() gives it


def _named(method: Callable[Concatenate[History, P], T]) -> Callable[Concatenate[History, P], T]:
    """`method` with the history's SQLite errors as one-line errors naming its file."""

    @functools.wraps(method)
    def named(self: History, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if sqlite_kind(exc) is None:
                raise  # a bug, or an OSError that names its own file
            _raise_named(exc, self.path)

    return named


def _raise_named(exc: Exception, path: Path) -> NoReturn:
    """Raise `exc` as the one-line error naming the history, or as it is (a bug)."""
    error = describe(exc, path, "history")
    if error is None or error is exc:
        raise exc
    raise error from exc


def _set_aside(path: Path, inode: int, why: Exception) -> Path | None:
    """Keep a damaged history (with its WAL) as `history.sqlite3.bad` (`.bad-2`, ... when
    that is taken); None when another process already did (the file is a new one)."""
    names = (path.with_name(f"{path.name}.bad{f'-{n}' if n > 1 else ''}") for n in count(1))
    bad = next(name for name in names if not name.exists())
    try:
        if path.stat().st_ino != inode:
            return None
        for suffix in ("", "-wal", "-shm"):
            part = path.with_name(path.name + suffix)
            if part.exists():
                os.replace(part, bad.with_name(bad.name + suffix))
    except OSError:
        _raise_named(why, path)
    log.warning("%s: damaged (%s); kept it as %s and started a new chat history", path, why, bad)
    return bad


class History:
    """Conversations and their messages. One History per thread (SQLite connections).

    A damaged history file is set aside (`history.sqlite3.bad`, with a warning) and a new
    one started: conversations are worth keeping for the user to recover, never worth
    stopping the app or a command for. Its SQLite errors name the history, not the index.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = ensure_data_dir(data_dir) / HISTORY_FILE
        self.set_aside: Path | None = None  # where a damaged history was kept, this time
        try:
            self.conn = self._open()
        except Exception as exc:  # noqa: BLE001 - classified here; any other is re-raised named
            if sqlite_kind(exc) not in (SqliteKind.CORRUPT, SqliteKind.NOTADB):
                _raise_named(exc, self.path)
            self.set_aside = _set_aside(self.path, self._inode, exc)
            try:
                self.conn = self._open()
            except Exception as again:  # noqa: BLE001 - re-raised, named
                _raise_named(again, self.path)

    def _open(self) -> sqlite3.Connection:
        private_file(self.path)  # SQLite gives its -wal and -shm files the same mode
        self._inode = self.path.stat().st_ino
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            found = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
            if found != ["ok"]:  # damage that only a query of the wrong page would meet
                where = " ".join(" ".join(found).split())[:200]
                raise sqlite3.DatabaseError(f"database disk image is malformed: {where}")
            migrate(conn, MIGRATIONS)
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        self.conn.close()

    # -- conversations -----------------------------------------------------------

    @_named
    def create(self, title: str = UNTITLED) -> int:
        now = time.time()
        cur = self.conn.execute(
            "INSERT INTO conversations (title, created, updated) VALUES (?, ?, ?)",
            (title, now, now),
        )
        return int(cur.lastrowid or 0)

    @_named
    def conversations(self) -> list[Conversation]:
        """All conversations, the most recently updated first."""
        rows = self.conn.execute(
            "SELECT c.id, c.title, c.created, c.updated, COUNT(m.id) FROM conversations c "
            "LEFT JOIN messages m ON m.conversation_id = c.id "
            "GROUP BY c.id ORDER BY c.updated DESC, c.id DESC"
        )
        return [Conversation(int(i), str(t), c, u, int(n)) for i, t, c, u, n in rows]

    def conversation(self, conversation_id: int) -> Conversation | None:
        return next((c for c in self.conversations() if c.id == conversation_id), None)

    @_named
    def rename(self, conversation_id: int, title: str) -> None:
        title = " ".join(title.split()) or UNTITLED
        self.conn.execute(
            "UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id)
        )

    @_named
    def delete(self, conversation_id: int) -> None:
        self.conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # -- messages ------------------------------------------------------------------

    @_named
    def add(self, conversation_id: int, message: Message) -> int:
        """Append a message; the first question also names an untitled conversation."""
        now = time.time()
        sources = json.dumps([_source_json(s) for s in message.sources])
        with self.conn:
            self.conn.execute("BEGIN")
            cur = self.conn.execute(
                "INSERT INTO messages (conversation_id, role, content, mode, sources, timings, "
                "cancelled, created, prompt, quote) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    message.role,
                    message.content,
                    message.mode,
                    sources,
                    json.dumps(message.timings),
                    int(message.cancelled),
                    now,
                    json.dumps(message.prompt) if message.prompt else None,
                    json.dumps(message.quote) if message.quote else None,
                ),
            )
            self.conn.execute(
                "UPDATE conversations SET updated = ?, title = CASE WHEN title = ? AND ? = 'user' "
                "THEN ? ELSE title END WHERE id = ?",
                (now, UNTITLED, message.role, _title(message.content), conversation_id),
            )
        return int(cur.lastrowid or 0)

    @_named
    def messages(self, conversation_id: int) -> list[Message]:
        rows = self.conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        )
        return [_message(row) for row in rows]

    # -- feedback, for fine-tuning ---------------------------------------------------

    @_named
    def rate(self, message_id: int, rating: int) -> None:
        """Thumbs up (1), down (-1) or neither (0) on an answer."""
        if rating not in (-1, 0, 1):
            raise ValueError(f"rating must be -1, 0 or 1, not {rating}")
        self.conn.execute("UPDATE messages SET rating = ? WHERE id = ?", (rating, message_id))

    @_named
    def correct(self, message_id: int, text: str | None) -> None:
        """Keep the user's corrected answer (None or blank removes the correction)."""
        value = text.strip() if text and text.strip() else None
        self.conn.execute("UPDATE messages SET corrected = ? WHERE id = ?", (value, message_id))

    @_named
    def training_examples(self) -> list[dict[str, Any]]:
        """Approved and corrected answers as chat examples for `main.py train`.

        Each holds the exact messages the model was given and the answer to learn: the
        correction when there is one, else the approved answer. Answers rated down and
        not corrected, and answers kept without their prompt, are left out.
        """
        rows = self.conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE role = 'assistant' AND "
            "prompt IS NOT NULL AND (corrected IS NOT NULL OR rating = 1) ORDER BY id"
        )
        examples = []
        for message in map(_message, rows):
            answer = message.corrected or message.content
            assert message.prompt is not None
            turns = [*message.prompt, {"role": "assistant", "content": answer}]
            examples.append({"messages": turns})
        return examples

    @_named
    def export_training(self, path: Path) -> int:
        """Write `training_examples()` as JSON Lines (atomically); returns how many."""
        examples = self.training_examples()
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples)
        tmp.write_text(lines, encoding="utf-8")
        tmp.replace(path)
        return len(examples)

    def export_markdown(self, conversation_id: int) -> str:
        """The conversation as Markdown: questions, answers and a numbered source list."""
        conv = self.conversation(conversation_id)
        if conv is None:
            raise KeyError(conversation_id)
        lines = [f"# {conv.title}", "", f"_Exported from Quire, {_date(conv.updated)}_", ""]
        for message in self.messages(conversation_id):
            lines.extend(_message_markdown(message))
        return "\n".join(lines).rstrip() + "\n"


_MESSAGE_COLUMNS = (
    "id, role, content, mode, sources, timings, cancelled, created, prompt, rating, corrected, "
    "quote"
)


def _message(row: tuple[Any, ...]) -> Message:
    (mid, role, content, mode, sources, timings, cancelled, created, prompt, rating, corrected,
     quote) = row  # fmt: skip
    return Message(
        role=role,
        content=content,
        mode=mode,
        sources=[SearchResult(**s) for s in json.loads(sources)],
        timings=json.loads(timings),
        cancelled=bool(cancelled),
        id=int(mid),
        created=created,
        prompt=json.loads(prompt) if prompt else None,
        rating=int(rating),
        corrected=corrected,
        quote=json.loads(quote) if quote else None,
    )


def _source_json(source: SearchResult) -> dict[str, Any]:
    data = source.to_json()
    data["collection"] = source.collection
    return data


def _title(question: str) -> str:
    text = " ".join(question.split())
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1].rstrip() + "…"


def _date(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _message_markdown(message: Message) -> list[str]:
    if message.role == "user":
        return [f"## {message.content.strip()}", ""]
    mode = (message.mode or "").upper()
    lines = [f"**Answer** ({mode}){' — stopped' if message.cancelled else ''}", ""]
    lines += [message.content.strip() or "_(no answer)_", ""]
    if message.sources:
        lines += ["**Sources**", ""]
        for number, source in enumerate(message.sources, start=1):
            passage = " ".join(source.text.split())
            lines.append(f"{number}. {source_label(source)} ({source.score_label()})  ")
            lines.append(f"   `{source.path}`")
            lines.append(f"   > {passage}")
        lines.append("")
    return lines
