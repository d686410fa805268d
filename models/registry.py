"""Local models: GGUF metadata, and the models and adapters in the models folder.

GGUF metadata comes from `models.gguf_header`, which reads the header only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gguf import GGUFReader, LlamaFileType

from models.bundled import (
    EMBEDDER_DIRNAME,
    EMBEDDER_MAX_TOKENS,
    LLM_FILENAME,
    LLM_STAMP_SUFFIX,
)
from models.errors import UserError
from models.gguf_header import read_header

ADAPTERS_DIR = "adapters"  # adapters that `train` and PEFT imports write, under the models dir


@dataclass
class GGUFInfo:
    """What a GGUF file says about itself; `general_type` is "model" or "adapter"."""

    path: Path
    name: str
    architecture: str
    general_type: str
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    chat_template: str | None
    file_type: int | None
    quantization: str | None  # e.g. "Q4_K_M", from general.file_type
    size_bytes: int
    adapter_type: str | None = None  # "lora" for LoRA adapters
    lora_alpha: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)  # every short KV

    @property
    def is_adapter(self) -> bool:
        return self.general_type == "adapter"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able fields; the full template becomes `has_chat_template`."""
        data = asdict(self)
        data["path"] = str(self.path)
        data.pop("metadata")
        data["has_chat_template"] = data.pop("chat_template") is not None
        return data


def read_gguf_info(path: Path) -> GGUFInfo:
    """Read a GGUF file's metadata; raise UserError if it is missing or not GGUF."""
    path = Path(path)
    kv = read_gguf_metadata(path)
    arch = str(kv.get("general.architecture", "unknown"))
    file_type = _as_int(kv.get("general.file_type"))
    alpha = kv.get("adapter.lora.alpha")
    return GGUFInfo(
        path=path,
        name=str(kv.get("general.name") or path.stem),
        architecture=arch,
        general_type=str(kv.get("general.type", "model")),
        context_length=_as_int(kv.get(f"{arch}.context_length")),
        embedding_length=_as_int(kv.get(f"{arch}.embedding_length")),
        block_count=_as_int(kv.get(f"{arch}.block_count")),
        chat_template=_as_str(kv.get("tokenizer.chat_template")),
        file_type=file_type,
        quantization=_quantization(file_type),
        size_bytes=path.stat().st_size,
        adapter_type=_as_str(kv.get("adapter.type")),
        lora_alpha=float(alpha) if isinstance(alpha, (int, float)) else None,
        metadata=kv,
    )


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """Every key-value pair in a GGUF header; arrays over 64 items become None."""
    return read_header(path).fields


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _quantization(file_type: int | None) -> str | None:
    if file_type is None:
        return None
    try:
        return LlamaFileType(file_type).name.removeprefix("MOSTLY_")
    except ValueError:
        return f"type {file_type}"


@dataclass
class ModelEntry:
    """One row of `main.py models`: an LLM, a LoRA adapter or an embedding model."""

    kind: str  # "llm" | "adapter" | "embedder"
    name: str
    path: Path
    size_bytes: int = 0
    bundled: bool = False
    ready: bool = True  # False: bundled but not materialised yet (done on first use)
    info: GGUFInfo | None = None
    details: dict[str, Any] = field(default_factory=dict)  # embedders: dim, max_tokens
    error: str | None = None  # unreadable file: shown, not raised

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "bundled": self.bundled,
            "ready": self.ready,
            "error": self.error,
        }
        if self.info is not None:
            data["gguf"] = self.info.to_json()
        data.update(self.details)
        return data

    def summary(self) -> str:
        """One line for `main.py models`: kind, name, facts, size, state, path."""
        facts: list[str] = []
        if self.info is not None:
            facts.append(self.info.architecture)
            facts += [self.info.quantization] if self.info.quantization else []
            if self.info.context_length:
                facts.append(f"ctx {self.info.context_length}")
            if self.info.is_adapter:
                facts.append(f"{self.info.adapter_type or '?'} alpha {self.info.lora_alpha}")
            elif self.info.chat_template is None:
                facts.append("no chat template")
        if self.details.get("dim"):
            facts.append(f"{self.details['dim']}-d, {self.details['max_tokens']} tokens")
        state = "bundled" if self.bundled else "local"
        if self.error:
            state = f"error: {self.error}"
        elif not self.ready:
            state += ", set up on first use"
        size = f"{self.size_bytes / 1e6:.0f} MB" if self.size_bytes else "-"
        return f"{self.kind:<8} {self.name:<24} {', '.join(facts) or '-':<40} {size:>7}  {state}"


def adapters_dir(models_dir: Path) -> Path:
    return Path(models_dir) / ADAPTERS_DIR


def list_models(models_dir: Path, extra: list[Path] | tuple[Path, ...] = ()) -> list[ModelEntry]:
    """The bundled models (even before first use), every *.gguf and embedder folder
    in `models_dir`, and `extra` GGUF files the user named elsewhere."""
    models_dir = Path(models_dir)
    files = sorted(models_dir.glob("*.gguf")) if models_dir.is_dir() else []
    files += sorted(adapters_dir(models_dir).glob("*.gguf"))
    files += [Path(p) for p in extra if Path(p) not in files]
    entries = [_gguf_entry(p) for p in files if not p.name.startswith(".")]
    bundled_llm = models_dir / LLM_FILENAME
    if not any(e.path == bundled_llm for e in entries):
        entries.insert(0, _pending_llm(bundled_llm))
    entries += _embedder_entries(models_dir)
    order = {"llm": 0, "adapter": 1, "embedder": 2}
    entries.sort(key=lambda e: (order[e.kind], not e.bundled, e.name.lower()))
    return entries


def _gguf_entry(path: Path) -> ModelEntry:
    bundled = path.name == LLM_FILENAME
    try:
        info = read_gguf_info(path)
    except UserError as exc:
        size = path.stat().st_size if path.is_file() else 0
        kind = "adapter" if path.parent.name == ADAPTERS_DIR else "llm"
        return ModelEntry(kind, path.name, path, size, bundled, ready=False, error=str(exc))
    if not info.is_adapter:
        ready = not bundled or _stamp_present(path)
        return ModelEntry("llm", info.name, path, info.size_bytes, bundled, ready, info)
    # An adapter is named by its file: the name inside is often the converter's default
    # (every adapter `train` made said "adapter"). Its data is checked too: it is small.
    error = adapter_damage(path)
    return ModelEntry("adapter", path.stem, path, info.size_bytes, bundled, error is None, info,
                      error=error)  # fmt: skip


def adapter_damage(path: Path) -> str | None:
    """What is wrong with a GGUF adapter's tensor data (cut short, say), or None; the
    header alone looks whole when a copy or a download stopped halfway. 0.01 s for a
    2 MB adapter."""
    size = path.stat().st_size
    try:
        tensors = GGUFReader(path).tensors
        end = max((int(t.data_offset) + int(t.n_bytes) for t in tensors), default=0)
    except (ValueError, IndexError, KeyError, OSError) as exc:
        return f"{path}: damaged GGUF adapter ({exc}); train, convert or download it again"
    if end > size:
        return f"{path}: cut short ({size} of its {end} bytes); train, convert or download it again"
    return None


def _stamp_present(path: Path) -> bool:
    return path.with_name(path.name + LLM_STAMP_SUFFIX).is_file()


def _pending_llm(path: Path) -> ModelEntry:
    return ModelEntry("llm", "Gemma 3 270m", path, 0, bundled=True, ready=False)


def _embedder_entries(models_dir: Path) -> list[ModelEntry]:
    folders = [p.parent for p in models_dir.glob("*/model.onnx")] if models_dir.is_dir() else []
    folders = [f for f in folders if not f.name.startswith(".")]
    bundled = models_dir / EMBEDDER_DIRNAME
    entries = [_embedder_entry(f, f == bundled) for f in sorted(folders)]
    if bundled not in folders:
        entries.append(ModelEntry("embedder", EMBEDDER_DIRNAME, bundled, bundled=True, ready=False))
    return entries


def _embedder_entry(folder: Path, bundled: bool) -> ModelEntry:
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    details: dict[str, Any] = {"dim": None, "max_tokens": None}
    error = None
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        tok = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        details["dim"] = config.get("hidden_size")
        details["max_tokens"] = tok.get("model_max_length", EMBEDDER_MAX_TOKENS)
    except (OSError, ValueError) as exc:
        error = f"{folder}: incomplete embedding model folder ({exc})"
    return ModelEntry(
        "embedder", folder.name, folder, size, bundled, error is None, details=details, error=error
    )
