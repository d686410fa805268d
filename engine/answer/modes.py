"""The four answer modes in one table: what each retrieves, needs and is called.

Base is the model alone, RAG adds the passages retrieval finds, LoRA adds the adapter,
Hybrid both. Everything that asks "does this mode search?" or "does it need an adapter?"
reads it here; `parse_modes` is the one check of a mode list (CLI, eval, settings).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.types import UserError


@dataclass(frozen=True)
class Mode:
    name: str  # what the CLI, the settings and saved answers say
    label: str  # what the app shows
    retrieves: bool  # the prompt carries passages from the index
    adapter: bool  # the model answers with its LoRA adapter switched on


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("base", "Base", retrieves=False, adapter=False),
        Mode("rag", "RAG", retrieves=True, adapter=False),
        Mode("lora", "LoRA", retrieves=False, adapter=True),
        Mode("hybrid", "Hybrid", retrieves=True, adapter=True),
    )
}
RETRIEVING = tuple(m.name for m in MODES.values() if m.retrieves)
ADAPTED = tuple(m.name for m in MODES.values() if m.adapter)


def mode(name: str) -> Mode:
    """The mode called `name`; an unknown name is a UserError listing the four."""
    try:
        return MODES[name]
    except KeyError:
        raise UserError(f"unknown mode '{name}'; choose one of {', '.join(MODES)}") from None


def preferred(adapter: bool) -> str:
    """The mode answers start in: the one that retrieves, with the adapter when there is one."""
    return next(m.name for m in MODES.values() if m.retrieves and m.adapter == adapter)


def parse_modes(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """ "base, rag" (or a sequence) -> ("base", "rag"), repeats dropped; unknown or no
    names are a UserError."""
    names = text.split(",") if isinstance(text, str) else list(text)
    modes = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise UserError(
            f"unknown mode(s) {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}"
        )
    return modes
