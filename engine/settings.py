"""User settings, saved as JSON in the data dir and shared by the CLI and the GUI."""

from __future__ import annotations

import json
import logging
import math
import os
import reprlib
import types
import typing
from dataclasses import MISSING, Field, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from engine.paths import ensure_data_dir, private_opener

SETTINGS_FILE = "settings.json"
MAX_BYTES = 1 << 20  # a settings file is a few hundred bytes; past this it is not one
# Numbers outside these (inclusive) bounds break an answer or a search; a field of
# Settings not named here is checked against its type alone.
LIMITS: dict[str, tuple[float | None, float | None]] = {
    "threads": (1, 1024),
    "context_size": (256, 1 << 20),
    "temperature": (0, None),
    "max_tokens": (1, 1 << 20),
    "top_k": (1, 4096),
    "min_score": (-1, 1),
    "server_timeout": (0.1, None),
}
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
    # A model server answers instead of the local GGUF (engine/answer/remote.py); None: local.
    # Its API key is not kept here but in `server_key` beside this file (mode 0600).
    server_url: str | None = None
    server_model: str | None = None  # None: the first model the server lists
    server_timeout: float = 120.0  # seconds to wait for the server's next piece
    # A file larger than this many MB (of text, for a PDF) is reported, not indexed: a
    # 200 MB text file once read for minutes at 1.2 GB before its first passage.
    max_file_mb: float = 50.0

    @classmethod
    def load(cls, data_dir: Path) -> Settings:
        """Read settings; unknown keys are ignored. A field whose value does not fit its
        type (or range) gets its default, with a warning naming it. A file that cannot be
        parsed is moved aside to `settings.json.bad` with a warning (not overwritten), and
        defaults are used."""
        path = data_dir / SETTINGS_FILE
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_BYTES + 1)
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            log.warning("%s: cannot read the settings (%s); using the defaults", path, exc)
            return cls()
        if len(data) > MAX_BYTES:
            _set_aside(path, f"over {MAX_BYTES // 1024} KB, not a settings file")
            return cls()
        try:
            raw = json.loads(data.decode("utf-8-sig"))
        except ValueError as exc:  # JSON, or UTF-8
            _set_aside(path, f"not valid JSON ({exc})")
            return cls()
        except RecursionError:
            _set_aside(path, "not valid JSON (nested too deeply)")
            return cls()
        if not isinstance(raw, dict):
            _set_aside(path, f"expected a JSON object, found {type(raw).__name__}")
            return cls()
        hints = typing.get_type_hints(cls)
        values = {}
        for f in fields(cls):
            if f.name in raw:
                values[f.name] = _checked(path, f, hints[f.name], raw[f.name])
        return cls(**values)

    def save(self, data_dir: Path) -> None:
        """Write atomically so a crash never leaves half a settings file."""
        tmp = ensure_data_dir(data_dir) / (SETTINGS_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8", opener=private_opener) as out:
            out.write(json.dumps(asdict(self), indent=2))
        os.replace(tmp, data_dir / SETTINGS_FILE)


def _checked(path: Path, f: Field[Any], hint: Any, value: Any) -> Any:
    """`value` as field `f` takes it (an int where a float is wanted becomes a float), or
    the field's default with a warning when it is of the wrong type or out of range."""
    problem = _type_problem(value, hint) or _range_problem(value, LIMITS.get(f.name))
    if problem is None:
        whole = isinstance(value, int) and not isinstance(value, bool)
        return float(value) if whole and _plain(hint) is float else value
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    log.warning(
        "%s: %s %s, not %s; using the default (%r)",
        path, f.name, problem, reprlib.repr(value), default,
    )  # fmt: skip
    return default


def _type_problem(value: Any, hint: Any) -> str | None:
    """None when `value` (parsed JSON) fits the type `hint`; else what it must be."""
    return None if _fits(value, hint) else f"must be {_describe(hint)}"


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if hint is str:  # a lone surrogate (JSON "\ud800") is no text a path or a prompt takes
        return _is_text(value)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(hint)
        return isinstance(value, dict) and all(
            _fits(k, key) and _fits(v, item) for k, v in value.items()
        )
    raise TypeError(f"Settings cannot check a field of type {hint!r}")  # a bug: add it here


def _is_text(value: Any) -> bool:
    if not isinstance(value, str) or "\x00" in value:  # no path or prompt holds a NUL
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _describe(hint: Any) -> str:
    """The type in words: "a whole number or null", "a list of text"."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if origin is list:
        return f"a list of {_describe(typing.get_args(hint)[0]).removeprefix('a ')}"
    if origin is dict:
        return "an object"
    words = {type(None): "null", bool: "true or false", int: "a whole number",
             float: "a number", str: "text"}  # fmt: skip
    return words.get(hint, getattr(hint, "__name__", str(hint)))


def _plain(hint: Any) -> Any:
    """`float` for `float` and `float | None`; the hint itself otherwise."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 else hint


def _range_problem(value: Any, limits: tuple[float | None, float | None] | None) -> str | None:
    if limits is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    low, high = limits
    if low is not None and high is not None and not low <= value <= high:
        return f"must be between {low} and {high}"
    if low is not None and value < low:
        return f"must be at least {low}"
    if high is not None and value > high:
        return f"must be at most {high}"
    return None


def _set_aside(path: Path, why: str) -> None:
    """Keep a broken settings file as `<name>.bad` for the user, and say so."""
    bad = path.with_name(path.name + ".bad")
    try:
        os.replace(path, bad)
    except OSError as exc:
        log.warning("%s: %s; using the defaults (could not move it aside: %s)", path, why, exc)
        return
    log.warning("%s: %s; kept it as %s and using the defaults", path, why, bad)
