"""Shared fixtures: the real bundled models, real SQLite files, offscreen Qt; and the lanes.

Two marks sort the tests (pyproject.toml): `gui` drives Qt widgets; `slow`: the real LLM
answers (in the test or a child process), or the test trains, reads the whole corpus,
builds the app or waits over 10 s by design. `make test-fast` runs what is not `slow`:
there every engine a test builds loads `tests.fakes.FakeGenerator` in place of the GGUF
model (the `fake_llm` fixture), so an answer takes milliseconds and still streams, times
and stops as the real one does, and loading the real model fails the test.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"

# Set before anything imports Qt, fastembed or huggingface-hub.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
# One models dir for the whole test run (and across runs), so the bundled GGUF is
# assembled and checked once, not once per test.
os.environ.setdefault("QUIRE_MODELS_DIR", str(REPO / ".cache" / "models"))


@pytest.fixture(scope="session")
def models_dir() -> Path:
    path = Path(os.environ["QUIRE_MODELS_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def embedder(models_dir: Path):
    """The real bundled embedder (int8 all-MiniLM-L6-v2 through fastembed)."""
    from engine.index.embedding import Embedder
    from models.bundled import ensure_embedder

    return Embedder(ensure_embedder(models_dir))


@pytest.fixture(scope="session")
def llm_path(models_dir: Path) -> Path:
    """The real bundled Gemma 3 270M GGUF, assembled and checksum-verified."""
    from models.bundled import ensure_llm

    return ensure_llm(models_dir)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> type:
    """Engines load `FakeGenerator` instead of the GGUF model (also on the GUI's engine
    thread); the class is returned to queue replies (`replies.append`) and to look at what
    was asked (`instances[-1].prompts`). Every test not marked slow has it."""
    from engine.answer import llms
    from tests.fakes import TOKEN_S, FakeGenerator

    monkeypatch.setattr(llms, "Generator", FakeGenerator)  # what `Llms` loads models with
    monkeypatch.setattr(FakeGenerator, "replies", deque())
    monkeypatch.setattr(FakeGenerator, "instances", [])
    monkeypatch.setattr(FakeGenerator, "token_s", TOKEN_S)
    monkeypatch.setattr(FakeGenerator, "refusal_odds", 0.0)
    return FakeGenerator


@pytest.fixture(autouse=True)
def _fast_lane_llm(request: pytest.FixtureRequest) -> None:
    """Outside the slow lane, no test loads the real LLM in this process: it gets the fake.
    A test that needs Gemma's own answers is marked slow."""
    if request.node.get_closest_marker("slow") is None:
        request.getfixturevalue("fake_llm")
        monkeypatch = request.getfixturevalue("monkeypatch")
        from engine.answer.generation import Generator

        monkeypatch.setattr(Generator, "__init__", _real_llm_refused)


def _real_llm_refused(*_args: object, **_kwargs: object) -> None:
    pytest.fail("this test loads the real LLM: mark it slow, or let it use the fake")
