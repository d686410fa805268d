"""Quire's grounding adapter as answers use it: which adapter answers (the user's, else the
shipped one with the bundled model), at what scale, under what name, the refusal gate it
answers under, and the default mode that follows from it.

The numbers travel with the adapter they were tuned for: its card
(`models/grounding/quire-grounding.json`, section "app") holds the scale and the refusal
thresholds chosen on held-out questions; docs/evaluation.md has the figures behind them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.answer import modes
from engine.answer.generation import RefusalGate
from engine.answer.prompting import DONT_KNOW
from engine.answer.remote import QUIRE_PREFIX, Server
from engine.settings import Settings
from engine.types import SearchResult, UserError
from models import bundled

LABEL = "grounded answers"  # how the shipped adapter is named to the user
CARD_SECTION = "app"  # the card's part that says how the app uses the adapter


@dataclass(frozen=True)
class Card:
    """How the app uses the grounding adapter, as the adapter's card says."""

    scale: float  # its strength (the merged model folds it in at this)
    refusal: float  # it refuses when its first-token odds of DONT_KNOW reach this...
    refusal_close: float  # ...unless the best source's cosine similarity is at least this,
    refusal_sure: float  # where the bar is this instead
    restart: str  # its first line starting again: the answer repeats, cut there


def card_path(adapter: Path) -> Path:
    return adapter.with_suffix(".json")


def read_card(adapter: Path | None = None) -> Card:
    """The card of the shipped adapter (or `adapter`); read again only when it changes."""
    path = card_path(adapter or bundled.GROUNDING_ADAPTER)
    try:
        st = path.stat()
    except OSError as exc:
        raise UserError(
            f"{path}: the grounding adapter's card is missing ({exc.strerror}); reinstall Quire"
        ) from exc
    return _parse_card(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _parse_card(path: Path, _mtime_ns: int, _size: int) -> Card:
    try:
        app = json.loads(path.read_text(encoding="utf-8"))[CARD_SECTION]
        return Card(
            scale=float(app["scale"]),
            refusal=float(app["refusal"]),
            refusal_close=float(app["refusal_close"]),
            refusal_sure=float(app["refusal_sure"]),
            restart=str(app["restart"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{path}: the grounding adapter's card has no usable '{CARD_SECTION}' section "
            f"({type(exc).__name__}: {exc}); reinstall Quire"
        ) from exc


def shipped_adapter(model_path: Path) -> Path | None:
    """The shipped grounding adapter when `model_path` is the bundled LLM and it ships."""
    adapter = bundled.GROUNDING_ADAPTER
    if Path(model_path).name == bundled.LLM_FILENAME and adapter.is_file():
        return adapter
    return None


def adapter_path(settings: Settings, model_path: Path) -> Path | None:
    """The adapter for lora/hybrid: the user's own, else the shipped one (bundled model)."""
    if settings.lora_path:
        return Path(settings.lora_path).expanduser()
    return shipped_adapter(model_path)


def is_shipped(adapter: Path | None) -> bool:
    return adapter is not None and adapter == bundled.GROUNDING_ADAPTER


def scale(settings: Settings, card: Card) -> float:
    """The user's scale for their own adapter; the shipped adapter's is its card's."""
    return settings.lora_scale if settings.lora_path else card.scale


def label(adapter: Path | None) -> str | None:
    """How the adapter in use is named to the user."""
    if adapter is None:
        return None
    return LABEL if is_shipped(adapter) else adapter.stem


def refusal_gate(
    card: Card, chosen: float | None, sources: Sequence[SearchResult] = ()
) -> RefusalGate:
    """Answer or refuse at the first token: at `chosen` (a reader's card names the bar it
    was chosen with), else at the adapter card's bar, raised when the best of `sources` is
    very close to the question (its hesitation is then more often a false refusal)."""
    if chosen is not None:
        return RefusalGate(DONT_KNOW, float(chosen), card.restart)
    close = max((s.score for s in sources), default=0.0) >= card.refusal_close
    return RefusalGate(DONT_KNOW, card.refusal_sure if close else card.refusal, card.restart)


def default_mode(settings: Settings, adapter: Path | None) -> str:
    """The retrieving mode, with the adapter when there is one; with a model server, with
    it only when that server is another Quire (its own grounding adapter answers)."""
    if settings.server_url:
        return modes.preferred((settings.server_model or "").startswith(QUIRE_PREFIX))
    return modes.preferred(adapter is not None)


def available_modes(server: Server | None, adapter: Path | None) -> dict[str, str | None]:
    """Each mode, with the reason it cannot run (None when it can): a model server runs
    no adapter (another Quire always retrieves); without an adapter, lora and hybrid wait."""
    if server is not None and (server.model or "").startswith(QUIRE_PREFIX):
        always = f"{server.model} always answers from its documents"
        return {m.name: None if m.retrieves else always for m in modes.MODES.values()}
    if server is not None:
        hint: str | None = f"adapters need a local GGUF model (answering with {server.host})"
    else:
        hint = None if adapter else "load a LoRA adapter first (Settings or --lora)"
    return {m.name: hint if m.adapter else None for m in modes.MODES.values()}
