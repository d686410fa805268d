"""A fast GGUF header reader: metadata and tensor shapes, never the tensor data.

`gguf.GGUFReader` also builds a numpy view of every tokenizer entry and tensor, which
took 18-36 s for the bundled 253 MB Gemma file (262k tokens) on 2 busy cores; this walk
reads the header only and skips long arrays (token lists, scores), in about 0.1 s.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import UserError

MAGIC = b"GGUF"
KEEP_ARRAY = 64  # arrays longer than this (token lists) are skipped, not decoded
# GGUF value types 0-7 and 10-12 are scalars; 8 is a string, 9 an array.
_SCALARS = dict(enumerate("BbHhIif?")) | {10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


@dataclass
class GGUFHeader:
    """A GGUF file's key-value metadata and tensor shapes (ggml ne order)."""

    fields: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]


class _Cursor:
    """Reads little-endian GGUF values from a memory map, skipping what is not wanted."""

    def __init__(self, data: mmap.mmap) -> None:
        self.data, self.pos = data, 0

    def scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        size = self.scalar("Q")
        if self.pos + size > len(self.data):
            raise ValueError("string runs past the end of the file")
        self.pos += size
        return bytes(self.data[self.pos - size : self.pos]).decode("utf-8")

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype != _ARRAY:
            return self.scalar(_SCALARS[vtype])
        etype, count = self.scalar("I"), self.scalar("Q")
        if count <= KEEP_ARRAY:
            return [self.value(etype) for _ in range(count)]
        if etype in _SCALARS:
            self.pos += count * struct.calcsize(_SCALARS[etype])
        elif etype == _STRING:  # the vocabulary: walk the lengths only
            for _ in range(count):
                self.pos += 8 + self.scalar("Q")
        else:
            raise ValueError(f"long array of value type {etype} is not supported")
        if self.pos > len(self.data):
            raise ValueError("array runs past the end of the file")
        return None


def read_header(path: Path, tensors: bool = False) -> GGUFHeader:
    """Parse a GGUF header (and tensor shapes when asked); user-facing errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a GGUF model file")
    if not path.exists():
        raise UserError(f"{path}: file not found")
    try:
        with path.open("rb") as handle:
            _check_start(path, handle.read(24))
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _walk(data, tensors)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (ValueError, struct.error, KeyError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: damaged GGUF header ({exc}); re-download the file") from exc


def _check_start(path: Path, head: bytes) -> None:
    if head[:4] != MAGIC:
        raise UserError(f"{path.name} is not a GGUF file (models and adapters are GGUF files)")
    version = struct.unpack_from("<I", head, 4)[0] if len(head) >= 8 else 0
    if version not in (2, 3):
        raise UserError(f"{path.name} is a GGUF file of version {version}, which Quire cannot read")
    if len(head) < 24:
        raise UserError(f"{path.name} is cut short: not a complete GGUF file")


def _walk(data: mmap.mmap, tensors: bool) -> GGUFHeader:
    cur = _Cursor(data)
    cur.pos = 8  # magic, version
    n_tensors, n_fields = cur.scalar("Q"), cur.scalar("Q")
    fields = {}
    for _ in range(n_fields):
        key = cur.string()
        fields[key] = cur.value(cur.scalar("I"))
    shapes: dict[str, tuple[int, ...]] = {}
    for _ in range(n_tensors if tensors else 0):
        name = cur.string()
        shapes[name] = tuple(cur.scalar("Q") for _ in range(cur.scalar("I")))
        cur.pos += 12  # ggml type (u32), data offset (u64)
    return GGUFHeader(fields, shapes)
