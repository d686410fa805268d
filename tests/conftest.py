"""Shared fixtures: the real bundled models, real SQLite files, offscreen Qt."""

from __future__ import annotations

import os
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
