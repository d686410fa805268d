"""Local models: GGUF metadata, and the models and adapters in the models folder.

GGUF metadata is read by walking the key-value header directly. `gguf.GGUFReader`
also builds a numpy view of every tokenizer entry and tensor, which took 25 s for the
bundled 253 MB Gemma file (262k tokens) on 2 busy cores; this walk reads the header
only and skips large arrays.
"""

from __future__ import annotations

import json
import mmap
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gguf import GGUF_MAGIC, GGUFValueType, LlamaFileType

from engine.types import UserError
from models.bundled import (
    EMBEDDER_DIRNAME,
    EMBEDDER_MAX_TOKENS,
    LLM_FILENAME,
    LLM_STAMP_SUFFIX,
)

_MAGIC = struct.pack("<I", GGUF_MAGIC)  # b"GGUF"
_SCALAR = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
_KEEP_ARRAY = 64  # arrays longer than this (token lists) are skipped, not decoded


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
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(24)
            _check_header(path, head)
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return _parse_kv(path, mm)
    except FileNotFoundError as exc:
        raise UserError(f"{path}: model file not found") from exc
    except IsADirectoryError as exc:
        raise UserError(f"{path}: is a folder, not a GGUF model file") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from exc


def _check_header(path: Path, head: bytes) -> None:
    if head[:4] != _MAGIC:
        raise UserError(
            f"{path}: not a GGUF model file (starts with {head[:4]!r}, expected b'GGUF')"
        )
    version = struct.unpack_from("<I", head, 4)[0] if len(head) >= 8 else 0
    if version not in (2, 3):
        raise UserError(f"{path}: unsupported GGUF version {version} (expected 2 or 3)")
    if len(head) < 24:
        raise UserError(f"{path}: not a GGUF model file (truncated header)")


def _parse_kv(path: Path, buf: mmap.mmap) -> dict[str, Any]:
    kv_count = struct.unpack_from("<Q", buf, 16)[0]
    offset = 24
    kv: dict[str, Any] = {}
    try:
        for _ in range(kv_count):
            key, offset = _read_str(buf, offset)
            vtype = struct.unpack_from("<I", buf, offset)[0]
            value, offset = _read_value(buf, offset + 4, GGUFValueType(vtype))
            kv[key] = value
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: damaged GGUF header ({exc}); re-download the file") from exc
    return kv


def _read_str(buf: mmap.mmap, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<Q", buf, offset)
    start = offset + 8
    if start + length > len(buf):
        raise ValueError("string runs past the end of the file")
    return buf[start : start + length].decode("utf-8"), start + length


def _read_value(buf: mmap.mmap, offset: int, vtype: GGUFValueType) -> tuple[Any, int]:
    if vtype == GGUFValueType.STRING:
        return _read_str(buf, offset)
    if vtype == GGUFValueType.ARRAY:
        return _read_array(buf, offset)
    fmt = _SCALAR[vtype]
    return struct.unpack_from(fmt, buf, offset)[0], offset + struct.calcsize(fmt)


def _read_array(buf: mmap.mmap, offset: int) -> tuple[list[Any] | None, int]:
    itype, count = struct.unpack_from("<IQ", buf, offset)
    offset += 12
    item_type = GGUFValueType(itype)
    if count > _KEEP_ARRAY:
        return None, _skip_array(buf, offset, item_type, count)
    items = []
    for _ in range(count):
        item, offset = _read_value(buf, offset, item_type)
        items.append(item)
    return items, offset


def _skip_array(buf: mmap.mmap, offset: int, item_type: GGUFValueType, count: int) -> int:
    if item_type in _SCALAR:
        end = offset + count * struct.calcsize(_SCALAR[item_type])
        if end > len(buf):
            raise ValueError("array runs past the end of the file")
        return end
    if item_type != GGUFValueType.STRING:
        raise ValueError(f"long array of {item_type.name} is not supported")
    unpack = struct.Struct("<Q").unpack_from
    for _ in range(count):
        offset += 8 + unpack(buf, offset)[0]
    if offset > len(buf):
        raise ValueError("array runs past the end of the file")
    return offset


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


def list_models(models_dir: Path, extra: list[Path] | tuple[Path, ...] = ()) -> list[ModelEntry]:
    """The bundled models (even before first use), every *.gguf and embedder folder
    in `models_dir`, and `extra` GGUF files the user named elsewhere."""
    models_dir = Path(models_dir)
    files = sorted(models_dir.glob("*.gguf")) if models_dir.is_dir() else []
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
        return ModelEntry("llm", path.name, path, size, bundled, error=str(exc))
    kind = "adapter" if info.is_adapter else "llm"
    ready = not bundled or _stamp_present(path)
    return ModelEntry(kind, info.name, path, info.size_bytes, bundled, ready, info)


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
