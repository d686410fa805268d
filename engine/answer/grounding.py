"""Quire's grounding adapter as answers use it: which adapter answers (the user's, else the
shipped one with the bundled model), at what scale, under what name, the refusal gate it
answers under, and the default mode that follows from it.

The numbers travel with the adapter they were tuned for: its card
(`models/grounding/quire-grounding.json`, section "app") holds the scale and the refusal
thresholds chosen on held-out questions; docs/evaluation.md has the figures behind them.

`Grounding` is that policy bound to one engine's settings and models; the functions below
it are the same decisions on plain values.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.answer import modes
from engine.answer.generation import Generator, RefusalGate
from engine.answer.prompting import DONT_KNOW
from engine.answer.remote import QUIRE_PREFIX, RemoteGenerator, Server
from engine.parts import Parts
from engine.settings import Settings
from engine.types import SearchResult, UserError
from models import bundled
from models.lora import AdapterInfo, check_compatible, convert_peft
from models.registry import adapters_dir

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


class Grounding:
    """Which adapter one engine answers with, how, and under which refusal gate."""

    def __init__(self, parts: Parts, settings: Callable[[], Settings]) -> None:
        self.parts, self._settings = parts, settings
        # None: the shipped adapter is used as its card says (a scan choosing new
        # thresholds, model_builds/gate_scan.py, sets its own here)
        self.card_override: Card | None = None

    def card(self) -> Card:
        """How the shipped grounding adapter is used: its card's scale and thresholds."""
        return self.card_override or read_card()

    def adapter_path(self) -> Path | None:
        """The adapter for lora/hybrid: the user's own, else Quire's grounding adapter when
        the model is the bundled one, else None."""
        lora = self._settings().lora_path
        if lora:  # not model_path(): that may assemble the bundled GGUF
            return Path(lora).expanduser()
        return shipped_adapter(self.parts.model_path())

    def uses_grounding(self, mode: str) -> bool:
        """Whether `mode` answers with Quire's own grounding adapter."""
        return modes.mode(mode).adapter and is_shipped(self.adapter_path())

    def uses_user_adapter(self, mode: str) -> bool:
        """Whether `mode` answers with an adapter of the user's own (its loops are cut)."""
        return modes.mode(mode).adapter and not self.uses_grounding(mode)

    def gates(self, mode: str) -> bool:
        """Whether the grounding adapter's own refusal gate decides in `mode` (its model
        answers, not a model server)."""
        return self.uses_grounding(mode) and self.parts.remote is None

    def refusal_gate(
        self, mode: str, sources: Sequence[SearchResult] = (), quote: float | None = None
    ) -> RefusalGate | None:
        """The grounding adapter's answer-or-refuse gate (`refusal_gate`: from the reader
        card's refusal model and the quote's score `quote`, or at the bar that card names,
        else at the adapter card's own); a user's adapter, the modes without one and a
        model server decide nothing."""
        if not self.gates(mode):
            return None
        reader = self.parts.reader
        chosen = reader.card if reader is not None else {}
        return refusal_gate(
            self.card(), chosen.get("grounding_refusal"), sources,
            chosen.get("refusal_model"), quote,
        )  # fmt: skip

    def scale(self) -> float:
        """The user's scale for their own adapter; the grounding adapter's is its card's."""
        settings = self._settings()
        return settings.lora_scale if settings.lora_path else self.card().scale

    def default_mode(self) -> str:
        """Hybrid when an adapter is there, else RAG (`default_mode`)."""
        settings = self._settings()
        return default_mode(settings, None if settings.server_url else self.adapter_path())

    def available_modes(self) -> dict[str, str | None]:
        """Each mode, with the reason it cannot run now (None when it can)."""
        server = self.parts.server()
        return available_modes(server, None if server else self.adapter_path())

    def check_adapter(self, path: Path) -> AdapterInfo:
        """The adapter at `path`, if it fits the model in use (else one UserError naming
        both files)."""
        return check_compatible(path.expanduser(), self.parts.model_path())

    def import_peft(self, folder: Path) -> Path:
        """Convert a PEFT adapter folder for the model in use into the models folder's
        adapters; returns the `<name>.gguf` written."""
        source = folder.expanduser()
        out = adapters_dir(self.parts.models_dir) / f"{source.name}.gguf"
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_peft(source, out, self.parts.model_path())
        return out

    def generator_for(self, mode: str) -> Generator | RemoteGenerator:
        """The model, with the adapter switched on for lora/hybrid and off for base/rag (for
        the grounding adapter, the merged copy when it can be made); or the model server,
        for base/rag, when one is set."""
        needs_adapter = modes.mode(mode).adapter
        remote = self.parts.remote
        if remote is not None:
            if needs_adapter:
                raise UserError(_SERVER_NO_ADAPTER.format(mode=mode, host=remote.server.host))
            return remote
        adapter = self.adapter_path() if needs_adapter else None
        if needs_adapter and adapter is None:
            raise UserError(
                f"mode '{mode}' needs a LoRA adapter: pass --lora FILE or load one in Settings"
            )
        llms, card = self.parts.llms, self.card() if self.uses_grounding(mode) else None
        generator = llms.grounded_model(self.parts.model_key(), card.scale) if card else None
        if generator is not None:
            generator.use_adapter(None)  # the adapter is in its weights
        else:
            generator = self.parts.base_model()
            generator.use_adapter(adapter, self.scale())
        return generator


_SERVER_NO_ADAPTER = (
    "mode '{mode}' needs a LoRA adapter, and adapters need a local GGUF model: "
    "this answer would come from the model server at {host} (disconnect it in Models, "
    "or leave out --server)"
)


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


def is_shipped(adapter: Path | None) -> bool:
    return adapter is not None and adapter == bundled.GROUNDING_ADAPTER


def label(adapter: Path | None) -> str | None:
    """How the adapter in use is named to the user."""
    if adapter is None:
        return None
    return LABEL if is_shipped(adapter) else adapter.stem


def model_threshold(model: dict[str, float], quote: float, best: float) -> float:
    """The odds at which the adapter's refusal stands, given how well the reader found the
    question answered: the reader card's refusal model refuses where
    `odds * w_odds + quote * w_quote + best * w_best + bias >= 0` (a logistic model fitted
    on training questions, its bias chosen on held-out ones), so a quote that scores high
    asks for surer odds before the answer is refused."""
    w = float(model.get("odds", 0.0))
    rest = float(model.get("quote", 0.0)) * quote + float(model.get("best", 0.0)) * best
    if w <= 0:  # not a model that reads the odds: the adapter never refuses by it
        return 1.01
    return min(1.01, max(0.0, -(rest + float(model.get("bias", 0.0))) / w))


def refusal_gate(
    card: Card,
    chosen: float | None,
    sources: Sequence[SearchResult] = (),
    model: dict[str, float] | None = None,
    quote: float | None = None,
) -> RefusalGate:
    """Answer or refuse at the first token: from a reader's refusal `model` and the answer's
    quote score `quote`; else at `chosen` (a reader's card names the bar it was chosen
    with); else at the adapter card's bar, raised when the best of `sources` is very close
    to the question (its hesitation is then more often a false refusal)."""
    if model and quote is not None:
        best = max((s.score for s in sources), default=0.0)
        return RefusalGate(DONT_KNOW, model_threshold(model, quote, best), card.restart)
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
