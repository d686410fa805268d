"""engine.index.sqlite: the stdlib-or-sqlean choice, for real and with stand-in stdlib modules."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlean

from engine.errors import SqliteKind, describe, sqlite_kind
from engine.index import sqlite as quire_sqlite
from engine.types import UserError


@pytest.fixture(autouse=True)
def _fresh_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUIRE_SQLITE", raising=False)
    quire_sqlite._can_load_vec.cache_clear()


def _stdlib_like(can_load: bool) -> ModuleType:
    """A stand-in for the stdlib module: sqlean's connections, with or without extension loading."""
    fake = ModuleType("sqlite3")
    if can_load:
        fake.Connection = sqlean.Connection  # type: ignore[attr-defined]
        fake.connect = sqlean.connect  # type: ignore[attr-defined]
        return fake

    class NoExtensions:  # like a Python built without SQLITE_ENABLE_LOAD_EXTENSION
        pass

    fake.Connection = NoExtensions  # type: ignore[attr-defined]
    fake.connect = sqlite3.connect  # type: ignore[attr-defined]
    return fake


def test_this_pythons_stdlib_path_is_reported() -> None:
    chosen = quire_sqlite.driver()
    can = quire_sqlite._can_load_vec(sqlite3)
    assert chosen is (sqlite3 if can else sqlean)


def test_sqlean_path_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUIRE_SQLITE", "sqlean")
    conn = quire_sqlite.connect(tmp_path / "x.sqlite3")
    assert type(conn).__module__.startswith("sqlean")
    assert conn.execute("SELECT vec_version()").fetchone()[0].startswith("v")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == quire_sqlite.BUSY_TIMEOUT_MS
    conn.close()


def test_stdlib_that_can_load_extensions_is_preferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _stdlib_like(can_load=True)
    monkeypatch.setattr(quire_sqlite, "sqlite3", fake)
    assert quire_sqlite.driver() is fake
    monkeypatch.setenv("QUIRE_SQLITE", "stdlib")
    conn = quire_sqlite.connect(tmp_path / "x.sqlite3")
    assert conn.execute("SELECT vec_version()").fetchone()
    conn.close()


def test_stdlib_without_extensions_falls_back_to_sqlean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quire_sqlite, "sqlite3", _stdlib_like(can_load=False))
    assert quire_sqlite.driver() is sqlean


def test_forcing_stdlib_that_cannot_load_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quire_sqlite, "sqlite3", _stdlib_like(can_load=False))
    monkeypatch.setenv("QUIRE_SQLITE", "stdlib")
    with pytest.raises(UserError, match="cannot load extensions"):
        quire_sqlite.driver()


def test_unknown_driver_name_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUIRE_SQLITE", "apsw")
    with pytest.raises(UserError, match="stdlib"):
        quire_sqlite.driver()


def test_readonly_connection_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    writer = quire_sqlite.connect(path)
    writer.execute("CREATE TABLE t (x)")
    writer.close()
    conn = quire_sqlite.connect(path, readonly=True)
    with pytest.raises(Exception, match="readonly"):
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()


# -- migrate: the one runner for the index and the history ---------------------------------

STEPS = (
    "CREATE TABLE a (x INTEGER)",
    "CREATE TABLE b (y INTEGER); INSERT INTO b VALUES (1)",
    "ALTER TABLE a ADD COLUMN z TEXT",
)


def _schema(conn: Any) -> list[tuple[str, str]]:
    return list(conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall())


def test_migrate_applies_only_the_missing_steps(tmp_path: Path) -> None:
    conn = quire_sqlite.connect(tmp_path / "db.sqlite3")
    quire_sqlite.migrate(conn, STEPS[:1])
    assert quire_sqlite.user_version(conn) == 1
    quire_sqlite.migrate(conn, STEPS)  # re-running step 1 would fail: "table a already exists"
    quire_sqlite.migrate(conn, STEPS)
    assert quire_sqlite.user_version(conn) == 3
    assert conn.execute("SELECT x, z, (SELECT COUNT(*) FROM b) FROM a").fetchall() == []
    assert conn.execute("SELECT y FROM b").fetchall() == [(1,)]
    conn.close()


def test_a_failing_step_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    conn = quire_sqlite.connect(tmp_path / "db.sqlite3")
    quire_sqlite.migrate(conn, STEPS[:1])
    before = _schema(conn)

    def broken(c: object) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        quire_sqlite.migrate(conn, [*STEPS, broken])
    assert _schema(conn) == before and quire_sqlite.user_version(conn) == 1
    assert not conn.in_transaction
    conn.close()


def test_a_database_from_a_newer_quire_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    conn = quire_sqlite.connect(path)
    quire_sqlite.migrate(conn, STEPS)
    with pytest.raises(UserError, match=f"{path.name} was written by a newer Quire.*version 3"):
        quire_sqlite.migrate(conn, STEPS[:2])
    conn.close()


def test_migrate_reads_the_version_under_the_write_lock(tmp_path: Path) -> None:
    """One connection migrates while another opens: the second waits for the write lock,
    then reads the version again and finds the steps applied. Reading it before the lock,
    it ran step 1 a second time and failed with "table a already exists"."""
    path = tmp_path / "db.sqlite3"
    first = quire_sqlite.connect(path)
    first.execute("BEGIN IMMEDIATE")
    errors: list[BaseException] = []
    locking = threading.Event()  # the second has read the version and asks for the lock

    def open_second() -> None:
        conn = quire_sqlite.connect(path)
        conn.set_trace_callback(lambda sql: "BEGIN" in sql and locking.set())
        try:
            quire_sqlite.migrate(conn, STEPS)  # reads 0, then waits on the lock
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread to raise
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=open_second)
    thread.start()
    assert locking.wait(timeout=30)
    quire_sqlite.execute_script(first, ";".join(STEPS) + "; PRAGMA user_version = 3")
    first.execute("COMMIT")
    thread.join(timeout=30)
    assert errors == []
    assert quire_sqlite.user_version(first) == 3
    first.close()


@pytest.mark.parametrize("driver", [sqlite3, sqlean], ids=["stdlib", "sqlean"])
def test_sqlite_errors_are_told_apart_by_kind(driver: ModuleType, tmp_path: Path) -> None:
    """A file that is not a database and a locked one are the user's environment (a kind
    and a one-line advice); a mistake in our SQL is a bug (None)."""
    junk = tmp_path / "index.sqlite3"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(driver.DatabaseError) as not_db:
        driver.connect(junk).execute("SELECT * FROM sqlite_master")
    assert sqlite_kind(not_db.value) is SqliteKind.NOTADB
    advice = describe(not_db.value, junk)
    assert advice is not None and str(advice).startswith(f"{junk}: this is not a Quire index")
    locked = tmp_path / "locked.sqlite3"
    holder = driver.connect(locked, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(driver.OperationalError) as busy:
        driver.connect(locked, timeout=0).execute("CREATE TABLE t (x)")
    holder.execute("ROLLBACK")
    assert sqlite_kind(busy.value) is SqliteKind.BUSY
    with pytest.raises(driver.OperationalError) as bug:
        driver.connect(":memory:").execute("SELEC 1")
    assert sqlite_kind(bug.value) is None and describe(bug.value) is None
