"""Environment failures as one-line user errors; everything else is a bug.

A full disk, a read-only folder, a missing permission or a damaged index is the user's
environment, not Quire's fault: `describe` turns it into a UserError that names the file
and says what to do. An exception it does not recognise is a bug and keeps its traceback
(qutebrowser's KnownError/BugError split). The CLI and the GUI both go through here.
"""

from __future__ import annotations

import errno
import os
from enum import Enum
from pathlib import Path

from engine.types import UserError

_OS_ERRORS = {
    errno.ENOSPC: "the disk is full; free some space, then try again",
    errno.EDQUOT: "the disk quota is used up; free some space, then try again",
    errno.EROFS: "the disk is read-only; pick a writable data folder with --data-dir",
    errno.EACCES: "permission denied; check its permissions, or pick another data folder "
    "with --data-dir",
    errno.EPERM: "operation not permitted; check its permissions, or pick another data "
    "folder with --data-dir",
    errno.ENOENT: "not found; check the path",
    errno.ENOTDIR: "a file is in the way of a folder; pick another data folder with --data-dir",
    errno.EIO: "disk input/output error; check the disk, then try again",
}


class SqliteKind(Enum):
    """The SQLite failures that are the user's environment, not a bug in Quire's SQL."""

    FULL = "full"
    READONLY = "readonly"
    IOERR = "ioerr"
    CORRUPT = "corrupt"
    NOTADB = "notadb"
    BUSY = "busy"
    CANTOPEN = "cantopen"


# SQLite primary result codes (the low byte of an extended code).
_SQLITE_CODES = {
    13: SqliteKind.FULL,  # SQLITE_FULL
    8: SqliteKind.READONLY,  # SQLITE_READONLY
    10: SqliteKind.IOERR,  # SQLITE_IOERR
    11: SqliteKind.CORRUPT,  # SQLITE_CORRUPT
    26: SqliteKind.NOTADB,  # SQLITE_NOTADB
    5: SqliteKind.BUSY,  # SQLITE_BUSY
    6: SqliteKind.BUSY,  # SQLITE_LOCKED
    14: SqliteKind.CANTOPEN,  # SQLITE_CANTOPEN
    3: SqliteKind.READONLY,  # SQLITE_PERM
}
# The same, by message, for drivers that do not expose the code.
_SQLITE_MESSAGES = (
    ("database or disk is full", SqliteKind.FULL),
    ("readonly database", SqliteKind.READONLY),
    ("disk i/o error", SqliteKind.IOERR),
    ("malformed", SqliteKind.CORRUPT),
    ("file is not a database", SqliteKind.NOTADB),
    ("database is locked", SqliteKind.BUSY),
    ("database table is locked", SqliteKind.BUSY),
    ("unable to open database file", SqliteKind.CANTOPEN),
)
_FULL_BYTES = 1 << 20  # less free space than this, and an I/O error means a full disk
# What to do about each, per database: the index of the documents, and the chat history.
_SQLITE_ADVICE: dict[str, dict[SqliteKind, str]] = {
    "index": {
        SqliteKind.FULL: (
            "the disk is full; free some space and run the command again (what was indexed "
            "before is kept)"
        ),
        SqliteKind.READONLY: (
            "the index cannot be written (read-only file, folder or disk); check its "
            "permissions, or pick another data folder with --data-dir"
        ),
        SqliteKind.IOERR: (
            "disk input/output error while using the index; check the disk, then try again"
        ),
        SqliteKind.CORRUPT: (
            "the index is damaged; move it aside (Quire starts a new one) and ingest your "
            "documents again"
        ),
        SqliteKind.NOTADB: (
            "this is not a Quire index (not an SQLite database); move it aside or pick "
            "another data folder with --data-dir"
        ),
        SqliteKind.BUSY: (
            "the index is busy in another Quire process; wait for it to finish, then try again"
        ),
        SqliteKind.CANTOPEN: (
            "cannot open the index (a read-only disk or folder?); check the folder's "
            "permissions, or pick another data folder with --data-dir"
        ),
    },
    "history": {
        SqliteKind.FULL: (
            "the disk is full; free some space and run the command again (the conversations "
            "before are kept)"
        ),
        SqliteKind.READONLY: (
            "the chat history cannot be written (read-only file, folder or disk); check its "
            "permissions, or pick another data folder with --data-dir"
        ),
        SqliteKind.IOERR: (
            "disk input/output error while using the chat history; check the disk, then try again"
        ),
        SqliteKind.CORRUPT: (
            "the chat history is damaged; Quire sets it aside and starts a new one the next "
            "time it opens it"
        ),
        SqliteKind.NOTADB: (
            "the chat history is not an SQLite database; Quire sets it aside and starts a "
            "new one the next time it opens it"
        ),
        SqliteKind.BUSY: (
            "the chat history is busy in another Quire process; wait for it to finish, then "
            "try again"
        ),
        SqliteKind.CANTOPEN: (
            "cannot open the chat history (a read-only disk or folder?); check the folder's "
            "permissions, or pick another data folder with --data-dir"
        ),
    },
}


def describe(
    exc: BaseException, path: Path | str | None = None, database: str = "index"
) -> UserError | None:
    """A UserError for an environment failure, or None when `exc` is a bug.

    `path` names the file involved when the exception does not (SQLite errors never do),
    and `database` which of Quire's databases it is ("index" or "history"): the CLI passes
    the index file; the history names itself.
    """
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, OSError):
        return _os_error(exc, path)
    kind = sqlite_kind(exc)
    if kind is None:
        return None
    where = path or f"the {database}"
    disk = _disk_flags(Path(path)) if path is not None else None
    if (
        kind in (SqliteKind.READONLY, SqliteKind.CANTOPEN)
        and disk
        and disk.f_flag & getattr(os, "ST_RDONLY", 1)
    ):
        return UserError(f"{where}: {_OS_ERRORS[errno.EROFS]}")
    if (
        kind in (SqliteKind.IOERR, SqliteKind.CANTOPEN)
        and disk
        and disk.f_bavail * disk.f_frsize < _FULL_BYTES
    ):
        kind = SqliteKind.FULL  # a write that found no room at all is reported as an I/O error
    return UserError(f"{where}: {_SQLITE_ADVICE[database][kind]}")


def disk_full(exc: BaseException, path: Path | str) -> bool:
    """True when `exc` is a write that found no room where `path` lives: ENOSPC or EDQUOT,
    a library's own error saying so (torch, safetensors and onnx wrap the OSError), or any
    failure with less than a megabyte left on that disk."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    if any(words in text for words in ("No space left", "StorageFull", "Disk quota")):
        return True
    disk = _disk_flags(Path(path))
    return disk is not None and disk.f_bavail * disk.f_frsize < _FULL_BYTES


def _os_error(exc: OSError, path: Path | str | None) -> UserError | None:
    advice = _OS_ERRORS.get(exc.errno or 0)
    if advice is None:
        return None
    where = exc.filename if exc.filename is not None else path
    return UserError(f"{where}: {advice}" if where is not None else advice)


def sqlite_kind(exc: BaseException) -> SqliteKind | None:
    """Which environment failure an SQLite error is, or None when `exc` is not one of those
    (a bug in our SQL is None too)."""
    if not any(cls.__name__ == "DatabaseError" for cls in type(exc).__mro__):
        return None  # sqlite3's and sqlean's errors both derive from a DatabaseError
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _SQLITE_CODES:
        return _SQLITE_CODES[code & 0xFF]
    message = str(exc).lower()
    return next((kind for text, kind in _SQLITE_MESSAGES if text in message), None)


def _disk_flags(path: Path) -> os.statvfs_result | None:
    """statvfs of the file system holding `path` (or its nearest existing folder)."""
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return os.statvfs(folder)
            except (OSError, AttributeError):  # no statvfs on Windows
                return None
    return None
