"""model_builds/build_dataset.py: which question files a stage of the recipe reads."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location(
        "build_dataset", REPO / "model_builds" / "build_dataset.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_stage_can_leave_out_question_files_written_after_it(tmp_path: Path) -> None:
    for name, ids in (("git.jsonl", ["git-1", "git-2"]), ("git-c.jsonl", ["git-c-1"])):
        lines = [json.dumps({"id": i, "question": f"question {i}?"}) for i in ids]
        (tmp_path / name).write_text("\n".join(lines) + "\n\n")
    load = _module().load_questions
    assert [q["id"] for q in load(tmp_path)] == ["git-c-1", "git-1", "git-2"]
    assert [q["id"] for q in load(tmp_path, ["*-c.jsonl"])] == ["git-1", "git-2"]
    assert load(tmp_path, ["*.jsonl"]) == []
    assert [q["id"] for q in load(tmp_path, include=["*-c.jsonl"])] == ["git-c-1"]
