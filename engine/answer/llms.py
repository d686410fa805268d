"""The GGUF models one engine has loaded: the model in use, and, for Quire's grounding
adapter, a copy of the bundled model with the adapter folded in (`models.merge`), which
answers at the base model's speed. Owned by the engine's worker thread, like the models."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from engine.answer.generation import Generator
from engine.types import UserError

log = logging.getLogger(__name__)

#: What a model is loaded with: (GGUF, context size as asked, threads or None).
Key = tuple[Path, int, int | None]


class Llms:
    """At most one base model and one merged copy, each reloaded when its key changes."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self.base: Generator | None = None
        self.grounded: Generator | None = None  # the bundled model + grounding adapter
        self.last: Generator | None = None  # the one that gave the last answer
        self.merge = True  # False: the grounding adapter runs at runtime (benchmarks)
        self.merge_failed: str | None = None  # why the merged copy could not be made
        self.on_merge: Callable[[int, int], None] | None = None  # (tensors done, total)
        self._keys: dict[str, tuple[object, ...]] = {}  # what each was loaded with

    def loaded(self) -> bool:
        return self.base is not None or self.grounded is not None

    def base_model(self, key: Key) -> Generator:
        """The model `key` names, loaded (or reloaded after a settings change)."""
        if self.base is None or self._keys.get("base") != key:
            self._drop("base")
            self.base = Generator(*key)
            self._keys["base"] = key
        return self.base

    def grounded_model(self, key: Key, scale: float) -> Generator | None:
        """The bundled model with the grounding adapter merged in at `scale`, built on first
        use (about half a minute, once); None when merging is off or failed: the caller then
        applies the adapter at runtime, the same answers, only slower."""
        if not self.merge or self.merge_failed:
            return None
        if self.grounded is None or self._keys.get("grounded") != (*key, scale):
            from models.bundled import grounded_llm

            self._drop("grounded")
            try:
                merged = grounded_llm(self.models_dir, scale, self.on_merge)
                self.grounded = Generator(merged, *key[1:])
            except (UserError, OSError, ValueError) as exc:  # a full disk, a damaged file
                log.warning("grounding adapter not merged, applied at runtime: %s", exc)
                self.merge_failed = str(exc)
                return None
            self._keys["grounded"] = (*key, scale)
        return self.grounded

    def drop_grounded(self) -> None:
        """Free the merged copy (another model or the user's adapter is in use); a later
        grounded answer may try merging again."""
        self._drop("grounded")
        self.merge_failed = None

    def close(self) -> None:
        self._drop("base")
        self._drop("grounded")

    def _drop(self, which: str) -> None:
        generator = getattr(self, which)
        setattr(self, which, None)  # never left holding a closed model, even if loading fails
        self._keys.pop(which, None)
        if generator is not None:
            if self.last is generator:
                self.last = None
            generator.close()
