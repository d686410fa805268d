"""Where Quire keeps its data and its model files, per platform."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "quire"


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
