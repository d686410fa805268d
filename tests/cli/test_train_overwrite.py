"""`train --out NAME` refuses to replace an existing adapter unless told to (issue 24)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.engine.test_training import run_train, write_examples


def test_train_refuses_an_existing_name_without_overwrite(tmp_path: Path, llm_path: Path) -> None:
    models = tmp_path / "models"
    existing = models / "adapters" / "my-style.gguf"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"GGUF: the user's earlier adapter")
    env = {**os.environ, "QUIRE_MODELS_DIR": str(models)}
    data = write_examples(tmp_path / "d.jsonl")
    result = run_train(tmp_path, str(data), "--out", "my style", "--base", str(llm_path), env=env)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert str(existing) in line and "--overwrite" in line and "--out NAME" in line, line
    assert existing.read_bytes() == b"GGUF: the user's earlier adapter"
    checked = run_train(
        tmp_path, str(data), "--out", "my-style", "--check", "--base", str(llm_path), env=env
    )
    assert checked.returncode == 0, checked.stderr  # only checking replaces nothing
