"""The grounding policy (engine/answer/grounding.py): the shipped adapter's numbers come
from its card, and the engine's status says which model answers and in what mode."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

import models.bundled as bundled
from engine.answer import grounding
from engine.answer.prompting import DONT_KNOW
from engine.core import Engine
from engine.settings import Settings
from engine.types import SearchResult, UserError


def _source(score: float) -> SearchResult:
    return SearchResult(
        rank=1, document="kettle.md", path="/kettle.md", page=None, section=None,
        score=score, text="Descale it monthly.",
    )  # fmt: skip


@pytest.fixture
def card_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped adapter and its card copied aside and made the shipped ones: edit the
    returned card to change what the engine uses."""
    folder = tmp_path / "grounding"
    folder.mkdir()
    adapter = folder / bundled.GROUNDING_ADAPTER.name
    shutil.copy(bundled.GROUNDING_ADAPTER, adapter)
    shutil.copy(grounding.card_path(bundled.GROUNDING_ADAPTER), grounding.card_path(adapter))
    monkeypatch.setattr(bundled, "GROUNDING_ADAPTER", adapter)
    return grounding.card_path(adapter)


def _edit(card: Path, **app: object) -> None:
    data = json.loads(card.read_text(encoding="utf-8"))
    data["app"].update(app)
    card.write_text(json.dumps(data), encoding="utf-8")


def test_the_shipped_card_holds_a_two_level_gate() -> None:
    card = grounding.read_card()
    assert 0.0 < card.refusal < card.refusal_sure < 1.0 and 0.0 < card.refusal_close < 1.0
    assert card.scale > 0 and card.restart.strip()
    low = grounding.refusal_gate(card, None, [_source(card.refusal_close - 0.01)])
    high = grounding.refusal_gate(card, None, [_source(card.refusal_close)])
    assert (low.threshold, high.threshold) == (card.refusal, card.refusal_sure)
    assert grounding.refusal_gate(card, 0.33, [_source(0.99)]).threshold == 0.33  # a reader's
    assert low.sentence == DONT_KNOW and low.restart == card.restart


def test_the_gate_follows_the_adapters_card(card_copy: Path, tmp_path: Path) -> None:
    engine = Engine(tmp_path / "data", Settings(reader=False))
    try:
        before = grounding.read_card()
        assert engine.refusal_gate("hybrid") == grounding.refusal_gate(before, None)
        _edit(card_copy, refusal=0.55, refusal_close=0.5, refusal_sure=0.75, scale=0.5)
        gate = engine.refusal_gate("hybrid", [_source(0.4)])
        assert gate is not None and gate.threshold == 0.55  # the card, read again
        assert engine.refusal_gate("hybrid", [_source(0.5)]).threshold == 0.75  # type: ignore[union-attr]
        assert engine.adapter_scale() == 0.5 and engine.status().adapter_scale == 0.5
        engine.grounding.card_override = replace(before, refusal=0.9)  # a scan's own bars win
        assert engine.refusal_gate("hybrid").threshold == 0.9  # type: ignore[union-attr]
    finally:
        engine.close()


def test_a_card_without_the_apps_numbers_is_one_clear_line(card_copy: Path) -> None:
    data = json.loads(card_copy.read_text(encoding="utf-8"))
    del data["app"]["refusal_sure"]
    card_copy.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(UserError, match=r"quire-grounding\.json.*'app'.*reinstall"):
        grounding.read_card()
    card_copy.unlink()
    with pytest.raises(UserError, match=r"quire-grounding\.json.*missing"):
        grounding.read_card()


def test_status_says_which_model_answers_and_the_default_mode(
    tmp_path: Path, llm_path: Path
) -> None:
    engine = Engine(tmp_path / "data", Settings(reader=False))
    try:
        status = engine.status()
        assert status.bundled and status.default_mode == "hybrid"
        assert status.adapter == grounding.LABEL
        other = tmp_path / "another-model.gguf"  # not the bundled model: no adapter of ours
        other.symlink_to(llm_path)
        engine.update_settings(save=False, model_path=str(other))
        status = engine.status()
        assert not status.bundled and status.default_mode == "rag" and status.adapter is None
        mine = tmp_path / "my-style.gguf"
        shutil.copy(bundled.GROUNDING_ADAPTER, mine)
        engine.update_settings(save=False, lora_path=str(mine))
        assert engine.status().default_mode == "hybrid"  # the user's adapter: hybrid again
        assert engine.status().adapter == "my-style"  # named by its file
    finally:
        engine.close()


def test_a_model_server_starts_in_rag_unless_it_is_another_quire(tmp_path: Path) -> None:
    settings = Settings(server_url="http://127.0.0.1:9/v1", server_model="llama-3")
    assert grounding.default_mode(settings, bundled.GROUNDING_ADAPTER) == "rag"
    settings.server_model = "quire:default"  # its own grounding adapter answers
    assert grounding.default_mode(settings, None) == "hybrid"


def test_settings_are_read_once_per_engine_and_changed_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[Path] = []
    load = Settings.load.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        Settings, "load", classmethod(lambda cls, d: loads.append(d) or load(cls, d))
    )
    engine = Engine(tmp_path / "data")
    try:
        engine.set_collection("work")
        engine.set_watched_folders([tmp_path / "notes"])
        engine.update_settings(save=False, top_k=7)  # a command's one-off choice
        assert loads == [tmp_path / "data"]
        saved = load(Settings, tmp_path / "data")
        assert saved.collection == "work" and saved.watched_folders == [str(tmp_path / "notes")]
        assert saved.top_k == Settings().top_k and engine.settings.top_k == 7
        engine.set_watched_folders([])
        assert load(Settings, tmp_path / "data").watched_folders is None
    finally:
        engine.close()


def test_a_reader_s_refusal_model_asks_surer_odds_under_a_better_quote(tmp_path: Path) -> None:
    model = {"odds": 10.0, "quote": -8.0, "best": 0.0, "bias": -1.0}
    # refuse where 10 * odds - 8 * quote - 1 >= 0: odds >= (1 + 8 * quote) / 10
    assert grounding.model_threshold(model, 0.5, 0.9) == pytest.approx(0.5)
    assert grounding.model_threshold(model, 0.6, 0.9) == pytest.approx(0.58)
    assert grounding.model_threshold(model, 2.0, 0.9) == 1.01  # never past "never refuse"
    assert grounding.model_threshold({**model, "odds": -1.0}, 0.5, 0.9) == 1.01
    engine = Engine(tmp_path / "data")
    try:
        reader = engine.reader
        assert reader is not None
        assert reader.card["refusal_model"]["odds"] > 0  # the shipped reader has one
        reader.card.pop("refusal_model")
        reader.card["grounding_refusal"] = 0.35
        plain = engine.refusal_gate("hybrid", [_source(0.9)], 0.5)
        assert plain is not None and plain.threshold == 0.35  # the one bar, without a model
        reader.card["refusal_model"] = model
        low = engine.refusal_gate("hybrid", [_source(0.9)], 0.5)
        high = engine.refusal_gate("hybrid", [_source(0.9)], 0.6)
        assert low is not None and high is not None
        assert (low.threshold, high.threshold) == pytest.approx((0.5, 0.58))
        assert low.sentence == DONT_KNOW
        assert engine.refusal_gate("rag", [_source(0.9)], 0.5) is None  # no adapter, no gate
    finally:
        engine.close()
