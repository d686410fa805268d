"""Where Quire keeps its data and its model files, per platform.

The data folder holds conversations, the index of the user's documents and the log, so
it is the user's alone: created 0700, its files 0600 (on Windows the user's profile
folder already keeps others out).
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path

from engine.types import UserError

APP_NAME = "quire"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# Quire's own files in a data folder: what marks a folder as Quire's (and so one whose
# permissions Quire may tighten), and what it tightens in it.
OWN_FILES = ("index.sqlite3*", "history.sqlite3*", "settings.json*", "server_key",
             "test-questions.jsonl", "logs/quire.log*")  # fmt: skip
log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """The data folder: `$QUIRE_DATA_DIR`, else the platform's application-data folder."""
    override = os.environ.get("QUIRE_DATA_DIR")
    if override:
        return Path(override).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        appdata = os.environ.get("APPDATA")
        base = Path(appdata) if appdata else home / "AppData" / "Roaming"
        return base / "Quire"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "Quire"
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else home / ".local" / "share"
    return base / APP_NAME


def models_dir(data_dir: Path) -> Path:
    """The models folder: `$QUIRE_MODELS_DIR`, else `<data_dir>/models`."""
    override = os.environ.get("QUIRE_MODELS_DIR")
    if override:
        return Path(override).expanduser()
    return Path(data_dir) / "models"


def ensure_data_dir(path: Path) -> Path:
    """Create the data folder for this user only, or tighten a Quire data folder that
    others can read (noted in the log); a file in its place is a one-line UserError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise _in_the_way(path)
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    except FileExistsError:  # a dangling symbolic link, or a file made meanwhile
        raise _in_the_way(path) from None
    if os.name == "posix" and any(_own_files(path)):
        _tighten(path, PRIVATE_DIR)
        _tighten(path / "logs", PRIVATE_DIR)
        for file in _own_files(path):
            _tighten(file, PRIVATE_FILE)
    return path


def private_opener(path: str, flags: int) -> int:
    """`open(..., opener=private_opener)`: a file it creates is the user's alone (0600)."""
    return os.open(path, flags, PRIVATE_FILE)


def private_file(path: Path) -> Path:
    """Create `path` empty and 0600 unless it exists (then tighten it), so that what
    another library writes there (SQLite) is not readable by others."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    if os.name == "posix":
        _tighten(Path(path), PRIVATE_FILE)
    return Path(path)


def _in_the_way(path: Path) -> UserError:
    return UserError(
        f"{path}: a file is in the way of the data folder; pick another data folder with --data-dir"
    )


def _own_files(folder: Path) -> list[Path]:
    return [p for pattern in OWN_FILES for p in folder.glob(pattern) if p.is_file()]


def _tighten(path: Path, mode: int) -> None:
    """Take group and others' permissions off `path` (noted in the log)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    current = stat.S_IMODE(info.st_mode)
    if not current & 0o077 or stat.S_ISLNK(info.st_mode):
        return
    try:
        path.chmod(current & mode)
    except OSError as exc:  # not the user's, or a read-only disk: left as it is
        log.info("%s: could not make it private (%s)", path, exc.strerror or exc)
        return
    log.info("%s: made private (mode %o, was %o)", path, current & mode, current)
