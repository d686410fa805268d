"""engine.sqlite: the stdlib-or-sqlean choice, for real and with stand-in stdlib modules."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import ModuleType

import pytest
import sqlean

from engine import sqlite as quire_sqlite
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
