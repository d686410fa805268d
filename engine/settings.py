"""User settings, saved as JSON in the data dir and shared by the CLI and the GUI."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

SETTINGS_FILE = "settings.json"


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

    @classmethod
    def load(cls, data_dir: Path) -> Settings:
        """Read settings; unknown keys are ignored and a broken file falls back to defaults."""
        path = data_dir / SETTINGS_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def save(self, data_dir: Path) -> None:
        """Write atomically so a crash never leaves half a settings file."""
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / (SETTINGS_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        os.replace(tmp, data_dir / SETTINGS_FILE)
