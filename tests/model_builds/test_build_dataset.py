"""model_builds/build_dataset.py: which question files a stage of the recipe reads."""

from __future__ import annotations

import json
from pathlib import Path

from tests.model_builds import build_script


def test_a_stage_can_leave_out_question_files_written_after_it(tmp_path: Path) -> None:
    for name, ids in (("git.jsonl", ["git-1", "git-2"]), ("git-c.jsonl", ["git-c-1"])):
        lines = [json.dumps({"id": i, "question": f"question {i}?"}) for i in ids]
        (tmp_path / name).write_text("\n".join(lines) + "\n\n")
    load = build_script("build_dataset").load_questions
    assert [q["id"] for q in load(tmp_path)] == ["git-c-1", "git-1", "git-2"]
    assert [q["id"] for q in load(tmp_path, ["*-c.jsonl"])] == ["git-1", "git-2"]
    assert load(tmp_path, ["*.jsonl"]) == []
    assert [q["id"] for q in load(tmp_path, include=["*-c.jsonl"])] == ["git-c-1"]
