"""User settings, saved as JSON in the data dir and shared by the CLI and the GUI."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

SETTINGS_FILE = "settings.json"
log = logging.getLogger(__name__)


@dataclass
class Settings:
    """Everything a user can set; `None` means "the bundled default"."""

    model_path: str | None = None
    threads: int | None = None  # None: all cores
    context_size: int = 4096
    temperature: float = 0.2
    max_tokens: int = 384
    top_k: int = 3  # sources per answer: each costs ~200 prompt tokens on a CPU
    # Relevance cutoff (cosine): off-topic questions scored at most 0.29 against the
    # development manuals, and every gold passage at least 0.32.
    min_score: float = 0.3
    system_prompt: str | None = None
    collection: str = "default"
    lora_path: str | None = None
    lora_scale: float = 1.0
    watched_folders: list[str] | None = None
    reader: bool = True  # rerank the sources and quote the answering sentence
    reader_path: str | None = None  # a reader trained here (train-reader); None: the shipped one
    # A model server answers instead of the local GGUF (engine/remote.py); None: local.
    # Its API key is not kept here but in `server_key` beside this file (mode 0600).
    server_url: str | None = None
    server_model: str | None = None  # None: the first model the server lists
    server_timeout: float = 120.0  # seconds to wait for the server's next piece

    @classmethod
    def load(cls, data_dir: Path) -> Settings:
        """Read settings; unknown keys are ignored. A broken file is moved aside to
        `settings.json.bad` with a warning (not overwritten), and defaults are used."""
        path = data_dir / SETTINGS_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            log.warning("%s: cannot read the settings (%s); using the defaults", path, exc)
            return cls()
        try:
            raw = json.loads(text)
        except ValueError as exc:
            _set_aside(path, f"not valid JSON ({exc})")
            return cls()
        if not isinstance(raw, dict):
            _set_aside(path, f"expected a JSON object, found {type(raw).__name__}")
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def save(self, data_dir: Path) -> None:
        """Write atomically so a crash never leaves half a settings file."""
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / (SETTINGS_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        os.replace(tmp, data_dir / SETTINGS_FILE)


def _set_aside(path: Path, why: str) -> None:
    """Keep a broken settings file as `<name>.bad` for the user, and say so."""
    bad = path.with_name(path.name + ".bad")
    try:
        os.replace(path, bad)
    except OSError as exc:
        log.warning("%s: %s; using the defaults (could not move it aside: %s)", path, why, exc)
        return
    log.warning("%s: %s; kept it as %s and using the defaults", path, why, bad)
