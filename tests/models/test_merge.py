"""The grounding adapter folded into a copy of the bundled model (models.merge): it must
answer as the adapter applied at runtime does, be built once, rebuilt when damaged, and
never stand between the user and an answer when it cannot be built."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

import models.bundled as bundled
from engine.answer.events import AskOptions
from engine.answer.grounding import read_card
from engine.core import Engine
from engine.settings import Settings
from models.bundled import (
    GROUNDING_ADAPTER,
    LLM_STAMP_SUFFIX,
    MERGED_DIRNAME,
    grounded_llm,
    merge_key,
)
from models.errors import UserError
from models.lora import _write_adapter
from models.merge import merge_lora

pytestmark = pytest.mark.slow
SCALE = read_card().scale  # the shipped adapter card's
KETTLE = (
    "# Kettle\n\nDescale the kettle monthly with white vinegar: fill it half way, boil, "
    "leave it for an hour, then rinse twice with clean water.\n"
)
PROMPT = (
    "<start_of_turn>user\nAnswer from the numbered sources.\n\n[1] kettle.md\nDescale the "
    "kettle monthly with white vinegar.\n\nQuestion: How often should I descale the kettle?"
    "<end_of_turn>\n<start_of_turn>model\n"
)


def _models_of_its_own(root: Path, llm_path: Path) -> Path:
    """A models folder holding the bundled LLM (linked, with its stamp: not re-assembled)."""
    root.mkdir()
    (root / llm_path.name).symlink_to(llm_path)
    stamp = llm_path.with_name(llm_path.name + LLM_STAMP_SUFFIX)
    shutil.copy(stamp, root / stamp.name)
    return root


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory, llm_path: Path) -> Path:
    models = _models_of_its_own(tmp_path_factory.mktemp("m") / "models", llm_path)
    steps: list[tuple[int, int]] = []
    path = grounded_llm(models, SCALE, lambda done, total: steps.append((done, total)))
    assert path.parent == models / MERGED_DIRNAME and steps[-1][0] == steps[-1][1] > 200
    return path


def _first_token_odds(model: Path, adapter: Path | None = None) -> np.ndarray:
    llm = llama_cpp.Llama(
        str(model), n_ctx=512, n_threads=2, seed=0, verbose=False, logits_all=True,
        lora_path=str(adapter) if adapter else None,
    )  # fmt: skip
    try:
        tokens = llm.tokenize(PROMPT.encode(), add_bos=True, special=True)
        llm.eval(tokens)
        logits = np.asarray(llm.scores[len(tokens) - 1], dtype=np.float64)
    finally:
        llm.close()
    odds = np.exp(logits - logits.max())
    return odds / odds.sum()


def test_the_merged_model_answers_as_the_runtime_adapter_does(merged: Path, llm_path: Path):
    runtime = _first_token_odds(llm_path, GROUNDING_ADAPTER)
    folded = _first_token_odds(merged)
    base = _first_token_odds(llm_path)
    assert np.abs(folded - runtime).sum() < 0.1  # measured 0.02: Q8_0 rounding
    assert np.abs(base - runtime).sum() > 0.5  # measured 1.9: the adapter does change it
    assert folded.argmax() == runtime.argmax() != base.argmax()


def test_the_merged_model_is_built_once_and_rebuilt_when_damaged(merged: Path) -> None:
    models, built = merged.parent.parent, merged.stat().st_mtime_ns
    assert grounded_llm(models, SCALE) == merged and merged.stat().st_mtime_ns == built
    size = merged.stat().st_size
    with merged.open("r+b") as fh:
        fh.truncate(size // 2)  # a disk that filled up, a copy cut short
    assert grounded_llm(models, SCALE) == merged and merged.stat().st_size == size
    assert not list(merged.parent.glob(".*.tmp"))  # no temp file left behind


def test_an_adapter_for_other_tensors_is_refused(tmp_path: Path, llm_path: Path) -> None:
    a, b = np.zeros((4, 640), np.float32), np.zeros((640, 4), np.float32)
    adapter = tmp_path / "odd.gguf"
    _write_adapter(adapter, "gemma3", 8.0, {"blk.99.attn_q.weight": (a, b)}, None)
    with pytest.raises(UserError, match=r"blk\.99\.attn_q\.weight"):
        merge_lora(llm_path, adapter, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists() and not list(tmp_path.glob(".*.tmp"))


@pytest.fixture
def engine_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator:
    engines: list[Engine] = []

    def make(models: Path) -> Engine:
        monkeypatch.setenv("QUIRE_MODELS_DIR", str(models))
        (tmp_path / "docs").mkdir(exist_ok=True)
        (tmp_path / "docs" / "kettle.md").write_text(KETTLE, "utf-8")
        engine = Engine(tmp_path / f"data{len(engines)}", Settings())
        engine.ingest([tmp_path / "docs"])
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def test_hybrid_answers_with_the_merged_model_and_rag_with_the_base(
    engine_in, merged: Path, tmp_path: Path
) -> None:
    engine = engine_in(merged.parent.parent)
    llms = engine.llms
    hybrid = engine.answer("How often should I descale the kettle?", "hybrid")
    assert llms.last is llms.grounded and llms.grounded.model_path == merged
    assert llms.grounded.adapters.active is None  # the adapter is in its weights
    assert llms.base is None  # hybrid alone loads one model, not two
    assert "month" in hybrid.answer.lower() and "[1]" in hybrid.answer, hybrid.answer
    engine.answer("How often should I descale the kettle?", "rag", AskOptions(max_tokens=4))
    assert llms.last is llms.base and llms.base.adapters.active is None
    mine = tmp_path / "mine.gguf"  # the user's own adapter: applied at runtime
    shutil.copy(GROUNDING_ADAPTER, mine)
    engine.set_adapter(mine)
    assert llms.grounded is None  # its memory freed
    engine.answer("How often should I descale the kettle?", "hybrid", AskOptions(max_tokens=4))
    assert llms.last is llms.base and llms.base.adapters.active == (mine.resolve(), 1.0)
    engine.set_adapter(None)  # back to the default: the merged copy again, not rebuilt
    engine.answer("How often should I descale the kettle?", "hybrid", AskOptions(max_tokens=4))
    assert llms.last is llms.grounded and llms.grounded.model_path == merged


def test_a_merge_that_cannot_be_written_falls_back_to_the_runtime_adapter(
    engine_in, tmp_path: Path, llm_path: Path
) -> None:
    models = _models_of_its_own(tmp_path / "models", llm_path)
    (models / MERGED_DIRNAME).write_text("a file where the folder should be")
    engine = engine_in(models)
    # The answer as before the reader: given its quote first, the runtime adapter answers
    # from another sentence of the kettle page (the merged model does not).
    engine.settings.reader = False
    answer = engine.answer("How often should I descale the kettle?", "hybrid")
    assert "month" in answer.answer.lower(), answer.answer  # answered all the same
    assert MERGED_DIRNAME in (engine.llms.merge_failed or "")  # why, for the log
    assert engine.llms.last is engine.llms.base and engine.llms.grounded is None
    assert engine.llms.base.adapters.active == (GROUNDING_ADAPTER, SCALE)


def test_the_merge_key_follows_the_adapter_and_its_scale(
    llm_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = merge_key(llm_path, SCALE)
    assert merge_key(llm_path, SCALE / 2) != key
    other = tmp_path / "other.gguf"
    other.write_bytes(GROUNDING_ADAPTER.read_bytes() + b"\0")
    monkeypatch.setattr(bundled, "GROUNDING_ADAPTER", other)
    assert merge_key(llm_path, SCALE) != key


def test_a_model_that_fails_to_load_leaves_the_old_one_working(engine_in, models_dir: Path):
    engine = engine_in(models_dir)
    engine.answer("How often should I descale the kettle?", "rag", AskOptions(max_tokens=2))
    broken = engine.data_dir / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    settings = copy.deepcopy(engine.settings)
    settings.model_path = str(broken)
    with pytest.raises(UserError):
        engine.apply_settings(settings, load_model=True)
    assert engine.settings.model_path is None  # the previous model kept
    answer = engine.answer(
        "How often should I descale the kettle?", "rag", AskOptions(max_tokens=4)
    )
    assert answer.timings.tokens > 0  # a live model, not the closed one
