"""Open SQLite connections with sqlite-vec loaded, and migrate their schema.

The stdlib ``sqlite3`` is used when its connections can load extensions; many Python
builds (including this project's machines) ship without that, so ``sqlean`` (a drop-in
``sqlite3`` with extension loading) is the fallback. ``QUIRE_SQLITE=stdlib|sqlean``
forces one.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeAlias

import sqlite_vec

from engine.types import UserError

BUSY_TIMEOUT_MS = 5000
_ENV = "QUIRE_SQLITE"

Step: TypeAlias = Callable[[Any], None] | str
"""One migration: a function of a bare connection, or SQL statements separated by ';'."""


def _load_sqlean() -> ModuleType:
    import sqlean

    return sqlean


@functools.lru_cache(maxsize=8)
def _can_load_vec(module: ModuleType) -> bool:
    """True if ``module``'s connections can load sqlite-vec."""
    if not hasattr(module.Connection, "enable_load_extension"):
        return False
    try:
        conn = module.connect(":memory:")
        try:
            conn.enable_load_extension(True)
            sqlite_vec.load(conn)
            conn.execute("SELECT vec_version()").fetchone()
        finally:
            conn.close()
    except Exception:  # noqa: BLE001 - whatever stops the extension loading: not available
        return False
    return True


def driver() -> ModuleType:
    """The DB-API module to use: stdlib ``sqlite3`` if it can load sqlite-vec, else sqlean."""
    forced = os.environ.get(_ENV, "").strip().lower()
    if forced not in ("", "stdlib", "sqlean"):
        raise UserError(f"{_ENV}={forced!r} is not supported; use 'stdlib' or 'sqlean'")
    if forced == "sqlean":
        return _load_sqlean()
    if _can_load_vec(sqlite3):
        return sqlite3
    if forced == "stdlib":
        raise UserError(
            f"{_ENV}=stdlib, but this Python's sqlite3 cannot load extensions (sqlite-vec); "
            f"unset {_ENV} to use sqlean"
        )
    return _load_sqlean()


def _enable_wal(conn: Any) -> None:
    """Switch to WAL, retrying while another process holds the file: the switch does not
    wait on busy_timeout, and two processes opening a new data dir at once collided."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def connect(path: Path, readonly: bool = False) -> Any:
    """A connection to ``path`` with sqlite-vec loaded, WAL and sane pragmas.

    The connection is in autocommit mode (``isolation_level=None``): callers open
    transactions explicitly with ``BEGIN``. Returns the driver's ``Connection``.
    """
    module = driver()
    if readonly:
        conn = module.connect(
            f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
        )
    else:
        conn = module.connect(str(path), isolation_level=None)
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            _enable_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except Exception:
        conn.close()
        raise
    return conn


def user_version(conn: Any) -> int:
    """The number of migration steps applied to this database."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: Any, steps: Sequence[Step], legacy: Callable[[Any], int] | None = None) -> None:
    """Apply the steps this database lacks, in order and in one transaction, and count
    them in ``PRAGMA user_version``. ``steps`` is append-only: step n never changes.

    The version that decides is read under the write lock (BEGIN IMMEDIATE): two processes
    opening a new data dir at once both read 0 otherwise, and the second fails with "table
    already exists". ``legacy`` gives the version of a database from before user_version
    counted steps (asked only when it reads 0). A database a newer Quire wrote is refused.
    """
    if _known(conn, user_version(conn), len(steps)) == len(steps):
        return  # up to date: no write lock, so opening never waits on another's write
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = user_version(conn)
        if version == 0 and legacy is not None:
            version = legacy(conn)
        for step in steps[_known(conn, version, len(steps)) :]:
            _apply(conn, step)
        conn.execute(f"PRAGMA user_version = {len(steps)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _known(conn: Any, version: int, latest: int) -> int:
    if version > latest:
        path = conn.execute("PRAGMA database_list").fetchone()[2] or "the database"
        raise UserError(
            f"{path} was written by a newer Quire (schema version {version}, this one knows "
            f"{latest}); update Quire to open it"
        )
    return version


def _apply(conn: Any, step: Step) -> None:
    if callable(step):
        step(conn)
    else:
        execute_script(conn, step)


def execute_script(conn: Any, script: str) -> None:
    """Run SQL statements separated by ';' (none may contain one) inside the caller's
    transaction: executescript() would COMMIT it first."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)
