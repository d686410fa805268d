"""Issue 9: the bundled grounding adapter is the default, off-topic questions get no
sources and no model call, and near-copies of a passage take one place."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from engine.answer.echo import ECHOED
from engine.answer.events import AskOptions
from engine.answer.generation import RefusalGate
from engine.answer.grounding import LABEL, model_threshold, read_card
from engine.answer.prompting import DONT_KNOW
from engine.core import Engine
from engine.eval.scoring import strip_echo
from engine.settings import Settings
from models.bundled import GROUNDING_ADAPTER
from models.lora import check_compatible

pytestmark = pytest.mark.slow
KETTLE = (
    "# Kettle\n\nDescale the kettle monthly with white vinegar: fill it half way, boil, "
    "leave it for an hour, then rinse twice with clean water.\n"
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    root = tmp_path_factory.mktemp("grounding")
    (root / "kettle.md").write_text(KETTLE, "utf-8")
    (root / "kettle-copy.md").write_text(KETTLE, "utf-8")  # the same text twice
    (root / "garden.md").write_text("# Garden\n\nWater the tomatoes at dawn.\n", "utf-8")
    engine = Engine(root / "data", Settings())
    engine.ingest([root])
    yield engine
    engine.close()


def test_the_shipped_adapter_fits_the_bundled_model(llm_path: Path) -> None:
    info = check_compatible(GROUNDING_ADAPTER, llm_path)
    assert info.architecture == "gemma3" and info.rank == 16
    assert GROUNDING_ADAPTER.stat().st_size < 10_000_000  # a few MB


def test_bundled_model_answers_in_hybrid_with_the_grounding_adapter(
    engine: Engine, tmp_path: Path, llm_path: Path
) -> None:
    assert engine.adapter_path() == GROUNDING_ADAPTER
    assert engine.default_mode() == "hybrid" and engine.adapter_label() == LABEL
    mine = tmp_path / "mine.gguf"
    mine.write_bytes(GROUNDING_ADAPTER.read_bytes())
    engine.set_adapter(mine)
    assert engine.adapter_path() == mine and engine.adapter_label() == "mine"
    engine.set_adapter(None)  # back to the default
    assert engine.adapter_path() == GROUNDING_ADAPTER
    engine.settings.model_path = str(tmp_path / "other.gguf")  # another model: no default
    assert engine.adapter_path() is None and engine.default_mode() == "rag"
    engine.settings.model_path = None


def test_off_topic_question_gets_no_sources_and_no_model_call(engine: Engine) -> None:
    answer = engine.answer("What is the boiling point of mercury?", "hybrid")
    assert answer.no_sources and answer.sources == [] and answer.answer == DONT_KNOW
    assert answer.timings.tokens == 0 and not engine.llms.loaded()  # the model never loaded


def test_near_copies_take_one_place(engine: Engine) -> None:
    sources = engine.sources("How often should I descale the kettle?")
    names = [s.document for s in sources]
    assert len([n for n in names if n.startswith("kettle")]) == 1, names
    assert "garden.md" not in names  # far behind the best: left out of the prompt


def test_grounded_answer_is_short_and_never_echoes_the_prompt(engine: Engine) -> None:
    """What the adapter changed: the base model repeats its instructions and sources."""
    base = engine.answer("How often should I descale the kettle?", "rag", AskOptions(max_tokens=64))
    grounded = engine.answer("How often should I descale the kettle?", "hybrid")
    # The plain base model copies its prompt; the app stops it at the first words.
    assert base.answer == ECHOED and base.timings.tokens < 16, (base.answer, base.timings)
    text, echoed = strip_echo(grounded.answer)
    assert not echoed and "Sources:" not in text and len(text.split()) < 60, text


def test_grounded_answer_cites_its_source(engine: Engine) -> None:
    answer = engine.answer("How often should I descale the kettle?", "hybrid")
    assert "month" in answer.answer.lower() and "[1]" in answer.answer, answer.answer
    assert DONT_KNOW not in answer.answer, answer.answer


def test_the_refusal_gate_decides_at_the_first_token(engine: Engine) -> None:
    """Threshold 0 refuses whatever the question, above 1 never: the gate, not chance."""
    from engine.answer.prompting import build_prompt

    generator = engine.grounding.generator_for("hybrid")
    sources = engine.sources("How often should I descale the kettle?")
    prompt = build_prompt(
        "How often should I descale the kettle?", sources, generator.count_tokens, 2000
    )
    always = RefusalGate(DONT_KNOW, 0.0)
    never = RefusalGate(DONT_KNOW, 1.01)
    refused = "".join(generator.stream(prompt.messages, 48, 0.0, gate=always))
    odds = generator.last_refusal_odds  # what the gate compared with its threshold
    assert odds is not None and 0.0 < odds < 1.0
    answered = "".join(generator.stream(prompt.messages, 48, 0.0, gate=never))
    assert refused.strip() == DONT_KNOW
    assert answered.strip() and "documents do not say" not in answered, answered
    # The answer's own start seen again ends it: here ":" right after "Source [1]".
    cut = RefusalGate(DONT_KNOW, 1.01, restart=":")
    assert "".join(generator.stream(prompt.messages, 48, 0.0, gate=cut)) == "Source [1]"


def test_only_the_grounding_adapter_brings_its_gate(engine: Engine, tmp_path: Path) -> None:
    card = read_card()  # the adapter's card: its own two-level gate and restart
    assert engine.reader is not None  # with the reader: its card's refusal model, one level
    model = engine.reader.card["refusal_model"]
    chosen = model_threshold(model, 0.6, 0.0)  # for the answer's quote score
    assert engine.refusal_gate("hybrid", [], 0.6) == RefusalGate(DONT_KNOW, chosen, card.restart)
    engine.settings.reader = False  # without it: the adapter's own two-level gate
    gate = engine.refusal_gate("hybrid")
    assert gate == RefusalGate(DONT_KNOW, card.refusal, card.restart)
    assert engine.refusal_gate("rag") is None and engine.refusal_gate("base") is None
    # a source very close to the question raises the bar for refusing
    close, sure = card.refusal_close, card.refusal_sure
    assert card.refusal < sure < 1.0
    found = engine.search("How often should I descale the kettle?", 5)[0]
    near, far = replace(found, score=close), replace(found, score=close - 0.01)
    assert engine.refusal_gate("hybrid", [far, near]).threshold == sure  # type: ignore[union-attr]
    assert engine.refusal_gate("hybrid", [far]).threshold == card.refusal  # type: ignore[union-attr]
    mine = tmp_path / "my-style.gguf"  # a user's adapter: no threshold of Quire's applies
    engine.settings.lora_path = str(mine)
    try:
        assert engine.refusal_gate("hybrid") is None and engine.refusal_gate("lora") is None
        assert engine.refusal_gate("hybrid", [near]) is None
    finally:
        engine.settings.lora_path = None
        engine.settings.reader = True


def test_the_same_question_twice_gets_the_same_answer(engine: Engine) -> None:
    """A reused prompt cache re-evaluated only the last token, and the kettle question's
    p("The") went from 0.18 (a fresh evaluation, as after the rag answer's adapter
    switch) to 0.21: the second answer flipped to a refusal."""
    engine.answer("How often should I descale the kettle?", "rag", AskOptions(max_tokens=4))
    first = engine.answer("How often should I descale the kettle?", "hybrid").answer
    second = engine.answer("How often should I descale the kettle?", "hybrid").answer
    assert first == second, (first, second)


def test_the_grounding_adapter_is_given_its_best_source_last(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It reads the source nearest the question best (engine.answer.prompting.build_prompt)."""
    kettle = engine.search("How often should I descale the kettle?", 5)[0]
    garden = replace(kettle, rank=2, document="garden.md", text="Water the tomatoes at dawn.")
    two = [kettle, garden]
    monkeypatch.setattr(engine, "sources", lambda *a, **k: two)
    one_token = AskOptions(max_tokens=1)
    grounded = engine.answer("How often should I descale the kettle?", "hybrid", one_token)
    plain = engine.answer("How often should I descale the kettle?", "rag", one_token)
    assert [s.rank for s in grounded.sources] == [two[1].rank, two[0].rank]
    assert [s.rank for s in plain.sources] == [two[0].rank, two[1].rank]
    assert grounded.prompt[-1]["content"].index("[2] " + two[0].document) > 0
