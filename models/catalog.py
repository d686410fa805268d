"""Models on request: GGUF files the user already has, and a short list to download.

`discover()` finds GGUF language models where other local-AI apps keep theirs (LM Studio,
GPT4All, Jan, llama.cpp's cache) and in folders the user names; nothing is copied, the
app uses them where they are. `CURATED` is a short list of small instruct models that run
on a laptop CPU, fetched through huggingface-hub only when the user clicks Download
(`models.hub.download`, which resumes a partial file). Sizes are approximate (rounded,
written down without asking the network; the download shows the exact total), and the
expected speed is estimated from the bundled model's measured speed, scaled by file size
(generation on a CPU reads every weight once per token).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from models.errors import UserError
from models.registry import GGUFInfo, read_gguf_info

BUNDLED_BYTES = 253_113_024  # gemma-3-270m-q4_k_m.gguf, the speed reference


@dataclass(frozen=True)
class Offer:
    """A model the user may download: one GGUF file in a Hub repo."""

    label: str
    repo: str
    filename: str
    size_bytes: int  # approximate
    note: str

    def expected_tokens_per_s(self, bundled_tokens_per_s: float) -> float:
        return bundled_tokens_per_s * BUNDLED_BYTES / self.size_bytes


CURATED = (
    Offer(
        "Qwen2.5 0.5B Instruct (Q4_K_M)",
        "bartowski/Qwen2.5-0.5B-Instruct-GGUF",
        "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf",
        400_000_000,
        "the smallest here; instruction-tuned, 32k context",
    ),
    Offer(
        "Gemma 3 1B Instruct (Q4_K_M)",
        "ggml-org/gemma-3-1b-it-GGUF",
        "gemma-3-1b-it-Q4_K_M.gguf",
        810_000_000,
        "the bundled model's larger, instruction-tuned sibling",
    ),
    Offer(
        "Llama 3.2 1B Instruct (Q4_K_M)",
        "bartowski/Llama-3.2-1B-Instruct-GGUF",
        "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        810_000_000,
        "Meta's smallest Llama 3.2, instruction-tuned",
    ),
    Offer(
        "Qwen2.5 1.5B Instruct (Q4_K_M)",
        "bartowski/Qwen2.5-1.5B-Instruct-GGUF",
        "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf",
        990_000_000,
        "the largest here, so the slowest on a laptop CPU",
    ),
)


@dataclass(frozen=True)
class Found:
    """A GGUF model found on disk, used in place."""

    path: Path
    app: str  # where it was found: "LM Studio", "GPT4All", "your folder", ...
    info: GGUFInfo


def app_folders(home: Path | None = None) -> list[tuple[str, Path]]:
    """(app, folder) where local-AI apps keep GGUF files, for this platform."""
    home = home or Path.home()
    folders = [
        ("LM Studio", home / ".lmstudio" / "models"),
        ("LM Studio", home / ".cache" / "lm-studio" / "models"),
        ("Jan", home / "jan" / "models"),
        ("llama.cpp", home / ".cache" / "llama.cpp"),
    ]
    if sys.platform == "darwin":
        folders.append(
            ("GPT4All", home / "Library" / "Application Support" / "nomic.ai" / "GPT4All")
        )
    elif sys.platform.startswith("win"):
        local = Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local"))
        folders.append(("GPT4All", local / "nomic.ai" / "GPT4All"))
    else:
        data = Path(os.environ.get("XDG_DATA_HOME", home / ".local" / "share"))
        folders.append(("GPT4All", data / "nomic.ai" / "GPT4All"))
    return folders


def discover(extra: list[Path] | tuple[Path, ...] = (), home: Path | None = None) -> list[Found]:
    """GGUF language models (adapters skipped) in the apps' folders and in `extra`;
    unreadable files are skipped, each file once."""
    places = [*app_folders(home), *(("your folder", Path(p)) for p in extra)]
    seen: set[Path] = set()
    found: list[Found] = []
    for app, folder in places:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.gguf")):
            real = path.resolve()
            if real in seen or not path.is_file():
                continue
            seen.add(real)
            try:
                info = read_gguf_info(path)
            except UserError:
                continue
            if not info.is_adapter:
                found.append(Found(path, app, info))
    return found
