"""The user's own test set: questions added from chat answers, for `eval` and Evaluate.

One JSON object per line in `<data dir>/test-questions.jsonl`, in the format of
`eval/README.md`: the question as asked, and as gold the source the user picked (its
document file name, and its page or section). Lines are appended and flushed one at a
time, so a crash loses nothing written before it.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.paths import ensure_data_dir, private_opener
from engine.types import SearchResult

FILE = "test-questions.jsonl"


def test_set_path(data_dir: Path) -> Path:
    return Path(data_dir) / FILE


def add_question(data_dir: Path, question: str, gold: SearchResult) -> dict:
    """Append `question` with `gold` as the passage that answers it; returns the row."""
    path = test_set_path(data_dir)
    rows = _ids(path)
    number = len(rows) + 1
    while f"mine-{number:03}" in rows:
        number += 1
    row: dict = {"id": f"mine-{number:03}", "question": question.strip(), "doc": gold.document}
    if gold.page is not None:
        row["pages"] = [gold.page]
    elif gold.section:
        row["section"] = gold.section
    ensure_data_dir(path.parent)
    with open(path, "a", encoding="utf-8", opener=private_opener) as out:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return row


def _ids(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    ids = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ids.add(str(json.loads(line).get("id")))
        except (ValueError, RecursionError, AttributeError):  # not JSON, nested too deep
            continue  # eval reports a bad line with its number; adding still works
    return ids
