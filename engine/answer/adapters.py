"""Runtime LoRA control on a live `llama_cpp.Llama`: switch, rescale or remove an adapter
without reloading the model, through llama.cpp's low-level adapter API."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

import llama_cpp

from engine.types import UserError
from models.lora import check_compatible


class AdapterSet:
    """The LoRA adapters loaded into one `Llama`, at most one active at a time.

    Loaded adapters stay cached per path, so switching back is instant. After every change
    the prompt state is dropped (`Llama.reset()`, KV cache, prompt cache): llama-cpp-python
    would otherwise reuse tokens evaluated under the previous adapter. Not thread-safe;
    call it from the thread that owns the `Llama`. Replaces any adapter the `Llama` was
    built with (`lora_path=`).
    """

    def __init__(self, llama: llama_cpp.Llama, base_path: Path | None = None) -> None:
        self._llama = llama
        self._base = Path(base_path or llama.model_path)
        self._handles: dict[Path, Any] = {}
        self._active: tuple[Path, float] | None = None
        self._closed = False
        # Llama.close() frees the model and every adapter with it. Its ExitStack unwinds
        # last-in first-out, so this callback frees ours first, while the context lives.
        stack = getattr(llama, "_stack", None)
        if stack is not None:
            stack.callback(self.close)

    @property
    def active(self) -> tuple[Path, float] | None:
        """(adapter path, scale) in use, or None for the bare base model."""
        return self._active

    def load(self, path: Path) -> Any:
        """Load an adapter (once per path) after checking it fits the model; returns its handle."""
        self._check_open()
        path = Path(path).resolve()
        if path in self._handles:
            return self._handles[path]
        check_compatible(path, self._base)
        handle = llama_cpp.llama_adapter_lora_init(self._llama.model, os.fsencode(path))
        if not handle:  # NULL: llama.cpp logged why
            raise UserError(f"{path}: llama.cpp could not load this LoRA adapter")
        self._handles[path] = handle
        return handle

    def activate(self, path: Path | None, scale: float = 1.0) -> None:
        """Use adapter `path` at `scale`, or the base model alone when `path` is None."""
        self._check_open()
        target = None if path is None else (Path(path).resolve(), float(scale))
        if target == self._active:
            return  # nothing changes, so the cached prompt state stays valid
        if target is None:
            self._apply(None, 0.0)
        else:
            self._apply(self.load(target[0]), target[1])
        self._active = target

    def close(self) -> None:
        """Detach and free every adapter; the `Llama` keeps working as the base model."""
        if self._closed:
            return
        self._closed = True
        if self._handles:
            self._apply(None, 0.0)
        for handle in self._handles.values():
            llama_cpp.llama_adapter_lora_free(handle)
        self._handles.clear()
        self._active = None

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("AdapterSet is closed")

    def _apply(self, handle: Any, scale: float) -> None:
        """Set the context's adapter list to [handle] (or none), then drop prompt state."""
        if handle is None:
            rc = llama_cpp.llama_set_adapters_lora(self._llama.ctx, None, 0, None)
        else:
            handles = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle)
            scales = (ctypes.c_float * 1)(scale)
            rc = llama_cpp.llama_set_adapters_lora(self._llama.ctx, handles, 1, scales)
        if rc != 0:
            raise RuntimeError(f"llama_set_adapters_lora failed ({rc})")
        self._forget_prompt()

    def _forget_prompt(self) -> None:
        llama = self._llama
        llama.reset()  # n_tokens = 0: no prefix of the old evaluation is reused
        memory = llama_cpp.llama_get_memory(llama.ctx)
        if memory:  # reset() clears the KV cache itself only for recurrent models
            llama_cpp.llama_memory_clear(memory, True)
        cache = getattr(llama, "cache", None)
        if cache is not None:  # a prompt-state cache keyed by tokens alone is now stale
            state = getattr(cache, "cache_state", None)  # LlamaRAMCache's dict
            if state is not None:
                state.clear()
            else:
                llama.set_cache(None)
