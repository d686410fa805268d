"""The breadth questions (model_builds/breadth/) check out against their committed corpus.

The same check as `model_builds/breadth_check.py`: every row has the six fields, its
section is a real heading of its page and its answer occurs under it; ids and questions
are unique across the training and unseen files; no question is in both.
"""

from __future__ import annotations

import json

from tests.model_builds import build_script

check = build_script("breadth_check")
BREADTH, files, problems = check.BREADTH, check.files, check.problems


def test_there_are_breadth_questions_for_training_and_for_unseen_manuals():
    names = {path.parent.name for path in files()}
    assert names == {"questions", "unseen"}


def test_every_breadth_question_checks_out():
    found = problems(files())
    assert not found, "\n".join(found[:40])


def test_unseen_manuals_are_not_trained_on():
    def docs(folder: str) -> set[str]:
        rows = [
            json.loads(line)
            for path in sorted((BREADTH / folder).glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        return {row["doc"].split("/")[0] for row in rows}

    assert docs("questions") and docs("unseen")
    assert not docs("questions") & docs("unseen")
