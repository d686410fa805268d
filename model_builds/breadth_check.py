"""Check breadth questions against the breadth corpus; prints each problem, exits 1 on any.

    python model_builds/breadth_check.py [FILE.jsonl ...]   # default: every breadth file
    python model_builds/breadth_check.py --headings DOC     # the section names of a page

Format: model_builds/breadth/README.md. The gold checks are the training questions' own
(tests/engine/test_questions.py's `html_problem`): `section` is a real h1-h6 heading of
`doc` and `answer` occurs under it, compared case-folded with whitespace collapsed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.engine.test_questions import contains, html_problem, html_sections  # noqa: E402

BREADTH = REPO / "model_builds" / "breadth"
CORPUS = BREADTH / "corpus"
FIELDS = ("id", "question", "doc", "section", "answer", "ideal")
MAX_ANSWER_CHARS = 60
MAX_IDEAL_WORDS = 45


def files() -> list[Path]:
    return sorted(BREADTH.glob("questions/*.jsonl")) + sorted(BREADTH.glob("unseen/*.jsonl"))


def problems(paths: list[Path]) -> list[str]:
    found: list[str] = []
    ids: dict[str, str] = {}
    questions: dict[str, str] = {}
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                q = json.loads(line)
            except json.JSONDecodeError as exc:
                found.append(f"{where}: not JSON: {exc}")
                continue
            if not isinstance(q, dict):
                found.append(f"{where}: not a JSON object")
                continue
            missing = [k for k in FIELDS if not isinstance(q.get(k), str) or not q[k].strip()]
            extra = sorted(set(q) - set(FIELDS))
            if missing or extra:
                found.append(f"{where}: missing {missing}, unknown {extra}")
                continue
            if q["id"] in ids:
                found.append(f"{where}: id {q['id']} also at {ids[q['id']]}")
            ids[q["id"]] = where
            key = " ".join(q["question"].lower().split())
            if key in questions:
                found.append(f"{where}: the same question as {questions[key]}")
            questions[key] = where
            if len(q["answer"]) > MAX_ANSWER_CHARS:
                found.append(f"{where}: answer longer than {MAX_ANSWER_CHARS} characters")
            if len(q["ideal"].split()) > MAX_IDEAL_WORDS:
                found.append(f"{where}: ideal longer than {MAX_IDEAL_WORDS} words")
            if not contains(q["ideal"], q["answer"]):
                found.append(f"{where}: ideal does not contain the answer")
            if not q["doc"].endswith(".html") or not (CORPUS / q["doc"]).is_file():
                found.append(f"{where}: no such page {q['doc']!r} in {CORPUS}")
                continue
            problem = html_problem(CORPUS, q, folder="")
            if problem:
                found.append(f"{where}: {problem}")
    return found


def main() -> int:
    if sys.argv[1:2] == ["--headings"]:
        for heading, body in html_sections(CORPUS / sys.argv[2]):
            print(f"{heading}    ({len(body.split())} words)")
        return 0
    paths = [Path(p) for p in sys.argv[1:]] or files()
    found = problems(paths)
    rows = sum(1 for p in paths for line in p.read_text().splitlines() if line.strip())
    for line in found:
        print(line)
    print(f"{rows} questions in {len(paths)} file(s), {len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
