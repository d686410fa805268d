"""Open SQLite connections with sqlite-vec loaded.

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
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlite_vec

from engine.types import UserError

BUSY_TIMEOUT_MS = 5000
_ENV = "QUIRE_SQLITE"


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
    except Exception:
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
